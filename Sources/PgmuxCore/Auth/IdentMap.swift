// `auth_ident_file`: user name maps for the `cert`, `peer` and `gss` methods of `auth_hba_file` rules
// (`map=NAME`), parsed and matched without I/O beyond reading the file.
//
// Format as PgBouncer 1.25.2's `hba.c` (`ident_load_map`), a subset of PostgreSQL's
// pg_ident.conf: one mapping per line, `#` comments, the same tokenizer as the HBA file
// (double-quoted words, `""` a literal quote):
//
//     MAPNAME  SYSTEM-USERNAME  DATABASE-USERNAME
//
// Lines with the same MAPNAME form one map, tried in file order. SYSTEM-USERNAME is the peer's
// OS user name (`peer`), the client certificate's common name (`cert`) or the Kerberos principal
// (`gss`, a pgmux extension); DATABASE-USERNAME is
// the login name it may use, or the unquoted keyword `all` for any login name.
//
// Beyond PgBouncer (which takes every SYSTEM-USERNAME literally): a SYSTEM-USERNAME starting
// with `/` is a POSIX extended regular expression, as in pg_ident.conf, and `\1` in
// DATABASE-USERNAME is replaced by its first parenthesized subexpression.
// Where PgBouncer logs and skips a line it cannot parse (and an HBA rule naming a map that does
// not exist), pgmux throws a located `ConfigError`, as for the HBA file.

import Glibc

/// A compiled POSIX extended regular expression (compiled once, when the file is loaded).
public final class IdentRegex: @unchecked Sendable {
    /// The expression as written, without the leading `/`.
    public let pattern: String
    /// Number of parenthesized subexpressions.
    public let subexpressions: Int
    // regexec on a compiled regex_t is thread-safe (POSIX); the pointer is never mutated after init.
    private let compiled: UnsafeMutablePointer<regex_t>

    /// Compiles `pattern`, or returns the `regerror` text.
    public static func compile(_ pattern: String) -> Result<IdentRegex, IdentRegexError> {
        let re = UnsafeMutablePointer<regex_t>.allocate(capacity: 1)
        let rc = regcomp(re, pattern, REG_EXTENDED)
        guard rc == 0 else {
            var buf = [CChar](repeating: 0, count: 256)
            regerror(rc, re, &buf, buf.count)
            re.deallocate()
            return .failure(IdentRegexError(message: String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)))
        }
        return .success(IdentRegex(pattern: pattern, compiled: re))
    }

    private init(pattern: String, compiled: UnsafeMutablePointer<regex_t>) {
        self.pattern = pattern
        self.compiled = compiled
        subexpressions = Int(compiled.pointee.re_nsub)
    }

    deinit {
        regfree(compiled)
        compiled.deallocate()
    }

    /// Searches `subject` (unanchored, as regexec: write `^…$` to match all of it). Returns nil when
    /// it does not match, else the text of the first subexpression ("" when there is none or it
    /// did not take part).
    public func firstMatch(_ subject: String) -> String?? {
        // A C string ends at NUL: a name containing one must not match by its prefix.
        guard !subject.utf8.contains(0) else { return nil }
        var groups = [regmatch_t](repeating: regmatch_t(), count: 2)
        let rc = subject.withCString { regexec(compiled, $0, 2, &groups, 0) }
        guard rc == 0 else { return nil }
        guard subexpressions >= 1, groups[1].rm_so >= 0 else { return .some(nil) }
        let bytes = Array(subject.utf8)
        return .some(String(decoding: bytes[Int(groups[1].rm_so)..<Int(groups[1].rm_eo)], as: UTF8.self))
    }
}

public struct IdentRegexError: Error, Sendable {
    public let message: String
}

/// One line of a map.
public struct IdentMapping: Sendable {
    public enum SystemUser: Sendable {
        /// A name that must be equal (case-sensitive).
        case name(String)
        /// `/regex`.
        case regex(IdentRegex)
    }

    public enum DatabaseUser: Sendable, Equatable {
        /// Unquoted `all`: any login name.
        case all
        /// A login name; with a regex system user, `\1` in it is replaced by the first subexpression.
        case name(String)
    }

    public let system: SystemUser
    public let database: DatabaseUser
    /// 1-based line in the ident file.
    public let line: Int

    public init(system: SystemUser, database: DatabaseUser, line: Int) {
        self.system = system
        self.database = database
        self.line = line
    }

    /// Whether this line lets `systemUser` log in as `databaseUser`.
    public func allows(systemUser: String, databaseUser: String) -> Bool {
        switch system {
        case .name(let name):
            guard name == systemUser else { return false }
            switch database {
            case .all: return true
            case .name(let target): return target == databaseUser
            }
        case .regex(let re):
            guard let group = re.firstMatch(systemUser) else { return false }
            switch database {
            case .all: return true
            case .name(let target):
                // As PostgreSQL's check_ident_usermap: the first `\1` is replaced.
                return IdentMapping.substitute(target, group ?? "") == databaseUser
            }
        }
    }

    /// `target` with its first `\1` replaced by `group`.
    static func substitute(_ target: String, _ group: String) -> String {
        let t = Array(target.utf8)
        var i = 0
        while i + 1 < t.count {
            if t[i] == UInt8(ascii: "\\"), t[i + 1] == UInt8(ascii: "1") {
                return String(decoding: t[..<i], as: UTF8.self) + group + String(decoding: t[(i + 2)...], as: UTF8.self)
            }
            i += 1
        }
        return target
    }

