import Glibc
import PgmuxCore

/// Drives a client from its first byte to the welcome: startup packet, TLS/GSS refusal, cancel
/// requests, authentication against auth_file, database and pool lookup.
final class LoginHandler {
    unowned(unsafe) let loop: EventLoop

    init(loop: EventLoop) { self.loop = loop }

    /// Handles bytes of a client that has not sent its startup packet yet.
    func handleStartup(_ client: ClientConnection) {
        guard let base = client.inbuf.base else { return }
        while client.state == .startup {
            let avail = client.inbuf.pending
            guard let length = StartupPacket.length(base + client.inbuf.start, available: avail) else { return }
            guard length >= 8, length <= StartupPacket.maxLength else {
                client.sendError("invalid startup packet length \(length)")
                return
            }
            guard avail >= length else { return }
            let packet = StartupPacket.parse(UnsafeRawBufferPointer(start: base + client.inbuf.start, count: length))
            client.inbuf.start += length
            client.inbuf.scanned = client.inbuf.start
            switch packet {
            case .failure(.oldProtocol):
                client.sendError("old V2 protocol not supported")
                return
            case .failure(.unsupportedProtocol(let code)):
                client.sendError("unsupported protocol version \(code >> 16).\(code & 0xffff)")
                return
            case .failure(.layout(let text)):
                client.sendError(text)
                return
            case .failure(.badLength):
                client.sendError("invalid startup packet")
                return
            case .success(.sslRequest):
                if let ctx = loop.tls.toClients, !client.isUnixSocket, client.ssl == nil {
                    // Bytes behind the SSLRequest would be plaintext smuggled into the TLS session.
                    guard client.inbuf.isEmpty else {
                        client.sendError("received unencrypted data after SSL request")
                        return
                    }
                    client.queue([UInt8(ascii: "S")])
                    guard client.beginTLS(ctx, accept: true) else { client.sendError("TLS setup failed"); return }
                    client.state = .tlsHandshake
                    continueTLS(client)
                    return
                }
                client.queue([UInt8(ascii: "N")])
            case .success(.gssEncRequest):
                client.queue([UInt8(ascii: "N")])
            case .success(.cancel(let key)):
                loop.handleCancel(key: key)
                client.disconnect(reason: "cancel request", notify: false)
                return
            case .success(.startup(let minor, let parameters)):
                let mode = loop.config.settings.clientTlsSslmode
                if client.ssl == nil && !client.isUnixSocket && [.require, .verifyCA, .verifyFull].contains(mode) {
                    client.sendError("SSL required", code: SQLState.invalidAuthorization)
                    return
                }
                startup(client, minor: minor, parameters: parameters)
                return
            }
        }
    }

    /// Drives the client's TLS handshake; on success the startup packet comes next, encrypted.
    func continueTLS(_ client: ClientConnection) {
        switch client.continueHandshake() {
        case .pending:
            return
        case .failed(let why):
            loop.log.log("\(client.logPrefix) TLS handshake failed: \(why)")
            client.disconnect(reason: "TLS handshake failed", notify: false)
        case .done:
            client.state = .startup
            client.stopWriting()
            client.startReading()
            // The startup packet may have arrived with the last handshake flight.
            client.onReadable()
        }
    }

    private func startup(_ client: ClientConnection, minor: Int, parameters: [(String, String)]) {
        let s = loop.config.settings
        var unsupportedProtocolOptions: [String] = []
        for (key, value) in parameters {
            let k = key.lowercased()
            switch k {
            case "user": client.user = value
            case "database": client.database = value
            case "options":
                if s.ignoreStartupParameters.contains(where: { $0.lowercased() == "options" }) { continue }
                guard let items = ParameterTracking.parseOptions(value) else {
                    client.sendError("unsupported options startup parameter: only '-c config=val' and '--config=val' are allowed")
                    return
                }
                for (name, v) in items {
                    let n = name.lowercased()
                    if loop.isTracked(n) { client.params[n] = v }
                    else if !s.ignoreStartupParameters.contains(where: { $0.lowercased() == n }) {
                        client.sendError("unsupported startup parameter in options: \(name)")
                        return
                    }
                }
            case "replication":
                client.sendError("replication connections are not supported")
                return
            default:
                if k.hasPrefix("_pq_.") { unsupportedProtocolOptions.append(key); continue }
                if loop.isTracked(k) { client.params[k] = value; continue }
                if s.ignoreStartupParameters.contains(where: { $0.lowercased() == k }) { continue }
                client.sendError("unsupported startup parameter: \(key)")
                return
            }
        }
        guard !client.user.isEmpty else { client.sendError("no username supplied"); return }
        if client.database.isEmpty { client.database = client.user }
        if loop.shuttingDown && !AdminConsole.isConsole(client.database) {
            client.sendError("pooler is shutting down", code: SQLState.adminShutdown)
            return
        }
        if loop.loggedInClients >= s.maxClientConn && !AdminConsole.isConsole(client.database) {
            client.sendError("no more connections allowed (max_client_conn)", code: SQLState.tooManyConnections)
            return
        }
        if minor > 0 || !unsupportedProtocolOptions.isEmpty {
            var m = MessageBuilder()
            m.negotiateProtocolVersion(minor: 0, unsupported: unsupportedProtocolOptions)
            client.queue(m.bytes)
        }
        loop.loggedInClients += 1
        client.countedAsLoggedIn = true
        beginAuthentication(client)
    }

