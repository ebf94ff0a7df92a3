/// Just enough of PostgreSQL's lexer for the first-words scans of statement texts (prepared
/// statements, session settings, LISTEN): whitespace, `--` and nested `/* */` comments, identifiers,
/// quoted identifiers, string literals (standard, `E''` escapes, dollar quotes) and parentheses.
struct SQLLexer {
    let bytes: UnsafeRawBufferPointer
    var position = 0
    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var peek: UInt8? { position < bytes.count ? bytes[position] : nil }

    /// Whether a text's first word (after whitespace and comments) is one of `keywords` (lower
    /// case), without allocating: the scans look closer only at texts that start with their
    /// keywords, so that every other statement on the relay costs a few byte comparisons.
    static func startsWith(_ text: UnsafeRawBufferPointer, oneOf keywords: [StaticString]) -> Bool {
        var lexer = SQLLexer(text)
        guard lexer.skipSpace() else { return false }
        let start = lexer.position
        next: for k in keywords {
            let n = k.utf8CodeUnitCount
            guard text.count - start >= n else { continue }
            for j in 0..<n where TextScan.lower(text[start + j]) != k.utf8Start[j] { continue next }
            if start + n == text.count || !isIdentPart(text[start + n]) { return true }
        }
        return false
    }
    private func at(_ i: Int) -> UInt8? { i < bytes.count ? bytes[i] : nil }

    func text(_ from: Int, _ to: Int) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: bytes[from..<to]), as: UTF8.self)
    }

    private static func isSpace(_ c: UInt8) -> Bool { c == 32 || (c >= 9 && c <= 13) }
    private static func isIdentStart(_ c: UInt8) -> Bool {
        (c | 0x20 >= UInt8(ascii: "a") && c | 0x20 <= UInt8(ascii: "z")) || c == UInt8(ascii: "_") || c >= 0x80
    }
    static func isIdentPart(_ c: UInt8) -> Bool {
        isIdentStart(c) || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || c == UInt8(ascii: "$")
    }

    /// Skips whitespace and comments; false on an unterminated comment.
    @discardableResult
    mutating func skipSpace() -> Bool {
        while let c = peek {
            if Self.isSpace(c) { position += 1; continue }
            if c == UInt8(ascii: "-"), at(position + 1) == UInt8(ascii: "-") {
                while let d = peek, d != 10 { position += 1 }
                continue
            }
            if c == UInt8(ascii: "/"), at(position + 1) == UInt8(ascii: "*") {
                var depth = 0
                repeat {
                    guard position + 1 < bytes.count else { position = bytes.count; return false }
                    if bytes[position] == UInt8(ascii: "/") && bytes[position + 1] == UInt8(ascii: "*") { depth += 1; position += 2 }
                    else if bytes[position] == UInt8(ascii: "*") && bytes[position + 1] == UInt8(ascii: "/") { depth -= 1; position += 2 }
                    else { position += 1 }
                } while depth > 0
                continue
            }
            break
        }
        return true
    }

    /// An unquoted word, lower-cased (ASCII letters only, as PostgreSQL folds keywords).
    mutating func word() -> String? {
        guard let c = peek, Self.isIdentStart(c) else { return nil }
        var out: [UInt8] = []
        while let d = peek, Self.isIdentPart(d) {
            out.append(d >= UInt8(ascii: "A") && d <= UInt8(ascii: "Z") ? d | 0x20 : d)
            position += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The next word, without moving.
    func peekWord() -> String? { var copy = self; return copy.word() }

    /// A statement name: an unquoted identifier (folded) or a double-quoted one.
    mutating func name() -> String? {
        guard let c = peek else { return nil }
        if c != UInt8(ascii: "\"") { return word() }
        var out: [UInt8] = []
        position += 1
        while let d = peek {
            position += 1
            if d == UInt8(ascii: "\"") {
                if peek == UInt8(ascii: "\"") { out.append(d); position += 1; continue }
                return out.isEmpty ? nil : String(decoding: out, as: UTF8.self)
            }
            out.append(d)
        }
        return nil  // unterminated
    }

    /// Skips a balanced parenthesised group, literals and comments inside included.
    mutating func skipParenthesised() -> Bool {
        var depth = 0
        while true {
            guard skipSpace(), let c = peek else { return false }
            if c == UInt8(ascii: "(") { depth += 1; position += 1; continue }
            if c == UInt8(ascii: ")") {
                depth -= 1; position += 1
                if depth == 0 { return true }
                continue
            }
            guard skipToken() else { return false }
        }
    }

    /// Skips one token that is not whitespace or a comment; false on an unterminated literal.
    mutating func skipToken() -> Bool {
        guard let c = peek else { return false }
        if c == UInt8(ascii: "'") { return skipString(escapes: false) }
        if c == UInt8(ascii: "\"") { return name() != nil }
        if c == UInt8(ascii: "$"), let tag = dollarTag() { return skipDollarQuoted(tag) }
        if Self.isIdentStart(c) {
            // E'...' strings take backslash escapes.
            if c | 0x20 == UInt8(ascii: "e") && at(position + 1) == UInt8(ascii: "'") {
                position += 1
                return skipString(escapes: true)
            }
            _ = word()
            return true
        }
        position += 1
        return true
    }

    private mutating func skipString(escapes: Bool) -> Bool {
        position += 1
        while let c = peek {
            position += 1
            if escapes && c == UInt8(ascii: "\\") { position += 1; continue }
            if c == UInt8(ascii: "'") {
                if peek == UInt8(ascii: "'") { position += 1; continue }
                return true
            }
        }
        return false
    }

    /// `$tag$` at the current position (the tag may be empty), or nil.
    private func dollarTag() -> [UInt8]? {
        var i = position + 1
        var tag: [UInt8] = []
        while let c = at(i), c != UInt8(ascii: "$") {
            guard Self.isIdentPart(c), c != UInt8(ascii: "$"), !(tag.isEmpty && c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) else { return nil }
            tag.append(c)
            i += 1
        }
        return at(i) == UInt8(ascii: "$") ? tag : nil
    }

    private mutating func skipDollarQuoted(_ tag: [UInt8]) -> Bool {
        let delimiter = [UInt8(ascii: "$")] + tag + [UInt8(ascii: "$")]
        position += delimiter.count
        while position + delimiter.count <= bytes.count {
            if bytes[position] == UInt8(ascii: "$"),
               bytes[position..<(position + delimiter.count)].elementsEqual(delimiter) {
                position += delimiter.count
                return true
            }
            position += 1
        }
        position = bytes.count
        return false
    }

    /// After the last token of a statement: only whitespace, comments and semicolons remain.
    mutating func atEndOfStatements() -> Bool {
        while true {
            guard skipSpace() else { return false }
            guard let c = peek else { return true }
            guard c == UInt8(ascii: ";") else { return false }
            position += 1
        }
    }

    /// Walks one statement to its end; the offset just after its last token, or nil when
    /// another statement follows or a literal or comment is unterminated.
    mutating func endOfSingleStatement() -> Int? {
        var end = position
        while true {
            guard skipSpace() else { return nil }
            guard let c = peek else { return end }
            if c == UInt8(ascii: ";") { return atEndOfStatements() ? end : nil }
            guard skipToken() else { return nil }
            end = position
        }
    }
}
