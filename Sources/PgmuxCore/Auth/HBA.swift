// `auth_hba_file` (`auth_type = hba`): pg_hba.conf-style rules, parsed and evaluated without I/O.
//
// Syntax follows PgBouncer's `hba.c` tokenizer (itself pg_hba.conf): one rule per line, `#`
// comments, whitespace-separated fields, comma lists (whitespace around commas allowed),
// double-quoted words (`""` inside quotes is a literal quote) which never act as keywords.
//
//     local      DATABASE  USER                  METHOD [name=value ...]
//     host       DATABASE  USER  ADDRESS         METHOD [name=value ...]
//     hostssl / hostnossl  (as host)
//
// ADDRESS is `all`, `a.b.c.d/nn`, `x::y/nn`, or an address followed by a netmask field.
// Where PgBouncer logs and skips a bad line, pgmux throws a located `ConfigError` so that a
// broken file is never half-loaded (a skipped `reject` line would silently widen access).

/// Authentication method of an HBA rule.
public enum HBAMethod: String, Sendable, Equatable, CaseIterable {
    case trust
    case reject
    case md5
    case password
    case scramSHA256 = "scram-sha-256"
    case cert
    case peer
    /// pgmux extension (PgBouncer's hba has no pam): PAM checks the cleartext password.
    case pam
    /// The cleartext password is checked by binding to an LDAP server (`HBARule.ldap`).
    case ldap
    /// GSSAPI (Kerberos), with PostgreSQL's options include_realm, krb_realm and map=.
    case gss
}

/// Connection type of a rule (first field), or of a client connection when matching.
public enum HBAConnectionType: String, Sendable, Equatable {
    /// Unix-domain socket.
    case local
    /// TCP, with or without TLS.
    case host
    /// TCP with TLS only.
    case hostssl
    /// TCP without TLS only.
    case hostnossl
}

/// The DATABASE or USER field of a rule.
public struct HBANameMatcher: Sendable, Equatable {
    /// Unquoted `all`.
    public var all = false
    /// Unquoted `sameuser` (database field only): the database is named like the user.
    public var sameUser = false
    /// Unquoted `replication` (database field only): physical replication connections.
    public var replication = false
    /// Literal names (quoted words, plain words, `@file` contents); case-sensitive.
    public var names: Set<String> = []

    public init(all: Bool = false, sameUser: Bool = false, replication: Bool = false, names: Set<String> = []) {
        self.all = all
        self.sameUser = sameUser
        self.replication = replication
        self.names = names
    }

    /// Ordinary (non-replication) matching. `replication` never matches here, `all` always does.
    func matches(_ name: String, user: String) -> Bool {
        all || (sameUser && name == user) || names.contains(name)
    }
}

/// The ADDRESS field of a host rule.
public enum HBAAddressMatcher: Sendable, Equatable {
    /// `all`: any client address.
    case all
    /// A network; see `HBANetwork.contains` for IPv4-mapped clients.
    case network(HBANetwork)

    func matches(_ client: [UInt8]?) -> Bool {
        switch self {
        case .all: return true
        case .network(let net):
            guard let client else { return false }
            return net.contains(client)
        }
    }
}

/// One parsed rule line.
public struct HBARule: Sendable, Equatable {
    public let type: HBAConnectionType
    public let databases: HBANameMatcher
    public let users: HBANameMatcher
    /// nil for `local` rules.
    public let address: HBAAddressMatcher?
    public let method: HBAMethod
    /// `name=value` options after the method (`map` for `cert` and `peer`, `pamservice` for `pam`).
    public let options: [String: String]
    /// 1-based line in the HBA file.
    public let line: Int
    /// The `ldap…` options of an `ldap` rule, read and checked at load.
    public let ldap: LDAPOptions?

    public init(type: HBAConnectionType, databases: HBANameMatcher, users: HBANameMatcher, address: HBAAddressMatcher?,
                method: HBAMethod, options: [String: String] = [:], line: Int, ldap: LDAPOptions? = nil) {
        self.ldap = ldap
        self.type = type
        self.databases = databases
        self.users = users
        self.address = address
        self.method = method
        self.options = options
        self.line = line
    }

