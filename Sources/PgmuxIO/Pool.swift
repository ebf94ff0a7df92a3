import Glibc
import PgmuxCore

/// The outcome of an auth_query lookup.
enum AuthQueryAnswer {
    /// The query ran: the secret of its row, nil when no row or a NULL secret.
    case secret(String?)
    /// The query failed or its server went away: PgBouncer's `bouncer config error`.
    case failed
    /// The auth pool's server refused the login: its message and SQLSTATE.
    case serverError(message: String, code: String)
}

/// The servers of one (database, user) pair and the clients waiting for them. Idle servers are
/// reused most-recently-used first; waiting clients are served first-come first-served.
public final class Pool {
    /// The loop owns the pools. Unmanaged, so that the lending paths borrow it at +0 (`withLoop`).
    private let loopRef: Unmanaged<EventLoop>
    var loop: EventLoop { loopRef.takeUnretainedValue() }
    @inline(__always) private func withLoop<R>(_ body: (EventLoop) -> R) -> R { loopRef._withUnsafeGuaranteedRef(body) }
    public let databaseName: String
    public let userName: String
    var database: DatabaseEntry
    /// Login name and password used toward PostgreSQL (a forced `user=` wins over the client's).
    let serverUser: String
    var serverPassword: String?
    var mode: PoolMode
    var size: Int
    var reserveSize: Int
    var minSize: Int

    var idle: [ServerConnection] = []
    var waiting = FIFOQueue<ClientConnection>()
    var welcomeWaiters: [ClientConnection] = []
    /// auth_query lookups waiting for a server of this (auth_user) pool.
    var authLookups: [(user: String, sql: String, answer: (AuthQueryAnswer) -> Void)] = []
    /// ParameterStatus set of the first server login, replayed to every client of this pool.
    var welcome: [(String, String)]? { didSet { welcomes.removeAll() } }
    /// Welcomes built from `welcome`, by client parameters (see WelcomeCache).
    var welcomes = WelcomeCache()
    /// Servers lent to a client or running the pooler's own query.
    public internal(set) var activeCount = 0
    public internal(set) var connectingCount = 0
    /// Last time a server was lent (autodb_idle_timeout).
    var lastUsed: Double = 0
    /// Logged-in clients of this pool.
    public internal(set) var clientCount = 0
    /// PgBouncer's `last_login_failed`: the last connect or login of this pool failed and none
    /// has succeeded since. While set, a client that would have to wait for a new server is
    /// refused at once with `lastFailureMessage` (check_fast_fail), and at most one connection
    /// attempt is in flight.
    var loginFailing = false
    /// The reason of the last failure (the server's own message for a login ErrorResponse).
    var lastFailureMessage = ""
    /// When the next connection attempt may be made after failures.
    var backoff = LoginBackoff()
    /// PgBouncer's statistics counters: running totals, and their value at the start of the
    /// current stats_period (averages are the difference over the period).
    var counters = AdminStatCounters()
    var periodCounters = AdminStatCounters()
    /// Latency distributions for the metrics endpoint.
    var waitHistogram = LatencyHistogram()
    var queryHistogram = LatencyHistogram()
    var transactionHistogram = LatencyHistogram()
    /// SCRAM keys from a client's exchange, for logging in without the plain password.
    var scramPassThrough: SCRAMPassThroughKeys?

    init(loop: EventLoop, databaseName: String, database: DatabaseEntry, userName: String,
         serverUser: String, serverPassword: String?) {
        self.loopRef = Unmanaged.passUnretained(loop)
        self.databaseName = databaseName
        self.database = database
        self.userName = userName
        self.serverUser = serverUser
        self.serverPassword = serverPassword
        let c = loop.config
        mode = c.poolMode(database: databaseName, user: userName)
        size = c.poolSize(database: databaseName, user: userName)
        reserveSize = c.reservePoolSize(database: databaseName, user: userName)
        minSize = c.minPoolSize(database: databaseName)
        lastUsed = loop.now
        refreshLifetime()
    }

    /// Servers that exist or are being opened.
    public var serverCount: Int { idle.count + activeCount + connectingCount }

    var startupParameters: [(String, String)] {
        var p: [(String, String)] = [("database", database.dbname), ("user", serverUser)]
        if let v = database.clientEncoding { p.append(("client_encoding", v)) }
        if let v = database.datestyle { p.append(("DateStyle", v)) }
        if let v = database.timezone { p.append(("TimeZone", v)) }
        if let v = database.applicationName { p.append(("application_name", v)) }
        return p
    }