    // MARK: authentication

    /// How this client must prove who it is: from auth_type (later also from hba rules).
    enum LoginMethod { case trust, any, reject, cert, peer, password(ClientAuthMethod) }

    func loginMethod(for client: ClientConnection) -> LoginMethod {
        switch loop.config.settings.authType {
        case .trust: return .trust
        case .any: return .any
        case .plain: return .password(.plain)
        case .md5: return .password(.md5)
        case .scramSHA256: return .password(.scramSHA256)
        case .cert: return .cert
        case .ldap, .pam: return .reject
        case .hba:
            // First matching rule wins; no rule means no entry.
            guard let hba = loop.hba,
                  let rule = hba.match(type: client.isUnixSocket ? .local : .host, tls: client.ssl != nil,
                                       database: client.database, user: client.user, address: client.remote.bytes,
                                       replication: false) else { return .reject }
            switch rule.method {
            case .trust: return .trust
            case .reject: return .reject
            case .md5: return .password(.md5)
            case .password: return .password(.plain)
            case .scramSHA256: return .password(.scramSHA256)
            case .cert: return .cert
            case .peer: return .peer
            }
        }
    }

    /// The auth_user pool and query that look up users missing from auth_file, if configured.
    private func authQuery(for client: ClientConnection) -> (pool: Pool, sql: String)? {
        let s = loop.config.settings
        let entry = loop.config.database(named: client.database)
        guard let authUser = entry?.authUser ?? s.authUser, !authUser.isEmpty else { return nil }
        let authDb = entry?.authDbname ?? s.authDbname ?? client.database
        guard let authEntry = loop.config.database(named: authDb) else { return nil }
        return (loop.pool(database: authDb, entry: authEntry, user: authUser), entry?.authQuery ?? s.authQuery)
    }

    /// `lookedUp` carries an auth_query answer (.some(nil): the user has no usable secret).
    private func beginAuthentication(_ client: ClientConnection, lookedUp: String?? = nil) {
        let s = loop.config.settings
        if AdminConsole.isConsole(client.database) && client.user == "pgbouncer" && client.isUnixSocket
            && Socket.peerUID(client.fd) == getuid() {
            // PgBouncer's admin_pre_login: the pooler's own OS user needs no password.
            if s.logConnections { loop.log.log("\(client.logPrefix) pgbouncer access from unix socket") }
            loop.admin.login(client, sameUIDUnixSocket: true)
            return
        }
        var secret = loop.authFile[client.user]
        if let lookedUp {
            secret = lookedUp
        } else if secret == nil, case .password = loginMethod(for: client), let (pool, sql) = authQuery(for: client) {
            if let cached = loop.authQueryCache[client.user], loop.now - cached.time < loop.authQueryCacheSeconds {
                secret = cached.secret
            } else {
                // Ask PostgreSQL (as auth_user) for the secret; the client waits, unread.
                client.state = .authenticating
                client.stopReading()
                let user = client.user
                pool.lookupSecret(user: user, sql: sql) { [weak self, weak client] answer in
                    guard let self, let client, !client.isClosed, client.state == .authenticating else { return }
                    self.loop.authQueryCache[user] = (answer, self.loop.now)
                    client.startReading()
                    self.beginAuthentication(client, lookedUp: .some(answer))
                }
                return
            }
        }
        let method: ClientAuthMethod
        switch loginMethod(for: client) {
        case .any:
            authenticated(client, scramKeys: nil)
            return
        case .trust:
            if loop.config.settings.authFile != nil, secret == nil {
                client.sendError("\"trust\" authentication failed", code: SQLState.invalidAuthorization)
                return
            }
            authenticated(client, scramKeys: nil)
            return
        case .reject:
            client.sendError(s.authType == .hba ? "login rejected" : "bouncer config error: auth_type \(s.authType.rawValue) is not supported",
                             code: SQLState.invalidAuthorization)
            return
        case .cert:
            // The TLS client certificate's common name must be the login name.
            guard let ssl = client.ssl, let name = TLSContexts.peerCommonName(ssl), name == client.user else {
                client.sendError("certificate authentication failed", code: SQLState.invalidAuthorization)
                return
            }
            authenticated(client, scramKeys: nil)
            return
        case .peer:
            guard client.isUnixSocket, let name = Socket.peerUserName(client.fd), name == client.user else {
                client.sendError("unix socket login rejected", code: SQLState.invalidAuthorization)
                return
            }
            authenticated(client, scramKeys: nil)
            return
        case .password(let m):
            method = m
        }
        if secret == nil, loop.config.settings.logPoolerErrors {
            loop.log.log("\(client.logPrefix) no such user: \(client.user)")
        }
        var auth = ClientAuthenticator(method: method, user: client.user, storedSecret: secret,
                                       keyCache: loop.scramCache, scramIterations: s.scramIterations,
                                       channelBinding: client.ssl.flatMap { TLSContexts.serverEndPoint($0) })
        client.state = .authenticating
        let action = auth.start()
        client.login = LoginState(auth)
        perform(action, client)
    }