    /// The `map=` option (ident map name for `cert`, `peer` and `gss`), if any.
    public var identMap: String? { options["map"] }
}

/// A parsed HBA file: rules in file order, first match wins.
public struct HBAFile: Sendable, Equatable {
    /// Deepest allowed chain of `@file` inside `@file`s (a file listing itself hits this).
    public static let maxIncludeDepth = 10

    public let file: String
    public let rules: [HBARule]

    public init(file: String, rules: [HBARule]) {
        self.file = file
        self.rules = rules
    }

    /// Reads and parses `path`; `@file` names are resolved relative to the including file's
    /// directory (absolute names as written).
    public static func load(path: String) throws(ConfigError) -> HBAFile {
        let text: String
        switch FileReader.read(path) {
        case .success(let t): text = t
        case .failure(let f):
            throw ConfigError(file: path, line: 0, message: "cannot open hba file \"\(path)\": \(f.reason)")
        }
        return try parse(text: text, file: path) { (target: String) throws(ConfigError) -> String in
            switch FileReader.read(target) {
            case .success(let t): return t
            case .failure(let f):
                throw ConfigError(file: target, line: 0, message: "cannot open \"\(target)\": \(f.reason)")
            }
        }
    }

    /// Parses HBA text as if read from `file`. `includeFile` receives the resolved path of each
    /// `@file` (relative names joined to the including file's directory) and returns its text.
    public static func parse(text: String, file: String,
                             includeFile: (String) throws(ConfigError) -> String) throws(ConfigError) -> HBAFile {
        var rules: [HBARule] = []
        for (index, line) in HBALexer.lines(text).enumerated() {
            let lineNo = index + 1
            let fields = try HBALexer.fields(line, file: file, line: lineNo)
            if fields.isEmpty { continue }
            var parser = RuleParser(file: file, line: lineNo, fields: fields)
            rules.append(try parser.parse(includeFile: includeFile))
        }
        return HBAFile(file: file, rules: rules)
    }

    /// First rule matching the connection, or nil (the caller rejects the login).
    ///
    /// - type: `.local` for a Unix socket; `.host` for TCP with `tls` telling whether TLS is in use
    ///   (`.hostssl` / `.hostnossl` are accepted too and imply `tls` true / false).
    /// - address: client address, 4 or 16 bytes in network order; ignored for `.local`.
    /// - replication: a physical replication connection; it matches only rules whose database
    ///   field has the `replication` keyword, and those match nothing else (PostgreSQL semantics).
    public func matchRule(type: HBAConnectionType, tls: Bool, database: String, user: String,
                          address: [UInt8]?, replication: Bool) -> HBARule? {
        let isLocal = type == .local
        let usesTLS: Bool
        switch type {
        case .hostssl: usesTLS = true
        case .hostnossl: usesTLS = false
        case .local: usesTLS = false
        case .host: usesTLS = tls
        }
        for rule in rules {
            switch rule.type {
            case .local: guard isLocal else { continue }
            case .host: guard !isLocal else { continue }
            case .hostssl: guard !isLocal, usesTLS else { continue }
            case .hostnossl: guard !isLocal, !usesTLS else { continue }
            }
            if !isLocal {
                guard let matcher = rule.address, matcher.matches(address) else { continue }
            }
            if replication {
                guard rule.databases.replication else { continue }
            } else {
                guard rule.databases.matches(database, user: user) else { continue }
            }
            guard rule.users.matches(user, user: user) else { continue }
            return rule
        }
        return nil
    }

    /// `matchRule` reduced to the method and the rule's line number.
    public func match(type: HBAConnectionType, tls: Bool, database: String, user: String,
                      address: [UInt8]?, replication: Bool) -> (method: HBAMethod, line: Int)? {
        guard let rule = matchRule(type: type, tls: tls, database: database, user: user,
                                   address: address, replication: replication) else { return nil }
        return (rule.method, rule.line)
    }
}