    /// SYSTEM-USERNAME as written (regexes with their leading `/`), for log lines.
    public var systemText: String {
        switch system {
        case .name(let n): return n
        case .regex(let re): return "/" + re.pattern
        }
    }

    /// DATABASE-USERNAME as written, for log lines.
    public var databaseText: String {
        switch database {
        case .all: return "all"
        case .name(let n): return n
        }
    }
}

/// One map: all lines with the same MAPNAME, in file order.
public struct IdentMap: Sendable {
    public let name: String
    public let mappings: [IdentMapping]

    /// The first line letting `systemUser` log in as `databaseUser`, or nil (the login is refused).
    public func match(systemUser: String, databaseUser: String) -> IdentMapping? {
        mappings.first { $0.allows(systemUser: systemUser, databaseUser: databaseUser) }
    }
}

/// A parsed `auth_ident_file`.
public struct IdentFile: Sendable {
    public let file: String
    public let maps: [String: IdentMap]

    public init(file: String, maps: [String: IdentMap]) {
        self.file = file
        self.maps = maps
    }

    public subscript(name: String) -> IdentMap? { maps[name] }

    /// Reads and parses `path`.
    public static func load(path: String) throws(ConfigError) -> IdentFile {
        switch FileReader.read(path) {
        case .success(let text): return try parse(text: text, file: path)
        case .failure(let f):
            // PgBouncer: "could not open ident config file %s: %s"
            throw ConfigError(file: path, line: 0, message: "could not open ident config file \"\(path)\": \(f.reason)")
        }
    }

    /// Parses ident map text as if read from `file`.
    public static func parse(text: String, file: String) throws(ConfigError) -> IdentFile {
        var order: [String] = []
        var lines: [String: [IdentMapping]] = [:]
        for (index, raw) in HBALexer.lines(text).enumerated() {
            let lineNo = index + 1
            func fail(_ message: String) -> ConfigError {
                ConfigError(file: file, line: lineNo, message: message)
            }
            let fields = try HBALexer.fields(raw, file: file, line: lineNo)
            if fields.isEmpty { continue }
            guard fields.count >= 3 else {
                throw fail("expected MAPNAME SYSTEM-USERNAME DATABASE-USERNAME")
            }
            guard fields.count == 3 else {
                // PgBouncer: "ident line %d: unsupported parameters"
                throw fail("unsupported parameters after DATABASE-USERNAME")
            }
            for (f, what) in zip(fields, ["map name", "system user name", "database user name"]) where f.count != 1 {
                throw fail("the \(what) cannot be a comma list: \"\(f.map(\.text).joined(separator: ","))\"")
            }
            let mapWord = fields[0][0], systemWord = fields[1][0], dbWord = fields[2][0]
            guard !mapWord.text.isEmpty else { throw fail("empty map name") }
            guard !systemWord.text.isEmpty else { throw fail("empty system user name") }

            let system: IdentMapping.SystemUser
            if systemWord.text.hasPrefix("/") {
                switch IdentRegex.compile(String(systemWord.text.dropFirst())) {
                case .success(let re): system = .regex(re)
                case .failure(let e):
                    throw fail("invalid regular expression \"\(systemWord.text.dropFirst())\": \(e.message)")
                }
            } else {
                system = .name(systemWord.text)
            }

            let database: IdentMapping.DatabaseUser
            if dbWord.isKeyword("all") {
                database = .all
            } else {
                guard !dbWord.text.isEmpty else { throw fail("empty database user name") }
                if !dbWord.quoted, dbWord.text.hasPrefix("+") {
                    throw fail("group membership (\(dbWord.text)) is not supported in the database user name")
                }
                if !dbWord.quoted, dbWord.text.hasPrefix("/") {
                    throw fail("regular expressions (\(dbWord.text)) are not supported in the database user name")
                }
                if dbWord.text.contains("\\1") {
                    guard case .regex(let re) = system else {
                        throw fail("\\1 in \"\(dbWord.text)\" needs a regular expression (/...) as the system user name")
                    }
                    guard re.subexpressions >= 1 else {
                        throw fail("regular expression \"\(re.pattern)\" has no subexpressions as requested by backreference in \"\(dbWord.text)\"")
                    }
                }
                database = .name(dbWord.text)
            }

            let name = mapWord.text
            if lines[name] == nil { order.append(name) }
            lines[name, default: []].append(IdentMapping(system: system, database: database, line: lineNo))
        }
        var maps: [String: IdentMap] = [:]
        for name in order { maps[name] = IdentMap(name: name, mappings: lines[name]!) }
        return IdentFile(file: file, maps: maps)
    }
}

extension HBAFile {
    /// Checks that every `map=` names a map of `ident` (nil: no auth_ident_file), as PgBouncer's
    /// parse_map_definition does; the error points at the rule's line in the HBA file.
    public func checkIdentMaps(_ ident: IdentFile?) throws(ConfigError) {
        for rule in rules {
            guard let name = rule.identMap else { continue }
            guard ident?[name] != nil else {
                let hint = ident == nil ? " (auth_ident_file is not set)" : " (\(ident!.file))"
                throw ConfigError(file: file, line: rule.line,
                                  message: "Ident map \(name) is not found in ident config file\(hint)")
            }
        }
    }
}
