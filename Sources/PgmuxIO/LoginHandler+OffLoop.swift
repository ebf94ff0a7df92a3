import PgmuxCore

/// Authentication that runs off the event loop: PAM and LDAP password checks and GSSAPI tokens
/// go to their BlockingAuthWorker; the client is not read meanwhile, and the verdict comes back
/// to the login on the loop thread (a client gone by then is skipped).
extension LoginHandler {
    /// gss: gss_accept_sec_context on a worker thread (keytab, replay cache on disk).
    func acceptGSSToken(_ token: [UInt8], _ client: ClientConnection) {
        guard let login = client.login, case .gss(let includeRealm, let realm, let map) = login.externalCheck else { return }
        let acceptor = login.gssAcceptor ?? GSSAcceptor(keytab: loop.config.settings.krbServerKeyfile)
        login.gssAcceptor = acceptor
        client.stopReading()
        let submitted = loop.gssWorker.submit({ acceptor.step(token) }) { [weak self, weak client] verdict in
            guard let self, let client, !client.isClosed, client.state == .authenticating,
                  let login = client.login else { return }
            if case .refused(let why) = verdict { self.loop.log.warning("\(client.logPrefix) \(why)") }
            var allowed = false
            if acceptor.complete, let principal = acceptor.principal {
                switch GSSPrincipal.systemUser(principal, includeRealm: includeRealm, requiredRealm: realm) {
                case .success(let name):
                    allowed = self.gssNameAllowed(client, systemUser: name, mapName: map)
                case .failure(let refusal):
                    self.loop.log.warning("\(client.logPrefix) \(refusal.reason)")
                }
                // The last token (mutual authentication) goes out before the verdict.
                if let last = acceptor.output, !last.isEmpty {
                    var m = MessageBuilder(); m.authenticationGSSContinue(last); client.queue(m.bytes)
                }
            }
            client.startReading()
            self.perform(login.authenticator.gssStep(output: verdict == .accepted ? acceptor.output : nil,
                                                     complete: acceptor.complete, principalAllowed: allowed), client)
        }
        if !submitted {
            client.login = nil
            client.sendError("too many logins waiting for authentication", code: SQLState.tooManyConnections)
        }
    }

    /// pam / ldap: the password to its worker; the client sends nothing until it hears from us.
    func verifyExternally(_ password: [UInt8], _ client: ClientConnection) {
        client.stopReading()
        let submitted = submitExternalCheck(client, password: password) { [weak self, weak client] verdict in
            guard let self, let client, !client.isClosed, client.state == .authenticating,
                  let login = client.login else { return }
            if case .refused(let why) = verdict { self.loop.log.warning("\(client.logPrefix) \(why)") }
            client.startReading()
            self.perform(login.authenticator.externalVerdict(verdict == .accepted), client)
        }
        if !submitted {
            client.login = nil
            client.sendError("too many logins waiting for authentication", code: SQLState.tooManyConnections)
        }
    }

    /// Hands a pam / ldap password check to its worker; false when the queue is full.
    private func submitExternalCheck(_ client: ClientConnection, password: [UInt8],
                                     _ done: @escaping (BlockingAuthWorker.Verdict) -> Void) -> Bool {
        switch client.login?.externalCheck {
        case .pam(let service):
            let check = PAMAuthentication(service: service, user: client.user, password: password,
                                          remoteHost: client.isUnixSocket ? "[local]" : client.remote.hostText)
            return loop.pamWorker.submit({ check.run() }, done)
        case .ldap(let options):
            let check = LDAPAuthentication(options: options, user: client.user, password: password)
            return loop.ldapWorker.submit({ check.run() }, done)
        case .gss, nil:
            return false
        }
    }

    /// gss: the principal's name (realm kept or not) must be the login name, or be allowed by
    /// the rule's ident map; a refusal is logged with PostgreSQL's words.
    private func gssNameAllowed(_ client: ClientConnection, systemUser: String, mapName: String?) -> Bool {
        if let mapName { return identAllows(client, systemUser: systemUser, mapName: mapName, cert: false) }
        if systemUser == client.user { return true }
        loop.log.log("\(client.logPrefix) provided user name (\(client.user)) and authenticated user name (\(systemUser)) do not match")
        return false
    }
}

/// A check that runs off the loop (a password, or GSSAPI tokens), with what it needs from the
/// configuration.
enum ExternalCheck {
    /// PAM, with the service name (auth_pam_service, or the hba rule's pamservice=).
    case pam(service: String)
    /// A bind to an LDAP server (the hba rule's options, or auth_ldap_options).
    case ldap(LDAPOptions)
    /// GSSAPI tokens (no password): the hba rule's include_realm, krb_realm and map=.
    case gss(includeRealm: Bool, realm: String?, map: String?)

    var method: ClientAuthMethod {
        switch self {
        case .pam: return .pam
        case .ldap: return .ldap
        case .gss: return .gss
        }
    }

    /// For log lines, as PgBouncer names them.
    var name: String {
        switch self {
        case .pam: return "PAM"
        case .ldap: return "LDAP"
        case .gss: return "GSSAPI"
        }
    }
}