    func makeServerAuthenticator() -> ServerAuthenticator {
        ServerAuthenticator(user: serverUser, password: serverPassword, passThroughKeys: scramPassThrough,
                            keyCache: loop.scramCache)
    }

    // MARK: lending servers

    /// PAUSE (global or of this database) is in effect; the common case costs two loads.
    private var isPaused: Bool {
        withLoop { loop in loop.globallyPaused || (!loop.pausedDatabases.isEmpty && loop.isPaused(databaseName)) }
    }

    /// A logged-in client has a request: lend it an idle server or queue it.
    func enqueue(_ client: ClientConnection) {
        if isPaused {
            if loop.shuttingDown { client.sendError("server shutting down"); return }
            waiting.append(client)
            return
        }
        if let server = takeIdle() {
            if let check = healthCheckQuery(for: server) {
                // Idle too long: test it first; the check's release hands it to this client.
                waiting.append(client)
                activeCount += 1
                server.runOwnQuery(check, kind: .healthCheck)
                return
            }
            link(client, server)
            return
        }
        // check_fast_fail: logins are failing and no server is left to wait for.
        if loginFailing && activeCount == 0 { fastFail(client); return }
        waiting.append(client)
        launchIfNeeded()
    }

    /// Most recently used first (warm caches, idle servers age out), or least recently used
    /// first with server_round_robin, as PgBouncer.
    private func takeIdle() -> ServerConnection? {
        while let s = loop.config.settings.serverRoundRobin ? (idle.isEmpty ? nil : idle.removeFirst()) : idle.popLast() {
            if s.closeNeeded || loop.now - s.connectTime > effectiveLifetime {
                s.close(reason: s.closeNeeded ? "database configuration changed" : "server lifetime over", notifyClient: false)
                continue
            }
            return s
        }
        return nil
    }

    /// server_check_query for a server idle longer than server_check_delay (`<empty>` sends an
    /// empty query; an empty setting disables the check).
    private func healthCheckQuery(for server: ServerConnection) -> String? {
        let s = loop.config.settings
        guard !s.serverCheckQuery.isEmpty, loop.now - server.lastUsed >= s.serverCheckDelay else { return nil }
        return s.serverCheckQuery == "<empty>" ? "" : s.serverCheckQuery
    }

    /// server_lifetime for this pool (infinity when 0), kept current by init and reload so the
    /// release path reads one Double.
    var effectiveLifetime: Double = .infinity

    func refreshLifetime() {
        let l = database.serverLifetime ?? loop.config.settings.serverLifetime
        effectiveLifetime = l > 0 ? l : .infinity
    }

    /// Links a client to a server, syncing tracked parameters first when they differ.
    func link(_ client: ClientConnection, _ server: ServerConnection) {
        activeCount += 1
        server.state = .active
        server.client = client
        server.lastUsed = loop.now
        client.server = server
        client.state = .active
        Stats.assigned(pool: self, waited: client.stateSince > 0 ? loop.now - client.stateSince : 0)
        client.stateSince = loop.now
        lastUsed = client.stateSince
        // Client parameter sets are interned, so the common case is one storage comparison.
        if server.paramsInSync != client.params {
            var sets = ""
            for (key, value) in client.params where server.params[key]?.value != value {
                let name = server.params[key]?.name ?? key
                sets += "SET \(name)=\(quoteLiteral(value));"
            }
            if !sets.isEmpty {
                server.runOwnQuery(sets, kind: .parameterSync)
                return
            }
            server.paramsInSync = client.params
        }
        server.startReading()
        client.startReading()
        if !client.inbuf.isEmpty { client.relay() }
    }

    private func quoteLiteral(_ v: String) -> String {
        "'" + String(v.flatMap { $0 == "'" ? ["'", "'"] : [$0] }) + "'"
    }

    /// A server is done with its client (or its reset): lend it to the next waiter or keep it.
    func release(_ server: ServerConnection) {
        if let clientRef = server.clientRef {
            server.client = nil
            clientRef._withUnsafeGuaranteedRef { client in
                client.server = nil
                if client.state == .active {
                    client.state = .idle
                    client.queryStart = 0
                    if client.inbuf.isEmpty { client.releaseBufferIfEmpty() }
                    client.startReading()
                }
            }
        }
        server.tracker.reset()
        server.expectations.removeAll()
        if server.cancelsInFlight > 0 {
            server.state = .beingCanceled  // back through here when the last cancel has landed
            server.startReading()
            return
        }
        if server.state != .idle { activeCount -= 1 }  // active, own-query and being-canceled servers count as in use
        server.state = .idle
        server.releaseBufferIfEmpty()
        server.lastUsed = loop.now
        if server.closeNeeded || loop.now - server.connectTime > effectiveLifetime {
            server.close(reason: server.closeNeeded ? "database configuration changed" : "server lifetime over",
                         notifyClient: false)
            launchIfNeeded()
            return
        }
        if !authLookups.isEmpty {
            let lookup = authLookups.removeFirst()
            activeCount += 1
            server.runAuthQuery(lookup.sql, user: lookup.user, answer: lookup.answer)
            return
        }
        if !isPaused, let next = waiting.popFirst() {
            server.state = .idle
            link(next, server)
        } else {
            idle.append(server)
            server.startReading()  // notice a server that closes while idle
        }
    }

