/// One `key = value` line of a config file, located for error messages.
///
/// A `[section]` header line also yields an entry, with an empty `key` and `value`, so that
/// consumers can see sections that contain no keys (an empty `[pgbouncer]` is still valid) and can
/// point unknown-section warnings at the header line.
public struct IniEntry: Equatable, Sendable {
    /// File the line came from (the included file for `%include`d lines).
    public let file: String
    /// 1-based line number within `file`.
    public let line: Int
    /// Current section name, lowercased ("" before any header).
    public let section: String
    /// Key as written, quotes removed; case preserved (database names are case-sensitive).
    public let key: String
    /// Rest of the line after `=`, trimmed; never unquoted (PgBouncer keeps it raw).
    public let value: String

    public init(file: String, line: Int, section: String, key: String, value: String) {
        self.file = file
        self.line = line
        self.section = section
        self.key = key
        self.value = value
    }

    /// True for the synthetic entry produced by a `[section]` header.
    public var isSectionHeader: Bool { key.isEmpty }
}

/// Parser for PgBouncer's ini dialect (libusual `cfparser`).
///
/// Only what PgBouncer accepts: `[section]`, whole-line `;`/`#` comments, `key = value` and
/// `%include file`. There are no inline comments: the value is the rest of the line.
public enum IniParser {
    /// Deepest allowed `%include` chain; deeper (usually a file including itself) is an error.
    public static let maxIncludeDepth = 10

    /// Parses the file at `path`, following `%include`s.
    ///
    /// An include path is tried as written (relative to the working directory, as PgBouncer does),
    /// then — pgmux addition, so configs can be moved around as a unit — relative to the directory
    /// of the including file.
    public static func parse(path: String) throws(ConfigError) -> [IniEntry] {
        let text: String
        switch FileReader.read(path) {
        case .success(let t): text = t
        case .failure(let f):
            throw ConfigError(file: path, line: 0, message: "cannot open config file \"\(path)\": \(f.reason)")
        }
        var state = State()
        try parse(text: text, file: path, depth: 0, state: &state) { (target, includer, line) throws(ConfigError) -> (String, String) in
            let firstTry = FileReader.read(target)
            if case .success(let t) = firstTry { return (target, t) }
            if !target.hasPrefix("/"), let slash = includer.lastIndex(of: "/") {
                let alternative = String(includer[...slash]) + target
                if case .success(let t) = FileReader.read(alternative) { return (alternative, t) }
            }
            var reason = "unreadable"
            if case .failure(let f) = firstTry { reason = f.reason }
            throw ConfigError(file: includer, line: line, key: "%include",
                              message: "cannot open include file \"\(target)\": \(reason)")
        }
        return state.entries
    }

    /// Parses `text` as if read from `file`; `include` returns the text of an `%include`d path
    /// (lets unit tests run without touching the file system).
    public static func parse(text: String, file: String, include: (String) throws(ConfigError) -> String) throws(ConfigError) -> [IniEntry] {
        var state = State()
        try parse(text: text, file: file, depth: 0, state: &state) { (target, _, _) throws(ConfigError) -> (String, String) in
            (target, try include(target))
        }
        return state.entries
    }

    /// Section state is shared across includes: a header inside an included file stays in effect
    /// after the include, as in libusual.
    private struct State {
        var entries: [IniEntry] = []
        var section = ""
    }

    /// Maps (include path as written, including file, line of the directive) to
    /// (resolved path, file text); throws a located error when it cannot.
    private typealias Resolver = (String, String, Int) throws(ConfigError) -> (String, String)

    private static func parse(
        text: String, file: String, depth: Int, state: inout State,
        resolve: Resolver
    ) throws(ConfigError) {
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
        for (index, rawLine) in lines.enumerated() {
            let lineNo = index + 1
            let line = rawLine.trimmingASCIIWhitespace
            guard let first = line.first else { continue }
            if first == ";" || first == "#" { continue }
            if first == "[" {
                guard line.last == "]" else {
                    throw ConfigError(file: file, line: lineNo, message: "invalid section header \"\(line)\": expected [name]")
                }
                let name = line.dropFirst().dropLast().trimmingASCIIWhitespace
                guard !name.isEmpty else {
                    throw ConfigError(file: file, line: lineNo, message: "empty section name")
                }
                state.section = name.lowercased()
                state.entries.append(IniEntry(file: file, line: lineNo, section: state.section, key: "", value: ""))
                continue
            }
            if line.hasPrefix("%include") {
                let rest = line.dropFirst("%include".count)
                if rest.isEmpty || rest.first!.isASCIIWhitespace {
                    try handleInclude(String(rest.trimmingASCIIWhitespace), file: file, line: lineNo, depth: depth, state: &state, resolve: resolve)
                    continue
                }
            }
            let (key, afterKey) = try parseKey(line, file: file, line: lineNo)
            let rest = afterKey.trimmingASCIIWhitespace
            guard rest.first == "=" else {
                throw ConfigError(file: file, line: lineNo, key: key, message: "expected '=' after key")
            }
            guard !state.section.isEmpty else {
                throw ConfigError(file: file, line: lineNo, key: key, message: "key outside of any [section]")
            }
            let value = String(rest.dropFirst().trimmingASCIIWhitespace)
            state.entries.append(IniEntry(file: file, line: lineNo, section: state.section, key: key, value: value))
        }
    }

    private static func handleInclude(
        _ target: String, file: String, line: Int, depth: Int, state: inout State,
        resolve: Resolver
    ) throws(ConfigError) {
        guard !target.isEmpty else {
            throw ConfigError(file: file, line: line, key: "%include", message: "missing file name")
        }
        guard depth < maxIncludeDepth else {
            throw ConfigError(file: file, line: line, key: "%include",
                              message: "include nesting too deep (limit \(maxIncludeDepth)) at \"\(target)\"")
        }
        let resolved = try resolve(target, file, line)
        try parse(text: resolved.1, file: resolved.0, depth: depth + 1, state: &state, resolve: resolve)
    }

    /// Reads a bare key (`[A-Za-z0-9_.*-]+`) or a `'quoted'`/`"quoted"` one (doubled quote = literal).
    private static func parseKey(_ line: Substring, file: String, line lineNo: Int) throws(ConfigError) -> (String, Substring) {
        var rest = line
        guard let first = rest.first else {
            throw ConfigError(file: file, line: lineNo, message: "missing key")
        }
        if first == "'" || first == "\"" {
            rest = rest.dropFirst()
            var key = ""
            while true {
                guard let c = rest.first else {
                    throw ConfigError(file: file, line: lineNo, key: key, message: "unterminated quoted key")
                }
                rest = rest.dropFirst()
                if c == first {
                    if rest.first == first { key.append(c); rest = rest.dropFirst(); continue }
                    break
                }
                key.append(c)
            }
            guard !key.isEmpty else {
                throw ConfigError(file: file, line: lineNo, message: "empty quoted key")
            }
            return (key, rest)
        }
        let end = rest.firstIndex(where: { !isBareKeyCharacter($0) }) ?? rest.endIndex
        let key = String(rest[..<end])
        guard !key.isEmpty else {
            throw ConfigError(file: file, line: lineNo,
                              message: "invalid line \"\(line)\": expected key = value, [section], %include or a comment")
        }
        return (key, rest[end...])
    }

    private static func isBareKeyCharacter(_ c: Character) -> Bool {
        guard c.isASCII else { return false }
        return c.isLetter || c.isNumber || c == "_" || c == "." || c == "*" || c == "-"
    }
}
