import Glibc
import CLDAP
import PgmuxCore

/// One LDAP password check, as PgBouncer's check_ldap_auth (itself PostgreSQL's CheckLDAPAuth):
/// simple bind as prefix+user+suffix, or search+bind. Blocking (OpenLDAP's synchronous calls):
/// runs on a BlockingAuthWorker thread. Every call is bounded in time, so that a server that
/// accepts and never answers gives the client an error instead of a wait without end: connects
/// time out after 3 seconds (PgBouncer's LDAP_OPT_NETWORK_TIMEOUT), each operation after
/// `TIMEOUT` of ldap.conf (or the environment's LDAPTIMEOUT), 10 seconds when neither sets it.
struct LDAPAuthentication: Sendable {
    static let networkTimeout = 3
    static let defaultOperationTimeout = 10

    let options: LDAPOptions
    let user: String
    let password: [UInt8]

    /// For log lines: the servers as configured.
    private var serverText: String { options.servers.joined(separator: " ") }

    func run() -> BlockingAuthWorker.Verdict {
        guard !password.isEmpty else { return .refused("empty LDAP password") }
        let dn: String
        if options.searchesFirst {
            switch findUserDN() {
            case .success(let found): dn = found
            case .failure(let refusal): return refusal.verdict
            }
        } else {
            dn = options.bindDN(for: user)
        }
        let ld: OpaquePointer
        switch connect() {
        case .success(let handle): ld = handle
        case .failure(let refusal): return refusal.verdict
        }
        defer { ldap_unbind_ext_s(ld, nil, nil) }
        let rc = password.withUnsafeBytes { raw in
            pgmux_ldap_simple_bind(ld, dn, raw.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(raw.count))
        }
        guard rc == LDAP_SUCCESS else {
            return .refused("LDAP login failed for user \(dn) on server \(serverText): \(Self.text(rc))")
        }
        return .accepted
    }

    /// A refusal to log; wrapped so that Result can carry it.
    private struct Refusal: Error {
        let reason: String
        var verdict: BlockingAuthWorker.Verdict { .refused(reason) }
    }

    private static func text(_ rc: Int32) -> String { String(cString: ldap_err2string(rc)) }

    /// ldap_initialize with the URI list, protocol 3, the timeouts, StartTLS if asked.
    private func connect() -> Result<OpaquePointer, Refusal> {
        var handle: OpaquePointer?
        var rc = ldap_initialize(&handle, options.uris)
        guard rc == LDAP_SUCCESS, let ld = handle else {
            return .failure(Refusal(reason: "could not initialize LDAP: \(Self.text(rc))"))
        }
        var version = LDAP_VERSION3
        var network = timeval(tv_sec: Self.networkTimeout, tv_usec: 0)
        var operation = timeval(tv_sec: Self.operationTimeout, tv_usec: 0)
        rc = ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &version)
        if rc == LDAP_OPT_SUCCESS { rc = ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &network) }
        if rc == LDAP_OPT_SUCCESS { rc = ldap_set_option(ld, LDAP_OPT_TIMEOUT, &operation) }
        guard rc == LDAP_OPT_SUCCESS else {
            ldap_unbind_ext_s(ld, nil, nil)
            return .failure(Refusal(reason: "could not set LDAP options: \(Self.text(rc))"))
        }
        if options.startTLS {
            rc = ldap_start_tls_s(ld, nil, nil)
            guard rc == LDAP_SUCCESS else {
                ldap_unbind_ext_s(ld, nil, nil)
                return .failure(Refusal(reason: "could not start LDAP TLS session: \(Self.text(rc)), server: \(serverText), "
                                        + "port: \(options.port)"))
            }
        }
        return .success(ld)
    }

    /// ldap.conf's TIMEOUT (or LDAPTIMEOUT) when set, else the default.
    private static var operationTimeout: Int {
        var configured: UnsafeMutablePointer<timeval>?
        guard ldap_get_option(nil, LDAP_OPT_TIMEOUT, &configured) == LDAP_OPT_SUCCESS, let configured else {
            return defaultOperationTimeout
        }
        defer { ldap_memfree(configured) }
        return configured.pointee.tv_sec > 0 ? configured.pointee.tv_sec : defaultOperationTimeout
    }

    /// Search+bind's first half: bind as ldapbinddn (or anonymously), find the one entry.
    private func findUserDN() -> Result<String, Refusal> {
        guard let filter = options.searchFilter(for: user) else {
            return .failure(Refusal(reason: "invalid character in user name for LDAP authentication"))
        }
        let ld: OpaquePointer
        switch connect() {
        case .success(let handle): ld = handle
        case .failure(let refusal): return .failure(refusal)
        }
        defer { ldap_unbind_ext_s(ld, nil, nil) }
        let bindDN = options.bindDN ?? "", bindPassword = Array((options.bindPassword ?? "").utf8)
        var rc = bindPassword.withUnsafeBytes { raw in
            pgmux_ldap_simple_bind(ld, bindDN, raw.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(raw.count))
        }
        guard rc == LDAP_SUCCESS else {
            return .failure(Refusal(reason: "could not perform initial LDAP bind for ldapbinddn \"\(bindDN)\" on server "
                                    + "\"\(serverText)\": \(Self.text(rc))"))
        }
        var attributes: [UnsafeMutablePointer<CChar>?] = options.searchAttributes.map { strdup($0) } + [nil]
        defer { for a in attributes { free(a) } }
        var timeout = timeval(tv_sec: Self.operationTimeout, tv_usec: 0)
        var message: OpaquePointer?
        rc = ldap_search_ext_s(ld, options.baseDN, options.scope.rawValue, filter, &attributes, 0, nil, nil,
                               &timeout, 0, &message)
        defer { if let message { ldap_msgfree(message) } }
        guard rc == LDAP_SUCCESS else {
            return .failure(Refusal(reason: "could not search LDAP for filter \"\(filter)\" on server \"\(serverText)\": "
                                    + Self.text(rc)))
        }
        let count = ldap_count_entries(ld, message)
        guard count == 1 else {
            return .failure(Refusal(reason: count == 0
                ? "LDAP user \"\(user)\" does not exist (LDAP search for filter \"\(filter)\" on server \"\(serverText)\" returned no entries.)"
                : "LDAP user \"\(user)\" is not unique (LDAP search for filter \"\(filter)\" on server \"\(serverText)\" returned \(count) entries.)"))
        }
        guard let entry = ldap_first_entry(ld, message), let dn = ldap_get_dn(ld, entry) else {
            return .failure(Refusal(reason: "could not get dn for the first entry matching \"\(filter)\" on server \"\(serverText)\""))
        }
        defer { ldap_memfree(dn) }
        return .success(String(cString: dn))
    }
}