    func removeWaiting(_ client: ClientConnection) { waiting.remove { $0 === client } }

    /// After the pool size went down (SET, RELOAD): idle servers beyond size + reserve are closed,
    /// least recently used first, as PgBouncer's check_pool_size.
    func closeExcessIdle() {
        var excess = serverCount - (size + reserveSize)
        while excess > 0, !idle.isEmpty {
            idle[0].close(reason: "too many servers in the pool", notifyClient: false)
            excess -= 1
        }
    }

    /// Looks up a user's secret with auth_query on a server of this pool.
    func lookupSecret(user: String, sql: String, answer: @escaping (AuthQueryAnswer) -> Void) {
        if let server = takeIdle() {
            activeCount += 1
            server.runAuthQuery(sql, user: user, answer: answer)
            return
        }
        authLookups.append((user, sql, answer))
        launchIfNeeded()
    }

    /// After RESUME: lend idle servers to the queue, open more if needed.
    func serveWaiting() {
        while !waiting.isEmpty, let server = takeIdle() {
            guard let next = waiting.popFirst() else { break }
            link(next, server)
        }
        launchIfNeeded()
    }

    /// RECONNECT: idle servers marked close_needed go now; busy ones when released.
    func closeIdleMarked() {
        for s in idle where s.closeNeeded { s.close(reason: "database configuration changed", notifyClient: false) }
    }
    func removeWelcomeWaiter(_ client: ClientConnection) { welcomeWaiters.removeAll { $0 === client } }

    // MARK: opening servers

    /// Opens servers while clients wait and the limits allow. Unlike PgBouncer (one connect in
    /// flight per pool), pgmux opens as many as there are waiting clients, so a cold pool under a
    /// burst fills in one round trip instead of one login after another.
    func launchIfNeeded() {
        let demand = waiting.count + authLookups.count + (welcome == nil && !welcomeWaiters.isEmpty ? 1 : 0)
        var toOpen = demand - connectingCount
        while toOpen > 0 && canOpen() {
            if !launch() { break }
            toOpen -= 1
        }
    }

    /// Keeps `min_pool_size` servers open (called by the maintenance timer), as PgBouncer's
    /// janitor: within pool_size, for pools that have clients or belong to a forced-user database.
    func topUp() {
        if clientCount > 0 || database.user != nil {
            while serverCount < minSize && serverCount < size && canOpen(evictIfNeeded: false) { if !launch() { break } }
        }
        launchIfNeeded()
    }

    /// `evictIfNeeded`: a client waits, so idle servers of other pools may be closed to stay
    /// within max_db_connections / max_user_connections (not for min_pool_size, as PgBouncer).
    private func canOpen(evictIfNeeded: Bool = true) -> Bool {
        if backoff.consecutiveFailures > 0 {
            // After a failure: one connection at a time, once the retry delay has passed.
            if connectingCount > 0 || !backoff.mayAttempt(at: loop.now) { return false }
        }
        var limit = size
        if let first = waiting.first, reserveSize > 0,
           loop.now - first.stateSince >= loop.config.settings.reservePoolTimeout {
            limit += reserveSize
            if serverCount >= size && serverCount < limit {
                loop.log.log("\(first.logPrefix) taking connection from reserve_pool")
            }
        }
        guard serverCount < limit else { return false }
        return loop.limitsAllow(self, evictIfNeeded: evictIfNeeded)
    }

    @discardableResult
    func launch() -> Bool {
        guard let address = loop.serverAddress(for: database) else {
            loginAttemptFailed(nil, reason: "could not resolve host \(database.host ?? "")", failure: .transport)
            return false
        }
        let fd: Int32
        do { fd = try Socket.connect(address) } catch {
            loginAttemptFailed(nil, reason: "connect failed: \(error)", failure: .transport)
            return false
        }
        let server = ServerConnection(loop: loop, pool: self, fd: fd, address: address)
        connectingCount += 1
        loop.serverOpened(server)
        server.startWriting()
        return true
    }