    /// Reads whole password messages ('p') of a client in the middle of authentication.
    func handleAuthMessage(_ client: ClientConnection) {
        guard let base = client.inbuf.base else { return }
        while client.state == .authenticating {
            switch Framing.peek(base + client.inbuf.start, available: client.inbuf.pending, maxPacketSize: 8192) {
            case .needHeader: return
            case .invalid(let length):
                client.sendError("invalid packet length \(length) during authentication")
                return
            case .message(let type, let total):
                guard client.inbuf.pending >= total else { return }
                guard type == UInt8(ascii: "p") else {
                    if type == UInt8(ascii: "X") { client.disconnect(reason: "client close request", notify: false); return }
                    client.sendError("expected a password message during authentication")
                    return
                }
                let body = Array(UnsafeRawBufferPointer(start: base + client.inbuf.start + 5, count: total - 5))
                client.inbuf.start += total
                client.inbuf.scanned = client.inbuf.start
                guard let login = client.login else { return }
                let action = login.authenticator.receivePassword(body)
                perform(action, client)
            }
        }
    }

    private func perform(_ action: ClientAuthAction, _ client: ClientConnection) {
        var m = MessageBuilder()
        switch action {
        case .deriveKeys(let request):
            // PBKDF2 on the crypto worker; the client sends nothing until it hears from us.
            client.stopReading()
            loop.crypto.submit(request) { [weak self, weak client] keys in
                guard let self, let client, !client.isClosed, client.state == .authenticating,
                      let login = client.login else { return }
                client.startReading()
                self.perform(login.authenticator.keysDerived(keys), client)
            }
            return
        case .sendAuthenticationCleartext: m.authenticationCleartext()
        case .sendAuthenticationMD5(let salt): m.authenticationMD5(salt: salt)
        case .sendAuthenticationSASL(let mechanisms): m.authenticationSASL(mechanisms: mechanisms)
        case .sendSASLContinue(let data): m.authenticationSASLContinue(data)
        case .sendSASLFinal(let data):
            // SASLFinal is the success of a SCRAM exchange; AuthenticationOk follows in the welcome.
            m.authenticationSASLFinal(data)
            client.queue(m.bytes)
            fallthrough
        case .succeeded:
            let keys = client.login?.authenticator.passThroughKeys
            client.login = nil
            authenticated(client, scramKeys: keys)
            return
        case .failed(let message):
            client.login = nil
            loop.log.log("\(client.logPrefix) login failed: db=\(client.database) user=\(client.user)")
            client.sendError(message, code: SQLState.invalidPassword)
            return
        }
        client.queue(m.bytes)
    }

    // MARK: after authentication

    private func authenticated(_ client: ClientConnection, scramKeys: SCRAMPassThroughKeys?) {
        if AdminConsole.isConsole(client.database) { loop.admin.login(client); return }
        if loop.disabledDatabases.contains(client.database) {
            client.sendError("database \"\(client.database)\" is disabled")
            return
        }
        guard let entry = loop.config.database(named: client.database) else {
            client.sendError("no such database: \(client.database)", code: SQLState.invalidCatalogName)
            return
        }
        if loop.config.databases[client.database] == nil {
            loop.log.log("registered new auto-database: \(client.database)")
        }
        let pool = loop.pool(database: client.database, entry: entry, user: client.user)
        if pool.scramPassThrough == nil, pool.serverPassword == nil, let keys = scramKeys {
            pool.scramPassThrough = keys
        }
        client.pool = pool
        pool.clientCount += 1
        if let welcome = pool.welcome {
            client.sendWelcome(serverParameters: welcome)
            return
        }
        // No server has logged in yet; while logins fail, do not queue (check_fast_fail).
        if pool.loginFailing {
            pool.fastFail(client)
            return
        }
        client.state = .waitingForWelcome
        client.stateSince = loop.now  // query_wait_timeout / query_timeout run from here
        client.stopReading()
        pool.welcomeWaiters.append(client)
        pool.launchIfNeeded()
    }
}
