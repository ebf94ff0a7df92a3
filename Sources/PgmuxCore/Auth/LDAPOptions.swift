/// The options of an `ldap` hba rule (or of `auth_ldap_options`), with PostgreSQL's pg_hba names
/// and rules, as PgBouncer's ldapauth.c reads them. Two modes:
/// * simple bind: the DN is `ldapprefix` + user name + `ldapsuffix`;
/// * search+bind: bind as `ldapbinddn`/`ldapbindpasswd` (anonymous without them), search
///   `ldapbasedn` for the one entry whose `ldapsearchattribute` (default `uid`) is the user name,
///   or that `ldapsearchfilter` (with `$username` replaced) finds, then bind as that entry.
/// `ldapurl` (RFC 4516: `ldap[s]://host[:port]/basedn[?attribute[?scope[?filter]]]`) sets the
/// search+bind options at once. Errors carry PgBouncer's log texts.
public struct LDAPOptions: Sendable, Equatable {
    public enum Scope: Int32, Sendable, Equatable {
        case base = 0, one = 1, subtree = 2
    }

    /// Host names, tried in order (`ldapserver` is a space-separated list).
    public var servers: [String] = []
    /// 0: the scheme's (389 for ldap, 636 for ldaps).
    public var port = 0
    public var scheme = "ldap"
    /// StartTLS before binding (`ldaptls=1`).
    public var startTLS = false
    public var prefix: String?
    public var suffix: String?
    public var baseDN: String?
    public var bindDN: String?
    public var bindPassword: String?
    public var searchAttribute: String?
    public var searchFilter: String?
    public var scope: Scope = .subtree

    public struct Invalid: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    public init() {}

    /// Reads `name=value` options in order (later ones win, as in PostgreSQL) and checks the mix.
    public static func parse(_ options: [(name: String, value: String)]) throws(Invalid) -> LDAPOptions {
        var o = LDAPOptions()
        for (name, value) in options {
            switch name {
            case "ldaptls": o.startTLS = value == "1"
            case "ldapscheme":
                guard value == "ldap" || value == "ldaps" else { throw Invalid(description: "invalid ldapscheme value: \"\(value)\"") }
                o.scheme = value
            case "ldapport":
                guard let port = Int(value), port > 0, port <= 65535 else {
                    throw Invalid(description: "invalid LDAP port number: \"\(value)\"")
                }
                o.port = port
            case "ldapserver": o.servers = value.split(separator: " ").map(String.init)
            case "ldapbinddn": o.bindDN = value
            case "ldapbindpasswd": o.bindPassword = value
            case "ldapsearchattribute": o.searchAttribute = value
            case "ldapsearchfilter": o.searchFilter = value
            case "ldapbasedn": o.baseDN = value
            case "ldapprefix": o.prefix = value
            case "ldapsuffix": o.suffix = value
            case "ldapurl": try o.apply(url: value)
            default: throw Invalid(description: "invalid LDAP option: \"\(name)\"")
            }
        }
        try o.validate()
        return o
    }

    /// `auth_ldap_options`: the options as they follow `ldap` on an hba line.
    public static func parse(text: String) throws(Invalid) -> LDAPOptions {
        let fields: [[HBAWord]]
        do {
            fields = try HBALexer.fields(Array(text.utf8)[...], file: "auth_ldap_options", line: 1)
        } catch {
            throw Invalid(description: error.message)
        }
        var pairs: [(name: String, value: String)] = []
        for field in fields {
            guard field.count == 1, let eq = field[0].text.firstIndex(of: "="), eq != field[0].text.startIndex else {
                throw Invalid(description: "invalid LDAP option: \"\(field.map(\.text).joined(separator: ","))\"")
            }
            pairs.append((String(field[0].text[..<eq]), String(field[0].text[field[0].text.index(after: eq)...])))
        }
        return try parse(pairs)
    }