    /// check_fast_fail's other half: a client turned away still triggers an attempt (when the
    /// retry delay allows), or no attempt would ever be made once every waiter has been refused.
    func probe() {
        if canOpen() { launch() }
    }

    func serverLoggedIn(_ server: ServerConnection) {
        connectingCount -= 1
        loginFailing = false
        backoff.reset()
        if welcome == nil {
            welcome = server.reportedOrder.compactMap { k in server.params[k].map { ($0.name, $0.value) } }
        }
        let greeted = welcomeWaiters
        welcomeWaiters.removeAll()
        for c in greeted { c.sendWelcome(serverParameters: welcome ?? []) }
        server.state = .idle
        release(server)
    }

    // MARK: login failures

    /// Forgets past failures (RELOAD with a changed database entry or password).
    func resetLoginBackoff() {
        backoff.reset()
        loginFailing = false
    }

    /// A client turned away because the pool cannot log in (PgBouncer's check_fast_fail text).
    func fastFail(_ client: ClientConnection) {
        client.sendError("server login has been failing, cached error: \(lastFailureMessage) (server_login_retry)")
        probe()
    }

    /// The one path of every failed server connect or login: connect error or timeout, TLS
    /// failure, a broken or oversized packet, an authentication request that cannot be answered,
    /// an ErrorResponse, EOF before ReadyForQuery (`ServerConnection.close` of a server that has
    /// not logged in, and `launch` when the connect fails at once). Logs the reason, records it
    /// for check_fast_fail, and sets the delay before the next attempt. A refusal (.rejected)
    /// also fails the clients waiting on this pool when it has no usable server (PgBouncer's
    /// kill_pool_logins), except 57P03 ("the database system is starting up"), which fails no one.
    func loginAttemptFailed(_ server: ServerConnection?, reason: String, failure: ServerConnection.LoginFailure,
                            clientMessage: String? = nil) {
        let now = loop.now
        let prefix = server?.logPrefix ?? "\(databaseName)/\(userName)"
        switch failure {
        case .transport:
            loop.log.warning("\(prefix) server login failed: \(reason)")
        case .rejected(_, let severity?):
            loop.log.warning("server login failed: \(severity) \(reason)")  // PgBouncer's exact line
        case .rejected(_, nil):
            loop.log.warning("\(prefix) server login failed: \(reason)")
        }
        // 57P03 "the database system is starting up": retried after server_login_retry, without
        // backoff, and fails no client.
        let transient: Bool
        if case .rejected(SQLState.cannotConnectNow, _) = failure { transient = true } else { transient = false }
        backoff.failed(at: now, attemptStarted: server?.connectTime ?? now, transient: transient,
                       base: loop.config.settings.serverLoginRetry)
        if backoff.isBackingOff && !transient {
            loop.log.log("\(prefix) \(backoff.consecutiveFailures) consecutive server login failures, next attempt in \(formatSeconds(backoff.delay))")
        }
        guard !transient else { return }
        loginFailing = true
        lastFailureMessage = reason
        guard case .rejected(let code, _) = failure else { return }
        // kill_pool_logins: only when no usable server is left (or none ever logged in).
        guard welcome == nil || idle.count + activeCount == 0 else { return }
        let lookups = authLookups
        authLookups.removeAll()
        let toFail = welcomeWaiters + waiting.drain()
        welcomeWaiters.removeAll()
        // Clients waiting for an auth_query of this pool get the server's refusal too (an
        // auth_dbname served by `*` that PostgreSQL does not have: its own error).
        for l in lookups { l.answer(.serverError(message: reason, code: code)) }
        for c in toFail { c.sendError(clientMessage ?? reason, code: code) }
    }

    private func formatSeconds(_ s: Double) -> String {
        s == s.rounded() ? "\(Int(s)) s" : "\((s * 1000).rounded() / 1000) s"
    }

    func serverClosed(_ server: ServerConnection, previousState: ServerConnection.State) {
        switch previousState {
        case .connecting, .tlsRequest, .tlsHandshake, .loggingIn: connectingCount -= 1
        case .active, .ownQuery, .beingCanceled: activeCount -= 1
        case .idle: idle.removeAll { $0 === server }
        case .closed: break
        }
        loop.serverClosed(server)
        if !waiting.isEmpty || (welcome == nil && !welcomeWaiters.isEmpty) { launchIfNeeded() }
    }
}
