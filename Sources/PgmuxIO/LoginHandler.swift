import Glibc
import CLibEV  // MSG_PEEK comes with its socket header
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
            if avail > 0, client.ssl == nil, DirectTLS.startsTLS(base.load(fromByteOffset: client.inbuf.start, as: UInt8.self)) {
                // A direct TLS handshake that checkDirectTLS did not take: client TLS is off (or
                // this is a Unix socket). PostgreSQL closes such a connection without a word.
                loop.log.log("\(client.logPrefix) direct TLS connection rejected: TLS is not enabled for this client")
                client.disconnect(reason: "direct TLS not enabled", notify: false)
                return
            }
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
                loop.handleCancel(key: key, from: client)
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

    /// Looks at a new TCP client's first byte without reading it (MSG_PEEK, only when
    /// client TLS is on, as PgBouncer): a TLS handshake record starts TLS at once, PostgreSQL 17's
    /// direct TLS. True when the byte was taken care of (TLS begun, or nothing to peek yet).
    func checkDirectTLS(_ client: ClientConnection) -> Bool {
        guard let ctx = loop.tls.toClients, !client.isUnixSocket, client.ssl == nil else {
            client.firstByteChecked = true
            return false
        }
        var byte: UInt8 = 0
        let n = recv(client.fd, &byte, 1, Int32(MSG_PEEK))
        if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return true }
        client.firstByteChecked = true
        guard n == 1, DirectTLS.startsTLS(byte) else { return false }  // EOF and errors: the read reports them
        if loop.log.enabled(.noise) { loop.log.write(.noise, "\(client.logPrefix) starting direct TLS handshake") }
        guard client.beginTLS(ctx, accept: true) else { client.sendError("TLS setup failed"); return true }
        client.directTLS = true
        client.state = .tlsHandshake
        continueTLS(client)
        return true
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
            if client.directTLS, let ssl = client.ssl, !TLSContexts.usedALPN(ssl) {
                loop.log.log("\(client.logPrefix) \(DirectTLS.missingALPN)")
                client.disconnect(reason: "direct TLS without ALPN", notify: false)
                return
            }
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
        // As PgBouncer's decide_startup_pool: replication is known before `options` is read.
        if let (_, value) = parameters.first(where: { $0.0.lowercased() == "replication" }) {
            guard let mode = ReplicationMode.parse(value) else {
                client.sendError(ReplicationMode.invalidValueMessage(value), code: SQLState.invalidParameterValue)
                return
            }
            client.replication = mode
        }
        for (key, value) in parameters {
            let k = key.lowercased()
            switch k {
            case "user": client.user = value
            case "database": client.database = value
            case "options" where client.replication != .none:
                // Its server is its own: any options go to PostgreSQL as they came.
                replicationOptions[client.id] = value
            case "options":
                // set_startup_options: tracked settings apply even when `options` is ignored.
                let ignored = Set(s.ignoreStartupParameters.map { $0.lowercased() })
                switch ParameterTracking.evaluateOptions(value, isTracked: loop.isTracked, ignored: ignored) {
                case .accepted(let tracked):
                    for (n, v) in tracked { client.params[n] = v }
                case .malformed:
                    client.sendError(ParameterTracking.malformedOptionsText)
                    return
                case .unsupported(let name, let v):
                    loop.log.warning("\(client.logPrefix) unsupported startup parameter in options: \(name)=\(v)")
                    client.sendError("unsupported startup parameter in options: \(name)")
                    return
                }
            case "replication":
                break
            default:
                if k.hasPrefix("_pq_.") { unsupportedProtocolOptions.append(key); continue }
                if loop.isTracked(k) { client.params[k] = value; continue }
                if s.ignoreStartupParameters.contains(where: { $0.lowercased() == k }) { continue }
                client.sendError("unsupported startup parameter: \(key)")
                return
            }
        }
        guard !client.user.isEmpty else { client.sendError("no username supplied"); return }
        if s.applicationNameAddHost {
            // PgBouncer's set_appname: "<name or app> - <address>:<port>".
            let address = client.isUnixSocket ? "unix:\(s.listenPort)" : client.remote.description
            client.params["application_name"] = "\(client.params["application_name"] ?? "app") - \(address)"
        }
        if client.database.isEmpty { client.database = client.user }
        if loop.shuttingDown && !AdminConsole.isConsole(client.database) {
            client.sendError("pooler is shutting down")
            return
        }
        if !loop.group.clientCounts.admit(limit: s.maxClientConn, console: AdminConsole.isConsole(client.database)) {
            client.sendError("no more connections allowed (max_client_conn)", code: SQLState.tooManyConnections)
            return
        }
        if minor > 0 || !unsupportedProtocolOptions.isEmpty {
            var m = MessageBuilder()
            m.negotiateProtocolVersion(minor: 0, unsupported: unsupportedProtocolOptions)
            client.queue(m.bytes)
        }
        client.countedAsLoggedIn = true
        beginAuthentication(client)
    }

    /// `config.database(named:)`, without the copy of the whole configuration (a retain of
    /// each of its fields) that calling a method on it through the loop costs.
    private func databaseEntry(_ name: String) -> DatabaseEntry? {
        if let db = loop.config.databases[name] { return db }
        return loop.config.fallbackDatabase?.instantiated(for: name)
    }

    // MARK: authentication

    /// How this client must prove who it is: from auth_type (later also from hba rules).
    /// `cert` and `peer` carry the hba rule's `map=` (an auth_ident_file map name), if any.
    /// `external`: a cleartext password checked off the loop (pam, ldap). `misconfigured`: the
    /// method cannot work as configured (the reason is logged, the client refused).
    enum LoginMethod {
        case trust, any, reject, cert(map: String?), peer(map: String?), password(ClientAuthMethod)
        case external(ExternalCheck)
        case misconfigured(String)
    }

    func loginMethod(for client: ClientConnection) -> LoginMethod {
        switch loop.config.settings.authType {
        case .trust: return .trust
        case .any: return .any
        case .plain: return .password(.plain)
        case .md5: return .password(.md5)
        case .scramSHA256: return .password(.scramSHA256)
        case .cert: return .cert(map: nil)
        case .pam: return .external(.pam(service: loop.config.settings.authPamService))
        case .ldap:
            guard let text = loop.config.settings.authLdapOptions else { return .misconfigured("auth_ldap_options is null") }
            do {
                return .external(.ldap(try LDAPOptions.parse(text: text)))
            } catch {
                return .misconfigured("auth_ldap_options: \(error.description)")
            }
        case .hba:
            // First matching rule wins; no rule means no entry.
            guard let hba = loop.hba,
                  let rule = hba.matchRule(type: client.isUnixSocket ? .local : .host, tls: client.ssl != nil,
                                       database: client.database, user: client.user, address: client.remote.bytes,
                                       replication: client.replication == .physical) else { return .reject }
            switch rule.method {
            case .trust: return .trust
            case .reject: return .reject
            case .md5: return .password(.md5)
            case .password: return .password(.plain)
            case .scramSHA256: return .password(.scramSHA256)
            case .cert: return .cert(map: rule.identMap)
            case .peer: return .peer(map: rule.identMap)
            case .pam: return .external(.pam(service: rule.options["pamservice"] ?? loop.config.settings.authPamService))
            case .ldap:
                guard let options = rule.ldap else { return .reject }
                return .external(.ldap(options))
            case .gss:
                return .external(.gss(includeRealm: rule.options["include_realm"] != "0", realm: rule.options["krb_realm"],
                                      map: rule.identMap))
            }
        }
    }

    /// How a user missing from auth_file is looked up (PgBouncer's set_pool and
    /// prepare_auth_database).
    enum AuthLookup {
        /// No auth_user applies, or the database is unknown (PgBouncer's fake database).
        case none
        case run(pool: Pool, sql: String)
        /// The auth database cannot be used: the client is told this, the reason is logged.
        case refuse(String)
    }

    func authLookup(for client: ClientConnection) -> AuthLookup {
        let s = loop.config.settings
        let console = AdminConsole.isConsole(client.database)
        let entry = console ? nil : databaseEntry(client.database)
        guard console || entry != nil else { return .none }
        guard let authUser = entry?.authUser ?? s.authUser, !authUser.isEmpty else { return .none }
        let configured = entry?.authDbname ?? s.authDbname
        let authDb = configured ?? client.database
        // pgmux never sends an auth_query to its own console.
        if AdminConsole.isConsole(authDb) {
            loop.log.error("\(client.logPrefix) cannot use the reserved \"\(authDb)\" database as an auth_dbname")
            return .refuse("bouncer config error")
        }
        guard let authEntry = databaseEntry(authDb) else {
            loop.log.error("\(client.logPrefix) authentication database \"\(authDb)\" is not configured.")
            return .refuse("bouncer config error")
        }
        if loop.disabledDatabases.contains(authDb) {
            return .refuse("authentication database \"\(authDb)\" is disabled")
        }
        return .run(pool: loop.pool(database: authDb, entry: authEntry, user: authUser),
                    sql: entry?.authQuery ?? s.authQuery)
    }

    /// Users PgBouncer has a global user for: auth_file and `[users]` entries, users found by
    /// auth_query, auth_user and the console's own user. Only these count against
    /// max_user_client_connections before they authenticate.
    private func isKnownUser(_ name: String) -> Bool {
        loop.authFile[name] != nil || loop.config.users[name] != nil || name == "pgbouncer"
            || name == loop.config.settings.authUser || (loop.authQueryCache[name].map { $0.secret != nil } ?? false)
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
        let method = loginMethod(for: client)
        if lookedUp == nil {
            if s.authType == .any && !AdminConsole.isConsole(client.database)
                && databaseEntry(client.database)?.user == nil {
                loop.log.error("\(client.logPrefix) auth_type=any requires forced user")
                client.sendError("bouncer config error")
                return
            }
            guard countClient(client) else { return }
        }
        var secret = loop.authFile[client.user]
        var lookupMade = false
        if case .external(let check) = method, check.method != .gss {
            // The password is checked elsewhere; PgBouncer refuses to mix that with auth_user.
            let entry = AdminConsole.isConsole(client.database) ? nil : databaseEntry(client.database)
            if let authUser = entry?.authUser ?? s.authUser, !authUser.isEmpty {
                loop.log.error("\(client.logPrefix) \(check.name) can't be used together with database authentication")
                client.sendError("bouncer config error")
                return
            }
        } else if let lookedUp {
            secret = lookedUp
            lookupMade = true
        } else if secret == nil, s.authType != .any {
            // As PgBouncer's set_pool: under every method that names a user (trust, hba, cert
            // and peer too), a user missing from auth_file is looked up first.
            switch authLookup(for: client) {
            case .none:
                break
            case .refuse(let reason):
                client.sendError(reason)
                return
            case .run(let pool, let sql):
                lookupMade = true
                if let cached = loop.authQueryCache[client.user], loop.now - cached.time < loop.authQueryCache.seconds {
                    secret = cached.secret
                } else {
                    // Ask PostgreSQL (as auth_user) for the secret; the client waits, unread.
                    client.state = .authenticating
                    client.stopReading()
                    let user = client.user
                    pool.lookupSecret(user: user, sql: sql) { [weak self, weak client] answer in
                        guard let self, let client, !client.isClosed, client.state == .authenticating else { return }
                        switch answer {
                        case .secret(let found):
                            self.loop.authQueryCache[user] = (found, self.loop.now)
                            // handle_auth_query_response: a found user counts (and is checked) now.
                            if found != nil, !client.countedAsUser, !self.countUser(client, key: user) { return }
                            client.startReading()
                            self.beginAuthentication(client, lookedUp: .some(found))
                        case .failed:
                            client.sendError("bouncer config error")
                        case .serverError(let message, let code):
                            client.sendError(message, code: code)
                        }
                    }
                    return
                }
            }
        }
        if secret == nil, case .password = method {
            loop.log.log("\(client.logPrefix) no such user: \(client.user)")
        }
        let passwordMethod: ClientAuthMethod
        switch method {
        case .any:
            authenticated(client, scramKeys: nil)
            return
        case .trust:
            // The user must be known: in auth_file, or found by auth_query.
            if secret == nil && (loop.config.settings.authFile != nil || lookupMade) {
                client.sendError("\"trust\" authentication failed", code: SQLState.invalidAuthorization)
                return
            }
            authenticated(client, scramKeys: nil)
            return
        case .misconfigured(let why):
            loop.log.error("\(client.logPrefix) \(why)")
            client.sendError("bouncer config error")
            return
        case .reject:
            client.sendError("login rejected", code: SQLState.invalidAuthorization)
            return
        case .cert(let mapName):
            // PgBouncer's login_via_cert: the TLS client certificate's common name must be the
            // login name, or, with map=, a line of that auth_ident_file map must allow it.
            let name = client.ssl.flatMap { TLSContexts.peerCommonName($0) }
            if client.ssl == nil {
                loop.log.error("\(client.logPrefix) TLS connection required")
            } else if name == nil {
                loop.log.error("\(client.logPrefix) TLS client certificate required")
            }
            guard let name, identAllows(client, systemUser: name, mapName: mapName, cert: true) else {
                client.sendError("certificate authentication failed", code: SQLState.invalidAuthorization)
                return
            }
            authenticated(client, scramKeys: nil)
            return
        case .peer(let mapName):
            // PgBouncer's login_as_unix_peer: the OS user at the other end of the Unix socket must
            // be the login name, or, with map=, a line of that auth_ident_file map must allow it.
            guard client.isUnixSocket, let name = Socket.peerUserName(client.fd),
                  identAllows(client, systemUser: name, mapName: mapName, cert: false) else {
                client.sendError("unix socket login rejected", code: SQLState.invalidAuthorization)
                return
            }
            authenticated(client, scramKeys: nil)
            return
        case .password(let m):
            passwordMethod = m
        case .external(let check):
            passwordMethod = check.method
        }
        let login = LoginState(ClientAuthenticator(method: passwordMethod, user: client.user, storedSecret: secret,
                                                   keyCache: loop.scramCache, scramIterations: s.scramIterations,
                                                   channelBinding: client.ssl.flatMap { loop.tls.endPoint(of: $0) },
                                                   nonceSource: { self.loop.random.scramNonce() }))
        if case .external(let check) = method { login.externalCheck = check }
        client.state = .authenticating
        client.login = login
        perform(login.authenticator.start(), client)
    }

    /// Whether `systemUser` (certificate CN or peer OS user) may log in as the client's user:
    /// without a map, only under its own name; with one, when a line of the map allows it. A
    /// refusal is logged with PgBouncer's words (which differ between cert and peer).
    func identAllows(_ client: ClientConnection, systemUser: String, mapName: String?, cert: Bool) -> Bool {
        guard let mapName else {
            if systemUser == client.user { return true }
            if cert { loop.log.error("\(client.logPrefix) TLS certificate name mismatch") }
            return false
        }
        // The hba file is only accepted when each map= names a map of the ident file loaded with it.
        if let map = loop.identMaps?[mapName], let line = map.match(systemUser: systemUser, databaseUser: client.user) {
            if loop.log.enabled(.noise) {
                loop.log.write(.noise, cert ? "\(client.logPrefix) ident map: \(mapName) \(line.systemText) \(line.databaseText)"
                                            : "\(client.logPrefix) ident map '\(mapName)' is applied")
            }
            return true
        }
        loop.log.error(cert ? "\(client.logPrefix) ident map: \(mapName) does not have a match"
                            : "\(client.logPrefix) ident map \(mapName) cannot be matched")
        return false
    }

    /// Reads whole password messages ('p') of a client in the middle of authentication.
    func handleAuthMessage(_ client: ClientConnection) {
        guard let base = client.inbuf.base else { return }
        while client.state == .authenticating {
            // A Kerberos ticket (with a Windows PAC) can be well over 8 kB.
            let limit = client.login?.authenticator.method == .gss ? loop.buffers.size : 8192
            switch Framing.peek(base + client.inbuf.start, available: client.inbuf.pending, maxPacketSize: limit) {
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

    func perform(_ action: ClientAuthAction, _ client: ClientConnection) {
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
        case .sendAuthenticationGSS: m.authenticationGSS()
        case .sendGSSContinue(let token): m.authenticationGSSContinue(token)
        case .acceptGSSToken(let token):
            acceptGSSToken(token, client)
            return
        case .verifyExternally(let password):
            verifyExternally(password, client)
            return
        case .sendAuthenticationCleartext: m.authenticationCleartext()
        case .sendAuthenticationMD5(let salt): m.authenticationMD5(salt: salt)
        case .sendAuthenticationSASL(let mechanisms): m.authenticationSASL(mechanisms: mechanisms)
        case .sendSASLContinue(let data): m.authenticationSASLContinue(data)
        case .sendSASLFinal(let data):
            // SASLFinal is the success of a SCRAM exchange; AuthenticationOk follows in the welcome,
            // in the same send (or an error does, if the login goes no further).
            m.authenticationSASLFinal(data)
            client.stage(m.bytes)
            fallthrough
        case .succeeded:
            let keys = client.login?.authenticator.passThroughKeys
            let verified = client.login?.authenticator.verifiedPassword
            client.login = nil
            authenticated(client, scramKeys: keys, verifiedPassword: verified)
            return
        case .failed(let message):
            // As PostgreSQL's auth_failed: 28P01 for the password methods, 28000 for the others.
            let external = client.login?.externalCheck != nil
            client.login = nil
            client.sendError(message, code: external ? SQLState.invalidAuthorization : SQLState.invalidPassword)
            return
        }
        client.queue(m.bytes)
    }

    // MARK: after authentication

    private func authenticated(_ client: ClientConnection, scramKeys: SCRAMPassThroughKeys?,
                               verifiedPassword: [UInt8]? = nil) {
        if AdminConsole.isConsole(client.database) { loop.admin.login(client); return }
        if loop.disabledDatabases.contains(client.database) {
            client.sendError("database \"\(client.database)\" is disabled")
            return
        }
        guard let entry = databaseEntry(client.database) else {
            if loop.config.settings.logConnections {
                loop.log.log("\(client.logPrefix) login failed: db=\(client.database) user=\(client.user)")
            }
            client.sendError("no such database: \(client.database)", code: SQLState.invalidCatalogName)
            return
        }
        if loop.config.databases[client.database] == nil {
            loop.log.log("registered new auto-database: \(client.database)")
        }
        let pool = loop.pool(database: client.database, entry: entry, user: client.user, replication: client.replication,
                             options: replicationOptions.removeValue(forKey: client.id))
        // A SCRAM verifier cannot log in by itself: the keys of a client's SCRAM login can.
        if pool.scramPassThrough == nil, pool.serverPassword.map(SCRAMSecret.isSCRAMSecret) ?? true, let keys = scramKeys {
            pool.scramPassThrough = keys
        }
        // pam / ldap: as PgBouncer, the password the client proved logs in to the server too,
        // unless one is configured for the server user (auth_file, [users], password=).
        if let verifiedPassword, pool.serverUser == client.user, pool.serverPassword == nil || pool.serverPasswordFromLogin {
            pool.serverPassword = String(decoding: verifiedPassword, as: UTF8.self)
            pool.serverPasswordFromLogin = true
        }
        client.pool = pool
        pool.machine.clientJoined()
        if let welcome = pool.welcome {
            client.sendWelcome(serverParameters: welcome)
            return
        }
        // No server has logged in yet; while logins fail, do not queue (check_fast_fail).
        guard pool.machine.awaitWelcome(client.member) else {
            pool.fastFail(client)
            return
        }
        client.state = .waitingForWelcome
        client.stateSince = loop.now  // query_wait_timeout / query_timeout run from here
        client.stopReading()
        pool.launchIfNeeded()
    }

    /// A client an online restart handed over: counted and attached to its pool as a login
    /// would (its limits apply); false when it was refused (and closed with the reason).
    func attachHandedOver(_ client: ClientConnection) -> Bool {
        guard countClient(client) else { return false }
        guard let pool = handedOverPool(database: client.database, user: client.user) else {
            client.sendError("no such database: \(client.database)", code: SQLState.invalidCatalogName)
            return false
        }
        client.pool = pool
        pool.machine.clientJoined()
        return true
    }

    /// The pool a handed-over client or server belongs to; nil when the database is gone.
    func handedOverPool(database: String, user: String) -> Pool? {
        guard let entry = databaseEntry(database) else { return nil }
        return loop.pool(database: database, entry: entry, user: user)
    }

    // MARK: client caps

    /// Clients per database (the console as `pgbouncer`) and per known user, counted from the
    /// startup packet until close, on every loop (`ClientCounts`): SHOW DATABASES / SHOW USERS
    /// `current_client_connections`.
    private var counts: ClientCounts { loop.group.clientCounts }
    /// The user a client is counted under when it is not its login name (auth_type=any counts
    /// the database's forced user, as PgBouncer).
    private var countedUserNames: [UInt64: String] = [:]

    private static let consoleKey = "pgbouncer"

    /// The `options` of replication clients, from the startup packet to the choice of pool.
    private var replicationOptions: [UInt64: String] = [:]

    func forgetReplicationOptions(_ client: ClientConnection) { replicationOptions[client.id] = nil }

    /// check_db_connection_count then check_user_connection_count; false once the client has
    /// been refused.
    private func countClient(_ client: ClientConnection) -> Bool {
        let s = loop.config.settings
        let console = AdminConsole.isConsole(client.database)
        let entry = console ? nil : databaseEntry(client.database)
        if console || entry != nil {
            let key = console ? Self.consoleKey : client.database
            let count = counts.addDatabase(key)
            client.countedInDatabase = true
            let limit = ClientLimits.effective(entry?.maxDbClientConnections, global: s.maxDbClientConnections)
            if !ClientLimits.databaseAllows(count: count, limit: limit,
                                            consoleAdmin: console && s.adminUsers.contains(client.user)) {
                loop.log.debug("set_pool: db '\(client.database)' full (\(count) >= \(limit))")
                client.sendError(ClientLimits.databaseExceeded)
                return false
            }
        }
        if s.authType == .any {
            guard let forced = console ? Self.consoleKey : entry?.user else { return true }
            return countUser(client, key: forced)
        }
        guard isKnownUser(client.user) else { return true }
        return countUser(client, key: client.user)
    }

    private func countUser(_ client: ClientConnection, key: String) -> Bool {
        let s = loop.config.settings
        let count = counts.addUser(key)
        client.countedAsUser = true
        if key != client.user { countedUserNames[client.id] = key }
        if AdminConsole.isConsole(client.database) && s.adminUsers.contains(client.user) { return true }
        let limit = ClientLimits.effective(loop.config.users[key]?.maxUserClientConnections,
                                           global: s.maxUserClientConnections)
        if !ClientLimits.userAllows(count: count, limit: limit, consoleAdmin: false) {
            loop.log.debug("set_pool: user '\(key)' full (\(count) >= \(limit))")
            client.sendError(ClientLimits.userExceeded)
            return false
        }
        return true
    }

    /// The client moves to `other`'s loop: the name it is counted under goes with it.
    func handOverCount(of client: ClientConnection, to other: LoginHandler) {
        if let key = countedUserNames.removeValue(forKey: client.id) { other.countedUserNames[client.id] = key }
    }

    /// A counted client closes (ClientConnection.disconnect).
    func uncount(_ client: ClientConnection) {
        if client.countedInDatabase {
            client.countedInDatabase = false
            let key = AdminConsole.isConsole(client.database) ? Self.consoleKey : client.database
            counts.removeDatabase(key)
        }
        if client.countedAsUser {
            client.countedAsUser = false
            let key = countedUserNames.removeValue(forKey: client.id) ?? client.user
            counts.removeUser(key)
        }
    }
}