// MARK: - Lexing

/// One word of a field: text with quotes removed, and whether any part of it was quoted.
struct HBAWord: Equatable {
    var text: String
    var quoted: Bool

    /// True if this is the unquoted keyword `kw`.
    func isKeyword(_ kw: String) -> Bool { !quoted && text == kw }
}

enum HBALexer {
    /// Splits on `\n`, dropping a trailing `\r` (CRLF files).
    static func lines(_ text: String) -> [ArraySlice<UInt8>] {
        Array(text.utf8).split(separator: 0x0A, omittingEmptySubsequences: false).map { line in
            line.last == 0x0D ? line.dropLast() : line
        }
    }

    static func isSpace(_ b: UInt8) -> Bool {
        b == 0x20 || b == 0x09 || b == 0x0D || b == 0x0B || b == 0x0C || b == 0x0A
    }

    /// Tokenizes one line into fields, each a non-empty comma list of words.
    static func fields(_ line: ArraySlice<UInt8>, file: String, line lineNo: Int) throws(ConfigError) -> [[HBAWord]] {
        var fields: [[HBAWord]] = []
        var i = line.startIndex
        let end = line.endIndex

        func skipSpace() {
            while i < end, isSpace(line[i]) { i += 1 }
        }
        func atEnd() -> Bool { i >= end || line[i] == UInt8(ascii: "#") }

        func word() throws(ConfigError) -> HBAWord {
            var bytes: [UInt8] = []
            var quoted = false
            while i < end {
                let b = line[i]
                if b == UInt8(ascii: "\"") {
                    quoted = true
                    i += 1
                    var closed = false
                    while i < end {
                        if line[i] == UInt8(ascii: "\"") {
                            if i + 1 < end, line[i + 1] == UInt8(ascii: "\"") {
                                bytes.append(UInt8(ascii: "\""))
                                i += 2
                                continue
                            }
                            i += 1
                            closed = true
                            break
                        }
                        bytes.append(line[i])
                        i += 1
                    }
                    if !closed {
                        throw ConfigError(file: file, line: lineNo, message: "unterminated quoted string")
                    }
                    continue
                }
                if isSpace(b) || b == UInt8(ascii: ",") || b == UInt8(ascii: "#") { break }
                bytes.append(b)
                i += 1
            }
            if bytes.isEmpty && !quoted {
                throw ConfigError(file: file, line: lineNo, message: "empty entry in comma-separated list")
            }
            return HBAWord(text: String(decoding: bytes, as: UTF8.self), quoted: quoted)
        }

        while true {
            skipSpace()
            if atEnd() { break }
            var items: [HBAWord] = []
            while true {
                items.append(try word())
                let afterWord = i
                skipSpace()
                if i < end, line[i] == UInt8(ascii: ",") {
                    i += 1
                    skipSpace()
                    if atEnd() {
                        throw ConfigError(file: file, line: lineNo, message: "comma at end of line: list entry missing")
                    }
                    continue
                }
                i = afterWord
                break
            }
            fields.append(items)
        }
        return fields
    }
}

// MARK: - Rule parsing

private struct RuleParser {
    let file: String
    let line: Int
    let fields: [[HBAWord]]
    var index = 0

    typealias Include = (String) throws(ConfigError) -> String

    func error(_ message: String) -> ConfigError {
        ConfigError(file: file, line: line, message: message)
    }

    mutating func next(_ what: String) throws(ConfigError) -> [HBAWord] {
        guard index < fields.count else { throw error("missing \(what) field") }
        defer { index += 1 }
        return fields[index]
    }

    /// A field that must be one word (no comma list).
    mutating func single(_ what: String) throws(ConfigError) -> HBAWord {
        let f = try next(what)
        guard f.count == 1 else {
            throw error("\(what) field cannot be a list: \"\(f.map(\.text).joined(separator: ","))\"")
        }
        return f[0]
    }

