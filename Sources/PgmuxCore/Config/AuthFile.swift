/// The `auth_file` (`userlist.txt`): user names and their secrets.
///
/// Format as PgBouncer's `loader.c`: `"name" "secret"` per line, rest of the line ignored, `""`
/// inside quotes is a literal `"`, `;` lines are comments. PgBouncer stops at the first broken
/// line and logs; pgmux throws a located error instead so a broken file is never half-loaded.
public enum AuthFile {
    /// PgBouncer's buffers are 128 / 2048 bytes including the NUL.
    public static let maxNameBytes = 127
    public static let maxSecretBytes = 2047

    public static func load(path: String) throws(ConfigError) -> [String: String] {
        switch FileReader.read(path) {
        case .success(let text): return try parse(text: text, file: path)
        case .failure(let f):
            throw ConfigError(file: path, line: 0, message: "cannot open auth file \"\(path)\": \(f.reason)")
        }
    }

    /// Parses userlist text; a later line for the same user wins.
    public static func parse(text: String, file: String) throws(ConfigError) -> [String: String] {
        var users: [String: String] = [:]
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
        for (index, raw) in lines.enumerated() {
            let lineNo = index + 1
            var rest = raw.trimmingASCIIWhitespace
            guard let first = rest.first, first != ";" else { continue }
            let name = try quoted(&rest, what: "user name", file: file, line: lineNo, key: nil)
            guard name.utf8.count <= maxNameBytes else {
                throw ConfigError(file: file, line: lineNo, key: String(name.prefix(32)),
                                  message: "user name too long (\(name.utf8.count) bytes, max \(maxNameBytes))")
            }
            rest = rest.trimmingASCIIWhitespace
            let secret = try quoted(&rest, what: "password", file: file, line: lineNo, key: name)
            guard secret.utf8.count <= maxSecretBytes else {
                throw ConfigError(file: file, line: lineNo, key: name,
                                  message: "password too long (\(secret.utf8.count) bytes, max \(maxSecretBytes))")
            }
            users[name] = secret
        }
        return users
    }

    /// Reads one `"..."` token from the front of `rest`.
    private static func quoted(_ rest: inout Substring, what: String, file: String, line: Int, key: String?) throws(ConfigError) -> String {
        guard rest.first == "\"" else {
            throw ConfigError(file: file, line: line, key: key,
                              message: "broken auth file line: expected a double-quoted \(what) (\"name\" \"password\")")
        }
        rest = rest.dropFirst()
        var out = ""
        while let c = rest.first {
            rest = rest.dropFirst()
            if c == "\"" {
                if rest.first == "\"" { out.append("\""); rest = rest.dropFirst(); continue }
                return out
            }
            out.append(c)
        }
        throw ConfigError(file: file, line: line, key: key, message: "broken auth file line: unterminated quoted \(what)")
    }
}

/// What kind of secret an auth_file or auth_query returned; decides which auth methods can work.
public enum SecretKind: Sendable, Equatable {
    /// Clear text: any method can be served.
    case plain
    /// `md5` + 32 hex digits of md5(password + username).
    case md5
    /// `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`.
    case scramSHA256

    public init(secret: String) {
        if secret.hasPrefix("SCRAM-SHA-256$") {
            self = .scramSHA256
        } else if secret.hasPrefix("md5"), secret.utf8.count == 35,
                  secret.dropFirst(3).allSatisfy({ $0.isASCII && $0.isHexDigit }) {
            self = .md5
        } else {
            self = .plain
        }
    }
}