    private func validate() throws(Invalid) {
        if prefix != nil || suffix != nil {
            if baseDN != nil || bindDN != nil || bindPassword != nil || searchAttribute != nil || searchFilter != nil {
                throw Invalid(description: "cannot mix options for simple bind and search+bind modes")
            }
        } else if baseDN == nil {
            throw Invalid(description: "authentication method \"ldap\" requires argument \"ldapbasedn\", \"ldapprefix\", or \"ldapsuffix\" to be set")
        }
        if searchAttribute != nil && searchFilter != nil {
            throw Invalid(description: "cannot use ldapsearchattribute together with ldapsearchfilter")
        }
        if servers.isEmpty {
            // PostgreSQL would look the servers up in DNS SRV records of the base DN's domain.
            throw Invalid(description: "LDAP server not specified (ldapserver or ldapurl)")
        }
    }

    /// RFC 4516 URL, as OpenLDAP's ldap_url_parse reads it for PostgreSQL.
    private mutating func apply(url: String) throws(Invalid) {
        guard let sep = url.firstRange(of: "://") else { throw Invalid(description: "could not parse LDAP URL \"\(url)\"") }
        let urlScheme = url[..<sep.lowerBound].lowercased()
        guard urlScheme == "ldap" || urlScheme == "ldaps" else {
            throw Invalid(description: "unsupported LDAP URL scheme: \(urlScheme)")
        }
        scheme = urlScheme
        let rest = url[sep.upperBound...]
        let hostPort = rest.prefix { $0 != "/" }
        var hostText = Substring(hostPort)
        if let colon = hostPort.lastIndex(of: ":"), !hostPort.hasSuffix("]") {
            guard let p = Int(hostPort[hostPort.index(after: colon)...]), p > 0, p <= 65535 else {
                throw Invalid(description: "could not parse LDAP URL \"\(url)\"")
            }
            port = p
            hostText = hostPort[..<colon]
        }
        if !hostText.isEmpty { servers = [Self.percentDecoded(hostText)] }
        guard hostPort.endIndex < rest.endIndex else { return }
        let parts = rest[rest.index(after: hostPort.endIndex)...].split(separator: "?", omittingEmptySubsequences: false)
        if let dn = parts.first, !dn.isEmpty { baseDN = Self.percentDecoded(dn) }
        if parts.count > 1, let first = parts[1].split(separator: ",").first, !first.isEmpty {
            searchAttribute = Self.percentDecoded(first)
        }
        if parts.count > 2, !parts[2].isEmpty {
            switch parts[2].lowercased() {
            case "base": scope = .base
            case "one": scope = .one
            case "sub": scope = .subtree
            default: throw Invalid(description: "could not parse LDAP URL \"\(url)\"")
            }
        }
        if parts.count > 3, !parts[3].isEmpty { searchFilter = Self.percentDecoded(parts[3]) }
    }

    private static func percentDecoded(_ text: Substring) -> String {
        var out: [UInt8] = []
        var bytes = Array(text.utf8)[...]
        while let b = bytes.popFirst() {
            if b == UInt8(ascii: "%"), bytes.count >= 2,
               let value = UInt8(String(decoding: bytes.prefix(2), as: UTF8.self), radix: 16) {
                out.append(value)
                bytes = bytes.dropFirst(2)
            } else {
                out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: what the worker does

    /// The URI list for ldap_initialize: `scheme://host:port` for each server, space-separated.
    public var uris: String {
        let p = port != 0 ? port : (scheme == "ldaps" ? 636 : 389)
        return servers.map { "\(scheme)://\($0):\(p)" }.joined(separator: " ")
    }

    public var searchesFirst: Bool { baseDN != nil }

    /// Simple bind: the DN to bind as.
    public func bindDN(for user: String) -> String {
        (prefix ?? "") + user + (suffix ?? "")
    }

    /// Search+bind: the filter finding the user's entry, or nil when the name holds a character
    /// that would change the filter (PostgreSQL: "invalid character in user name for LDAP
    /// authentication").
    public func searchFilter(for user: String) -> String? {
        guard !user.contains(where: { "*()\\/".contains($0) }) else { return nil }
        if let pattern = searchFilter { return pattern.replacing("$username", with: user) }
        return "(\(searchAttribute ?? "uid")=\(user))"
    }

    /// The attribute the search asks for (only the DN is wanted: "1.1" returns no attributes).
    public var searchAttributes: [String] { searchFilter != nil ? ["1.1"] : [searchAttribute ?? "uid"] }
}
