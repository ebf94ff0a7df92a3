/// PgBouncer 1.25's admin query grammar (`src/admin.c`), reproduced without a regex engine.
///
/// PgBouncer matches three anchored POSIX extended regexes with REG_ICASE, in this order:
/// ```
/// WS0 = [ \t\n\r]*   WS1 = [ \t\n\r]+   WORD = "([^"]+|"")*" | [0-9a-z_]+   STRING = '([^']|'')*'
/// cmd      ^ WS0 WORD ( WS1 WORD )? WS0 ( ; WS0 )? $
/// set/str  ^ WS0 set WS1 WORD WS0 (=|to) WS0 STRING WS0 ( ; WS0 )? $
/// set/word ^ WS0 set WS1 WORD WS0 (=|to) WS0 WORD   WS0 ( ; WS0 )? $
/// ```
/// Quirks kept on purpose:
/// * length limits apply to the raw matched text, quotes included (`copy_arg`): command ≥ 16,
///   argument or SET key ≥ 64, SET value ≥ 256 bytes → `bad arguments`; an empty SET key too.
///   The command length is checked before the command is looked up.
/// * POSIX leftmost-longest lets `(=|to)` follow an unquoted key with no space: `set xto 1` sets
///   `x` to `1`; `set footo bar` sets `foo`.
/// * `RELOAD ""` and `SUSPEND ""` are accepted (the unquoted argument is empty).
public enum AdminParser {
    public static func parse(_ query: String) -> Result<AdminCommand, AdminError> {
        let b = Array(query.utf8)
        if let m = matchCommand(b) {
            guard m.name.count < 16, (m.arg?.count ?? 0) < 64 else { return .failure(.badArguments) }
            return dispatch(name: unquote(b[m.name], quote: dq), arg: m.arg.map { unquote(b[$0], quote: dq) } ?? "",
                            query: query)
        }
        for stringValue in [true, false] {
            if let m = matchSet(b, stringValue: stringValue) {
                guard m.key.count < 64 else { return .failure(.badArguments) }
                let key = unquote(b[m.key], quote: dq)
                guard !key.isEmpty, m.value.count < 256 else { return .failure(.badArguments) }
                let value = unquote(b[m.value], quote: stringValue ? sq : dq)
                if let fake = fakeParameter(key) { return .success(.fakeSet(fake)) }
                return .success(.set(key: key, value: value))
            }
        }
        return .failure(.invalidCommand(query))
    }

    // MARK: dispatch (cmd_list / show_map, strcasecmp)

    private static func dispatch(name: String, arg: String, query: String) -> Result<AdminCommand, AdminError> {
        let optionalArg: String? = arg.isEmpty ? nil : arg
        switch asciiLower(name) {
        case "show", "select":
            if let fake = fakeParameter(arg) { return .success(.fakeShow(fake)) }
            guard let item = AdminShowItem(rawValue: asciiLower(arg)) else { return .failure(.invalidCommand(query)) }
            return .success(.show(item))
        case "reload":
            return arg.isEmpty ? .success(.reload) : .failure(.invalidCommand(query))
        case "suspend":
            return arg.isEmpty ? .success(.suspend) : .failure(.invalidCommand(query))
        case "shutdown":
            switch asciiLower(arg) {
            case "": return .success(.shutdown(.immediate))
            case "wait_for_clients": return .success(.shutdown(.waitForClients))
            case "wait_for_servers": return .success(.shutdown(.waitForServers))
            default: return .failure(.invalidCommand(query))
            }
        case "pause": return .success(.pause(optionalArg))
        case "resume": return .success(.resume(optionalArg))
        case "kill": return .success(.kill(optionalArg))
        case "reconnect": return .success(.reconnect(optionalArg))
        case "wait_close": return .success(.waitClose(optionalArg))
        case "disable": return .success(.disable(optionalArg))
        case "enable": return .success(.enable(optionalArg))
        case "kill_client": return .success(.killClient(scanUnsignedLongLong(arg)))
        default: return .failure(.invalidCommand(query))
        }
    }

    private static func fakeParameter(_ name: String) -> AdminFakeParameter? {
        AdminFakeParameter(rawValue: asciiLower(name))
    }

    /// `sscanf(arg, "%llu", &id) == 1`: leading white space, optional sign (a minus negates
    /// modulo 2^64), at least one decimal digit, trailing text ignored; overflow saturates.
    static func scanUnsignedLongLong(_ text: String) -> UInt64? {
        var bytes = Array(text.utf8)[...]
        while let c = bytes.first, c == 32 || (c >= 9 && c <= 13) { bytes = bytes.dropFirst() }
        var negative = false
        if let c = bytes.first, c == UInt8(ascii: "+") || c == UInt8(ascii: "-") {
            negative = c == UInt8(ascii: "-"); bytes = bytes.dropFirst()
        }
        var value: UInt64 = 0, digits = 0, overflow = false
        while let c = bytes.first, c >= 48, c <= 57 {
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(UInt64(c - 48))
            if o1 || o2 { overflow = true }
            value = s; digits += 1; bytes = bytes.dropFirst()
        }
        guard digits > 0 else { return nil }
        if overflow { return UInt64.max }
        return negative ? 0 &- value : value
    }