    mutating func parse(includeFile: Include) throws(ConfigError) -> HBARule {
        let typeWord = try single("connection type")
        let type: HBAConnectionType
        switch (typeWord.quoted, typeWord.text) {
        case (false, "local"): type = .local
        case (false, "host"): type = .host
        case (false, "hostssl"): type = .hostssl
        case (false, "hostnossl"): type = .hostnossl
        case (false, "hostgssenc"), (false, "hostnogssenc"):
            throw error("connection type \(typeWord.text) is not supported (GSSAPI encryption is never negotiated)")
        case (false, "include"), (false, "include_if_exists"), (false, "include_dir"):
            throw error("\(typeWord.text) directives are not supported in the hba file")
        default:
            throw error("unknown connection type \"\(typeWord.text)\"; expected local, host, hostssl or hostnossl")
        }

        let databases = try names(try next("database"), isDatabase: true, includeFile: includeFile)
        let users = try names(try next("user"), isDatabase: false, includeFile: includeFile)

        var address: HBAAddressMatcher?
        if type != .local {
            address = try parseAddress()
        }

        let methodWord = try single("authentication method")
        guard !methodWord.quoted, let method = HBAMethod(rawValue: methodWord.text) else {
            switch methodWord.text {
            case "ident", "sspi", "radius", "bsd", "oauth":
                throw error("authentication method \(methodWord.text) is not supported")
            default:
                throw error("unknown authentication method \"\(methodWord.text)\"; expected one of "
                            + HBAMethod.allCases.map(\.rawValue).joined(separator: ", "))
            }
        }

        var options: [String: String] = [:]
        var ldapOptions: [(name: String, value: String)] = []
        while index < fields.count {
            let opt = try single("option")
            guard let eq = opt.text.firstIndex(of: "="), eq != opt.text.startIndex else {
                throw error("unexpected field \"\(opt.text)\" after the method; options are written name=value")
            }
            let name = String(opt.text[..<eq])
            let value = String(opt.text[opt.text.index(after: eq)...])
            switch name {
            case "map":
                guard method == .cert || method == .peer || method == .gss else {
                    throw error("option map= is only valid for methods cert, peer and gss, not \(method.rawValue)")
                }
                guard !value.isEmpty else { throw error("option map= needs a map name") }
            case "include_realm" where method == .gss:
                guard value == "0" || value == "1" else { throw error("include_realm must be 0 or 1, not \"\(value)\"") }
            case "krb_realm" where method == .gss:
                break
            case "pamservice" where method == .pam:
                guard !value.isEmpty else { throw error("option pamservice= needs a PAM service name") }
            case _ where method == .ldap && name.hasPrefix("ldap"):
                ldapOptions.append((name, value))
            default:
                throw error("authentication option \"\(name)\" is not supported (only map=, pamservice= for pam, ldap...= for ldap, include_realm= and krb_realm= for gss)")
            }
            options[name] = value
        }

        if method == .gss, type == .local {
            throw error("gss authentication is not supported on local sockets")
        }
        if method == .peer, type != .local {
            throw error("peer authentication is only supported on local (Unix socket) connections")
        }
        if method == .cert, type == .local || type == .hostnossl {
            throw error("cert authentication needs TLS; use it with hostssl or host, not \(type.rawValue)")
        }

        var ldap: LDAPOptions?
        if method == .ldap {
            do {
                ldap = try LDAPOptions.parse(ldapOptions)
            } catch {
                throw self.error(error.description)
            }
        }
        return HBARule(type: type, databases: databases, users: users, address: address,
                       method: method, options: options, line: line, ldap: ldap)
    }

