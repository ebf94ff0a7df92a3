/// libpq-like `key=value key='quoted value' key='it''s'` strings, as used by `[databases]`,
/// `[users]` and `[peers]` values.
///
/// Same rules as PgBouncer's `cstr_get_pair`: keys are `[A-Za-z0-9_]`, whitespace is allowed
/// around `=`, a value is either single-quoted (`''` is a literal quote) or runs to the next
/// whitespace. There are no backslash escapes. Keys are lowercased; order and duplicates are kept
/// (consumers apply them in order, so the last one wins).
public enum ConnectionString {
    public struct Pair: Equatable, Sendable {
        public let key: String
        public let value: String

        public init(key: String, value: String) {
            self.key = key
            self.value = value
        }
    }

    /// - Parameters: file/line locate the config line for errors.
    public static func parse(_ text: String, file: String, line: Int) throws(ConfigError) -> [Pair] {
        var pairs: [Pair] = []
        var rest = Substring(text)
        func skipSpace() { while let c = rest.first, c.isASCIIWhitespace { rest = rest.dropFirst() } }
        while true {
            skipSpace()
            guard !rest.isEmpty else { return pairs }
            let keyEnd = rest.firstIndex(where: { $0 == "=" || $0.isASCIIWhitespace }) ?? rest.endIndex
            let key = String(rest[..<keyEnd]).lowercased()
            rest = rest[keyEnd...]
            guard !key.isEmpty, key.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) else {
                throw ConfigError(file: file, line: line, key: key.isEmpty ? nil : key,
                                  message: "invalid connection string key \"\(key)\": expected [A-Za-z0-9_] characters")
            }
            skipSpace()
            guard rest.first == "=" else {
                throw ConfigError(file: file, line: line, key: key, message: "expected '=' after \(key) in connection string")
            }
            rest = rest.dropFirst()
            skipSpace()
            var value = ""
            if rest.first == "'" {
                rest = rest.dropFirst()
                var closed = false
                while let c = rest.first {
                    rest = rest.dropFirst()
                    if c == "'" {
                        if rest.first == "'" { value.append("'"); rest = rest.dropFirst(); continue }
                        closed = true
                        break
                    }
                    value.append(c)
                }
                guard closed else {
                    throw ConfigError(file: file, line: line, key: key, message: "unterminated quoted value for \(key) (use '' for a literal quote)")
                }
                if let c = rest.first, !c.isASCIIWhitespace {
                    throw ConfigError(file: file, line: line, key: key, message: "expected whitespace after the quoted value of \(key)")
                }
            } else {
                let end = rest.firstIndex(where: { $0.isASCIIWhitespace }) ?? rest.endIndex
                value = String(rest[..<end])
                rest = rest[end...]
            }
            pairs.append(Pair(key: key, value: value))
        }
    }
}