    // MARK: matching

    private static let dq = UInt8(ascii: "\""), sq = UInt8(ascii: "'")

    private static func isSpace(_ c: UInt8) -> Bool { c == 32 || c == 9 || c == 10 || c == 13 }
    private static func isBare(_ c: UInt8) -> Bool {
        (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == 95
    }

    private static func skipSpace(_ b: [UInt8], _ i: Int) -> Int {
        var i = i
        while i < b.count, isSpace(b[i]) { i += 1 }
        return i
    }

    /// End of a quoted token starting at `i` (`q…q` with `qq` escapes), or nil. Greedy pairing is
    /// exact here: nothing in the grammar may follow a quoted token directly with a quote.
    private static func quotedEnd(_ b: [UInt8], _ i: Int, quote: UInt8) -> Int? {
        guard i < b.count, b[i] == quote else { return nil }
        var j = i + 1
        while j < b.count {
            if b[j] == quote {
                if j + 1 < b.count, b[j + 1] == quote { j += 2; continue }
                return j + 1
            }
            j += 1
        }
        return nil
    }

    private static func bareEnd(_ b: [UInt8], _ i: Int) -> Int? {
        var j = i
        while j < b.count, isBare(b[j]) { j += 1 }
        return j > i ? j : nil
    }

    private static func wordEnd(_ b: [UInt8], _ i: Int) -> Int? {
        quotedEnd(b, i, quote: dq) ?? bareEnd(b, i)
    }

    /// `WS0 ( ; WS0 )? $` from `i`.
    private static func tailMatches(_ b: [UInt8], _ i: Int) -> Bool {
        var i = skipSpace(b, i)
        if i < b.count, b[i] == UInt8(ascii: ";") { i = skipSpace(b, i + 1) }
        return i == b.count
    }

    private static func matchCommand(_ b: [UInt8]) -> (name: Range<Int>, arg: Range<Int>?)? {
        let start = skipSpace(b, 0)
        guard let nameEnd = wordEnd(b, start) else { return nil }
        var end = nameEnd
        var arg: Range<Int>? = nil
        let next = skipSpace(b, nameEnd)
        if next > nameEnd, let argEnd = wordEnd(b, next) {
            arg = next..<argEnd
            end = argEnd
        }
        return tailMatches(b, end) ? (start..<nameEnd, arg) : nil
    }

    private static func matchSet(_ b: [UInt8], stringValue: Bool) -> (key: Range<Int>, value: Range<Int>)? {
        let start = skipSpace(b, 0)
        guard start + 3 <= b.count, asciiLower(b[start]) == UInt8(ascii: "s"),
              asciiLower(b[start + 1]) == UInt8(ascii: "e"), asciiLower(b[start + 2]) == UInt8(ascii: "t")
        else { return nil }
        let keyStart = skipSpace(b, start + 3)
        guard keyStart > start + 3 else { return nil }
        // Candidate key ends, longest first (POSIX: the leftmost group takes the longest match).
        var keyEnds: [Int] = []
        if let e = quotedEnd(b, keyStart, quote: dq) {
            keyEnds = [e]
        } else if let e = bareEnd(b, keyStart) {
            keyEnds = Array(stride(from: e, to: keyStart, by: -1))
        }
        for keyEnd in keyEnds {
            var i = skipSpace(b, keyEnd)
            if i < b.count, b[i] == UInt8(ascii: "=") {
                i += 1
            } else if i + 1 < b.count, asciiLower(b[i]) == UInt8(ascii: "t"), asciiLower(b[i + 1]) == UInt8(ascii: "o") {
                i += 2
            } else {
                continue
            }
            let valueStart = skipSpace(b, i)
            let valueEnd = stringValue ? quotedEnd(b, valueStart, quote: sq) : wordEnd(b, valueStart)
            if let valueEnd, tailMatches(b, valueEnd) { return (keyStart..<keyEnd, valueStart..<valueEnd) }
        }
        return nil
    }

    /// `copy_arg`: strips the outer quotes and turns doubled quotes into one; bare text is kept.
    private static func unquote(_ raw: ArraySlice<UInt8>, quote: UInt8) -> String {
        guard raw.first == quote, raw.count >= 2 else { return String(decoding: raw, as: UTF8.self) }
        var out: [UInt8] = []
        var i = raw.startIndex + 1
        let last = raw.endIndex - 1
        while i < last {
            if raw[i] == quote, raw[i + 1] == quote { i += 1 }
            out.append(raw[i])
            i += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func asciiLower(_ c: UInt8) -> UInt8 { (c >= 65 && c <= 90) ? c + 32 : c }
    static func asciiLower(_ s: String) -> String {
        String(decoding: s.utf8.map { asciiLower($0) }, as: UTF8.self)
    }
}