    mutating func parseAddress() throws(ConfigError) -> HBAAddressMatcher {
        let word = try single("address")
        if !word.quoted {
            switch word.text {
            case "all": return .all
            case "samehost", "samenet":
                throw error("address keyword \(word.text) is not supported; write the address in CIDR form")
            default: break
            }
        }
        if word.text.contains("/") {
            guard let net = HBANetwork.parse(cidr: word.text) else {
                throw error("invalid CIDR address \"\(word.text)\"; expected a.b.c.d/0-32 or an IPv6 address/0-128")
            }
            return .network(net)
        }
        guard let raw = HBAAddress.parse(word.text) else {
            throw error("invalid IP address \"\(word.text)\" (host names are not supported)")
        }
        guard index < fields.count else {
            throw error("address \"\(word.text)\" needs a /prefix length or a separate netmask field")
        }
        let maskWord = try single("netmask")
        guard let mask = HBAAddress.parse(maskWord.text), mask.count == raw.count else {
            throw error("invalid netmask \"\(maskWord.text)\" for address \"\(word.text)\"; "
                        + "write a.b.c.d/nn or the address followed by a netmask of the same family")
        }
        guard let net = HBANetwork(address: raw, netmask: mask) else {
            throw error("netmask \"\(maskWord.text)\" is not contiguous")
        }
        return .network(net)
    }

    func names(_ words: [HBAWord], isDatabase: Bool, includeFile: Include) throws(ConfigError) -> HBANameMatcher {
        var matcher = HBANameMatcher()
        try addNames(words, isDatabase: isDatabase, into: &matcher, currentFile: file, depth: 0, includeFile: includeFile)
        return matcher
    }

    /// Adds `words` to `matcher`; `currentFile` is the file the words came from (for `@file`
    /// paths relative to it). Errors always point at the rule's line in the hba file.
    func addNames(_ words: [HBAWord], isDatabase: Bool, into matcher: inout HBANameMatcher,
                  currentFile: String, depth: Int, includeFile: Include) throws(ConfigError) {
        let what = isDatabase ? "database" : "user"
        for w in words {
            if w.quoted {
                matcher.names.insert(w.text)
                continue
            }
            switch w.text {
            case "all":
                matcher.all = true
                continue
            case "sameuser" where isDatabase:
                matcher.sameUser = true
                continue
            case "replication" where isDatabase:
                matcher.replication = true
                continue
            case "samerole" where isDatabase, "samegroup" where isDatabase:
                throw error("database keyword \(w.text) is not supported")
            default:
                break
            }
            if w.text.hasPrefix("+"), !isDatabase {
                throw error("group membership (\(w.text)) is not supported in the user field")
            }
            if w.text.hasPrefix("/") {
                throw error("regular expressions (\(w.text)) are not supported in the \(what) field")
            }
            if w.text.hasPrefix("@") {
                let name = String(w.text.dropFirst())
                guard !name.isEmpty else { throw error("@ must be followed by a file name") }
                guard depth < HBAFile.maxIncludeDepth else {
                    throw error("@file nesting deeper than \(HBAFile.maxIncludeDepth) (does \(name) include itself?)")
                }
                let path = Self.resolve(name, relativeTo: currentFile)
                let text: String
                do {
                    text = try includeFile(path)
                } catch {
                    throw self.error("cannot read \(what) list @\(name): \(error.message)")
                }
                var listed: [HBAWord] = []
                for (n, l) in HBALexer.lines(text).enumerated() {
                    let fields: [[HBAWord]]
                    do {
                        fields = try HBALexer.fields(l, file: path, line: n + 1)
                    } catch {
                        throw self.error("in \(what) list @\(name): \(error.description)")
                    }
                    for f in fields { listed.append(contentsOf: f) }
                }
                try addNames(listed, isDatabase: isDatabase, into: &matcher, currentFile: path, depth: depth + 1, includeFile: includeFile)
                continue
            }
            matcher.names.insert(w.text)
        }
    }

    /// `name` joined to the directory of `parent`, unless absolute or `parent` has no directory.
    static func resolve(_ name: String, relativeTo parent: String) -> String {
        if name.hasPrefix("/") { return name }
        guard let slash = parent.lastIndex(of: "/") else { return name }
        return String(parent[...slash]) + name
    }
}
