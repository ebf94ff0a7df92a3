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

/// The servers of one (database, user) pair and the clients waiting for them: the shell of a
/// `PoolStateMachine`, which decides who waits, who is lent what, and when servers open; this
/// class carries those decisions out on connections and keeps what the machine need not know
/// (the welcome, auth_query callbacks, statistics).
public final class Pool {
    /// The loop owns the pools. Unmanaged, so that the lending paths borrow it at +0 (`withLoop`).
    private let loopRef: Unmanaged<EventLoop>
    var loop: EventLoop { loopRef.takeUnretainedValue() }
    /// The loop's key for this pool, also the group's (`ServerBudget`, `PoolShare`).
    let key: String
    /// Idle and waiting figures of this pool on every loop; nil with one loop, and for
    /// replication pools (their servers belong to one client). Unmanaged: the group keeps every
    /// share for the life of the process, and the lending paths borrow it at +0 (`withShare`);
    /// a retain there would write to an object all loops use, its reference count's cache line
    /// bouncing between cores on every transaction.
    private let shareRef: Unmanaged<PoolShare>?
    var share: PoolShare? { shareRef?.takeUnretainedValue() }
    var isShared: Bool { shareRef != nil }
    @inline(__always) func withShare<R>(_ body: (PoolShare) -> R) -> R? { shareRef?._withUnsafeGuaranteedRef(body) }
    /// This pool's servers on every loop (nil where `shareRef` is), kept by `ServerBudget` for
    /// the life of the process; unmanaged for the same reason.
    private let serverTotalRef: Unmanaged<PoolServerTotal>?
    public let databaseName: String
    public let userName: String
    var database: DatabaseEntry { didSet { refreshSelector() } }
    /// Which host of `database.host` the next server goes to (host lists, target_session_attrs).
    var selector: HostSelector
    /// failover_timeout's state (for pools following their hosts).
    var failoverWait = FailoverWait()
    /// Login name and password used toward PostgreSQL (a forced `user=` wins over the client's).
    let serverUser: String
    var serverPassword: String?
    /// `serverPassword` is the one a pam / ldap client proved (replaced by the next one).
    var serverPasswordFromLogin = false
    var mode: PoolMode
    /// A pool of replication clients: session mode, no min_pool_size, servers opened with
    /// `replication` (and the clients' `options`), closed when their client leaves.
    let replication: ReplicationMode
    let replicationOptions: String?
    /// The waiting clients, idle servers, counts, limits, pause and login failures.
    var machine: PoolStateMachine

    /// Requests for an idle server this pool has sent to other loops and not yet had answered.
    var pullsInFlight = 0
    /// What `balance` last published to the pool's share (whether servers idle and clients wait
    /// here), and when; when `fairerLoop` last looked.
    var publishedIdle = false, publishedWaiting = false
    var publishedAt = 0.0, fairnessCheckedAt = 0.0
    /// This pool waits in its loop's `handOversDue`.
    var handOverScheduled = false
    /// auth_query lookups waiting for a server of this (auth_user) pool, in the order the
    /// machine counts them (`pendingLookups`).
    var authLookups: [(user: String, sql: String, answer: (AuthQueryAnswer) -> Void)] = []
    /// ParameterStatus set of the first server login, replayed to every client of this pool.
    var welcome: [(String, String)]? { didSet { welcomes.removeAll() } }
    /// Welcomes built from `welcome`, by client parameters (see WelcomeCache).
    var welcomes = WelcomeCache()
    /// Last time a server was lent (autodb_idle_timeout).
    var lastUsed: Double = 0
    /// The reason of the last failure (the server's own message for a login ErrorResponse),
    /// told to clients refused by check_fast_fail.
    var lastFailureMessage = ""
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
    /// LISTEN/NOTIFY in transaction and statement mode, from the first LISTEN on.
    private(set) var notificationsIfAny: NotificationHub?
    var notifications: NotificationHub {
        if let n = notificationsIfAny { return n }
        let n = NotificationHub(pool: self)
        notificationsIfAny = n
        return n
    }

    init(loop: EventLoop, key: String, databaseName: String, database: DatabaseEntry, userName: String,
         serverUser: String, serverPassword: String?, replication: ReplicationMode = .none,
         replicationOptions: String? = nil) {
        self.loopRef = Unmanaged.passUnretained(loop)
        self.key = key
        let share = replication == .none ? loop.group.share(for: key) : nil
        self.shareRef = share.map { Unmanaged.passUnretained($0) }
        self.serverTotalRef = share == nil ? nil : Unmanaged.passUnretained(loop.group.budget.poolTotal(for: key))
        self.databaseName = databaseName
        self.database = database
        self.selector = Pool.makeSelector(database, loop.config.settings)
        self.userName = userName
        self.serverUser = serverUser
        self.serverPassword = serverPassword
        self.replication = replication
        self.replicationOptions = replicationOptions
        mode = replication != .none ? .session : loop.config.poolMode(database: databaseName, user: userName)
        machine = PoolStateMachine(limits: Pool.limits(loop.config, database: databaseName, user: userName,
                                                       replication: replication))
        machine.setPause(loop.pauseState(of: databaseName))
        if let known = share?.welcome {
            welcome = known
            machine.welcomeKnown()
        }
        if let state = share?.loginState {
            machine.adoptLoginState(backoff: state.backoff, failing: state.failing)
            lastFailureMessage = state.message
        }
        lastUsed = loop.now
        refreshLifetime()
    }

    static func makeSelector(_ e: DatabaseEntry, _ s: Settings) -> HostSelector {
        HostSelector(hosts: e.hosts, loadBalance: e.loadBalanceHosts, target: e.targetSessionAttrs ?? s.targetSessionAttrs)
    }

    /// After RELOAD changed the database entry or the global target_session_attrs.
    func refreshSelector() {
        let fresh = Pool.makeSelector(database, loop.config.settings)
        if fresh.hosts != selector.hosts || fresh.loadBalance != selector.loadBalance || fresh.target != selector.target {
            selector = fresh
        }
    }

    /// The machine's limits as the configuration sets them for (database, user).
    /// A replication pool keeps no idle walsenders open (min_pool_size does not apply).
    static func limits(_ c: Config, database: String, user: String,
                       replication: ReplicationMode = .none) -> PoolStateMachine.Limits {
        PoolStateMachine.Limits(size: c.poolSize(database: database, user: user),
                                reserveSize: c.reservePoolSize(database: database, user: user),
                                minSize: replication != .none ? 0 : c.minPoolSize(database: database),
                                reserveTimeout: c.settings.reservePoolTimeout,
                                roundRobin: c.settings.serverRoundRobin)
    }

    var startupParameters: [(String, String)] {
        var p: [(String, String)] = [("database", database.dbname), ("user", serverUser)]
        if let v = database.clientEncoding { p.append(("client_encoding", v)) }
        if let v = database.datestyle { p.append(("DateStyle", v)) }
        if let v = database.timezone { p.append(("TimeZone", v)) }
        if let v = database.applicationName { p.append(("application_name", v)) }
        guard replication != .none else { return p }
        // The server is opened for the first client waiting: its parameters go with it.
        return replication.serverStartup(base: p, clientParameters: machine.firstWaiter?.client.params ?? [:],
                                         options: replicationOptions)
    }

    /// `tlsEndPoint`: channel-binding data of the server connection's TLS session, if any.
    func makeServerAuthenticator(tlsEndPoint: [UInt8]?) -> ServerAuthenticator {
        ServerAuthenticator(user: serverUser, password: serverPassword, passThroughKeys: scramPassThrough,
                            keyCache: loop.scramCache, tlsEndPoint: tlsEndPoint,
                            channelBinding: loop.config.settings.serverChannelBinding)
    }

    // MARK: lending servers

    /// A logged-in client has a request: lend it an idle server or queue it.
    func enqueue(_ client: ClientConnection) {
        defer { balance() }
        while true {
            switch machine.clientRequests(client.member, since: client.stateSince, vet: { self.vetForClient($0) }) {
            case .lend(let server):
                server.withServer { link(client, $0) }
            case .healthCheck(let member):
                // Idle too long: test it first; the check's release hands it to this client.
                let server = member.server
                server.runOwnQuery(healthCheckQuery(for: server) ?? "", kind: .healthCheck)
            case .closeStale(let server):
                closeStale(server.server)
                continue
            case .queuedWhilePaused:
                break
            case .queued:
                launchIfNeeded()
            case .refuse:
                client.sendError("server shutting down")
            case .fastFail:
                fastFail(client)
            }
            return
        }
    }

    /// An idle server about to go to a client: closed when stale, tested when idle too long.
    private func vetForClient(_ member: PoolMember) -> PoolStateMachine.IdleVerdict {
        member.withServer { server in
            if staleReason(server) != nil { return .stale }
            return healthCheckQuery(for: server) == nil ? .ready : .needsCheck
        }
    }

    /// An idle server about to run an auth_query or go to a client after RESUME: only closed
    /// when stale (neither runs the health check).
    private func vetStaleOnly(_ member: PoolMember) -> PoolStateMachine.IdleVerdict {
        staleReason(member.server) == nil ? .ready : .stale
    }

    /// Why a server may not be reused, nil when it may: RELOAD or RECONNECT marked it, or it
    /// outlived server_lifetime.
    private func staleReason(_ server: ServerConnection) -> String? {
        if server.closeNeeded { return server.closeReason }
        if loop.now - server.connectTime > effectiveLifetime { return "server lifetime over" }
        return nil
    }

    /// Closes a server the machine took out of the idle list because it may not be reused.
    private func closeStale(_ server: ServerConnection) {
        server.close(reason: staleReason(server) ?? "server lifetime over", notifyClient: false)
    }

    /// server_check_query for a server idle longer than server_check_delay (`<empty>` sends an
    /// empty query; an empty setting disables the check).
    private func healthCheckQuery(for server: ServerConnection) -> String? {
        let s = loop.config.settings
        guard replication == .none, !s.serverCheckQuery.isEmpty, loop.now - server.lastUsed >= s.serverCheckDelay else { return nil }
        return s.serverCheckQuery == "<empty>" ? "" : s.serverCheckQuery
    }

    /// server_lifetime for this pool (infinity when 0), kept current by init and reload so the
    /// release path reads one Double.
    var effectiveLifetime: Double = .infinity

    func refreshLifetime() {
        let l = database.serverLifetime ?? loop.config.settings.serverLifetime
        effectiveLifetime = l > 0 ? l : .infinity
    }

    /// Links a client to a server (the machine has counted it lent), syncing tracked parameters
    /// first when they differ.
    func link(_ client: ClientConnection, _ server: ServerConnection) {
        server.state = .active
        server.client = client
        server.lastUsed = loop.now
        client.server = server
        client.state = .active
        Stats.assigned(pool: self, waited: client.stateSince > 0 ? loop.now - client.stateSince : 0)
        client.stateSince = loop.now
        lastUsed = client.stateSince
        // Client parameter sets are interned, so the common case is one storage comparison. A
        // walsender got them in its startup packet (a physical one would refuse a SET).
        let settings = client.sessionBox?.settings ?? [:]
        if replication == .none && (server.paramsInSync != client.params || server.sessionSettings != settings) {
            var sets = ""
            for (key, value) in client.params where server.params[key]?.value != value {
                let name = server.params[key]?.name ?? key
                sets += "SET \(name)=\(quoteLiteral(value));"
            }
            // SET/RESET of parameters PostgreSQL does not report follow the client too.
            sets += SessionCommand.sync(from: server.sessionSettings, to: settings)
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

    /// A server is done with its client (or its reset, or its login): lend it to the next waiter
    /// or keep it.
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
                    notificationsIfAny?.clientReleased(client)
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
        let stale = staleReason(server)
        // Several loops: clients of another loop that have waited longer get it.
        if stale == nil, isShared, let target = fairerLoop(for: server) {
            sendReleased(server, to: target)
            balance()
            return
        }
        // A server fresh from its login (state idle) was not counted as lent.
        let action = server.state == .idle
            ? machine.loggedInServerReady(server.member, stale: stale != nil)
            : machine.serverReleased(server.member, stale: stale != nil)
        server.state = .idle
        server.releaseBufferIfEmpty()
        server.lastUsed = loop.now
        switch action {
        case .close:
            server.close(reason: stale ?? "server lifetime over", notifyClient: false)
            launchIfNeeded()
        case .serveLookup:
            let lookup = authLookups.removeFirst()
            server.runAuthQuery(lookup.sql, user: lookup.user, answer: lookup.answer)
        case .lend(let next):
            next.withClient { link($0, server) }
        case .keepIdle:
            server.startReading()  // notice a server that closes while idle
        }
        balance()
    }

    /// A logged-in client of this pool is gone (`previous`: its state before closing).
    func clientLeft(_ client: ClientConnection, previous: ClientConnection.State) {
        let queue: PoolStateMachine.Queue
        switch previous {
        case .waiting: queue = .server
        case .waitingForWelcome: queue = .welcome
        default: queue = .none
        }
        machine.clientLeft(client.member, from: queue)
        notificationsIfAny?.clientLeft(client)
        if queue == .server { balance() }
    }

    /// After the pool size went down (SET, RELOAD): idle servers beyond size + reserve are closed.
    func closeExcessIdle() {
        for member in machine.excessIdle(total: totalServers) {
            member.server.close(reason: "too many servers in the pool", notifyClient: false)
        }
    }

    /// This pool's servers on every loop.
    var totalServers: Int { serverTotalRef?._withUnsafeGuaranteedRef { $0.current } ?? machine.serverCount }

    /// Looks up a user's secret with auth_query on a server of this pool.
    func lookupSecret(user: String, sql: String, answer: @escaping (AuthQueryAnswer) -> Void) {
        while true {
            switch machine.lookupRequested(vet: { self.vetStaleOnly($0) }) {
            case .serve(let server):
                server.server.runAuthQuery(sql, user: user, answer: answer)
            case .closeStale(let server):
                closeStale(server.server)
                continue
            case .queued:
                authLookups.append((user, sql, answer))
                launchIfNeeded()
            }
            return
        }
    }

    /// After RESUME: lend idle servers to the queue, open more if needed.
    func serveWaiting() {
        resuming: while true {
            switch machine.resumeNext(vet: { self.vetStaleOnly($0) }) {
            case .lend(let server, let client): link(client.client, server.server)
            case .closeStale(let server): closeStale(server.server)
            case .done: break resuming
            }
        }
        launchIfNeeded()
    }

    /// RECONNECT: idle servers marked close_needed go now; busy ones when released.
    func closeIdleMarked() {
        for member in machine.idle where member.server.closeNeeded {
            member.server.close(reason: member.server.closeReason, notifyClient: false)
        }
    }

    /// When a stale plan last made every server of this pool be replaced.
    private var lastStalePlanRefresh = -Double.infinity
    static let stalePlanRefreshInterval = 5.0

    /// ServerConnection.stalePlanReported: every server of the pool is replaced (idle ones now,
    /// lent ones when released), at most once per `stalePlanRefreshInterval`.
    func replaceServersAfterStalePlan(reportedBy reporter: ServerConnection) {
        guard loop.now - lastStalePlanRefresh >= Self.stalePlanRefreshInterval else { return }
        lastStalePlanRefresh = loop.now
        loop.log.log("\(reporter.logPrefix) cached plan must not change result type: replacing the servers of \(databaseName)/\(userName)")
        for s in loop.servers.values where s.pool === self && !s.closeNeeded {
            s.closeReason = ServerConnection.stalePlanReason
            s.closeNeeded = true
        }
        closeIdleMarked()
    }

    // MARK: opening servers

    /// Opens servers while clients wait and the limits allow.
    func launchIfNeeded() {
        var toOpen = machine.serversWanted
        while toOpen > 0 && canOpen() {
            if !launchReserved() { break }
            toOpen -= 1
        }
    }

    /// Keeps `min_pool_size` servers open (called by the maintenance timer), as PgBouncer's janitor.
    func topUp() {
        while machine.wantsMinimumServer(forcedUser: database.user != nil, total: totalServers)
                && canOpen(evictIfNeeded: false) {
            if !launchReserved() { break }
        }
        launchIfNeeded()
        balance()
    }

    /// Whether a server may be opened now, and if so counted in the group's budget (the caller
    /// opens it with `launchReserved`). Within the pool's limits across all loops, then
    /// max_db_connections / max_user_connections; with `evictIfNeeded` (a client waits) idle
    /// servers of other pools may be closed to make room (not for min_pool_size, as PgBouncer).
    func canOpen(evictIfNeeded: Bool = true) -> Bool {
        reserve(inPool: true, evictIfNeeded: evictIfNeeded)
    }

    /// The place of a LISTEN/NOTIFY listener: outside the pool's size, within
    /// max_db_connections / max_user_connections (an idle server may be closed to make room).
    func reserveListenerPlace() -> Bool {
        reserve(inPool: false, evictIfNeeded: true)
    }

    private func reserve(inPool: Bool, evictIfNeeded: Bool) -> Bool {
        // The pool's total is at least this loop's count, and with several loops the budget's
        // lock-free count (`PoolServerTotal`): a `.no` here is a `.no` (the common case of a
        // full pool under load), without the lock or the configuration's limits.
        if inPool && machine.openDecision(now: loop.now, total: max(machine.serverCount, totalServers)) == .no { return false }
        let s = loop.config.settings
        let db = database.dbname, user = serverUser
        let maxDb = database.maxDbConnections ?? s.maxDbConnections
        let maxUser = loop.config.users[userName]?.maxUserConnections ?? s.maxUserConnections
        let now = loop.now
        while true {
            var decision = PoolStateMachine.OpenDecision.yes
            let verdict = loop.group.budget.reserve(pool: inPool ? key : nil, database: db, user: user, maxDatabase: maxDb,
                                                    maxUser: maxUser, evictIfNeeded: evictIfNeeded) { total in
                guard inPool else { return true }
                decision = machine.openDecision(now: now, total: total)
                return decision != .no
            }
            switch verdict {
            case .allow:
                if case .fromReserve(let first) = decision {
                    loop.log.log("\(first.client.logPrefix) taking connection from reserve_pool")
                }
                return true
            case .deny:
                return false
            case .evict(.database):
                if !loop.evictIdleServer(where: { $0.database.dbname == db }) { return false }
            case .evict(.user):
                if !loop.evictIdleServer(where: { $0.serverUser == user }) { return false }
            }
        }
    }

    /// Opens the server `canOpen` counted; gives its place back when none could be started.
    private func launchReserved() -> Bool {
        if launch() { return true }
        loop.group.budget.released(pool: key, database: database.dbname, user: serverUser)
        return false
    }

    /// Starts a connect to the host the selector picks (the only host, without a list). With a
    /// list, a host that cannot be resolved or connected at once is backed off and the next one
    /// tried; false when no connect could be started. A host name not in the DNS cache opens a
    /// server in state resolving, counted as connecting, which connects when `Resolver` answers.
    @discardableResult
    func launch() -> Bool { launch(listenerFor: nil) != nil }

    /// Opens the listener connection of `hub`: a server like the others, outside the pool's
    /// counts (see `NotificationHub`); nil when no connect could be started.
    /// The place was taken with `reserveListenerPlace`, and is given back when no connect starts.
    func launchListener(for hub: NotificationHub) -> ServerConnection? {
        let server = launch(listenerFor: hub)
        if server == nil { loop.group.budget.released(pool: nil, database: database.dbname, user: serverUser) }
        return server
    }

    private func launch(listenerFor hub: NotificationHub?) -> ServerConnection? {
        for _ in selector.hosts.indices {
            let host: ServerHost
            if selector.followsHosts {
                guard let picked = selector.pick(loop.hostHealth, now: loop.now) else {
                    noteHostsUnavailable()
                    return nil
                }
                host = picked
            } else {
                host = selector.hosts[0]
            }
            var address: Socket.Address
            let fd: Int32
            do {
                if let direct = try loop.directAddress(for: host) { address = direct } else {
                    switch loop.resolver.lookup(host.name) {
                    case .address(let text):
                        guard let a = Socket.Address.numeric(text, port: host.port) else { throw SocketError("bad address \(text)", 0) }
                        address = a
                    case .failed(let why):
                        throw SocketError("could not resolve host \(host.name): \(why)", 0)
                    case .wait:
                        return resolving(host, listenerFor: hub)
                    case .lookUp:
                        let server = resolving(host, listenerFor: hub)
                        loop.resolver.start(host.name)
                        return server
                    }
                }
            } catch {
                loginAttemptFailed(nil, host: host, reason: "\(error)", failure: .transport)
                if selector.followsHosts { continue }
                return nil
            }
            do { fd = try Socket.connect(address) } catch {
                loginAttemptFailed(nil, host: host, reason: "connect failed: \(error)", failure: .transport)
                if selector.followsHosts { continue }
                return nil
            }
            let server = ServerConnection(loop: loop, pool: self, fd: fd, address: address, host: host)
            if let hub { server.notificationHub = hub } else { machine.connectStarted() }
            loop.serverOpened(server)
            server.startWriting()
            return server
        }
        return nil
    }

    /// A server that waits for the DNS lookup of `host` (see `Resolver.lookup`).
    private func resolving(_ host: ServerHost, listenerFor hub: NotificationHub?) -> ServerConnection {
        let server = ServerConnection(loop: loop, pool: self, fd: -1, address: Socket.Address(), host: host)
        server.state = .resolving
        if let hub { server.notificationHub = hub } else { machine.connectStarted() }
        loop.serverOpened(server)
        loop.resolver.wait(server, for: host.name)
        return server
    }

    private var hasServers: Bool { !machine.idle.isEmpty || machine.active > 0 }

    private func noteHostsUnavailable() {
        failoverWait.noHost(now: loop.now, poolHasServers: hasServers)
    }

    /// A server reached ReadyForQuery after its login: its role goes to `HostHealth`; false when
    /// the pool's target_session_attrs does not accept it (the server is closed, the next host
    /// tried). The check happens before connect_query, which then runs only on kept servers.
    func admitsLoggedIn(_ server: ServerConnection) -> Bool {
        let status = server.reportedStatus
        loop.hostReported(server.host, status: status, loggedIn: true)
        guard selector.followsHosts,
              !selector.accepts(status, from: server.host, loop.hostHealth, now: loop.now) else { return true }
        let why = status.map { "server is \($0.roleName), not usable for target_session_attrs=\(selector.target.rawValue)" }
            ?? "server does not report in_hot_standby (target_session_attrs needs PostgreSQL 14 or later)"
        noteHostsUnavailable()
        server.close(reason: why, notifyClient: false, loginFailure: nil)
        return false
    }

    /// A server's default_transaction_read_only changed (a client's SET, or ALTER SYSTEM and a
    /// reload): when this pool's target no longer accepts the server, it is closed once released,
    /// so that no later client of a read-write pool lands on a read-only session. Only this
    /// server: the host's standing for other pools does not depend on one session.
    func sessionReadOnlyChanged(_ server: ServerConnection) {
        let target = selector.target
        guard selector.followsHosts, target != .any, target != .preferStandby, !server.closeNeeded,
              let status = server.reportedStatus, !target.accepts(status) else { return }
        server.closeReason = "server session is \(status.isReadOnly ? "read-only" : "read-write") (target_session_attrs=\(target.rawValue))"
        server.closeNeeded = true
    }

    /// failover_timeout: the error for a client that has waited since `since` while no host of
    /// this pool can be used and no server of it is left; nil while it may keep waiting.
    func failoverExpired(waitingSince since: Double, now: Double) -> String? {
        guard selector.followsHosts,
              failoverWait.expired(waitingSince: since, now: now, timeout: loop.config.settings.failoverTimeout,
                                   poolHasServers: hasServers) else { return nil }
        return "no server for database \"\(databaseName)\" user \"\(userName)\" within failover_timeout: "
            + selector.unavailableReason(loop.hostHealth, now: now)
    }

    /// check_fast_fail's other half: a client turned away still triggers an attempt (when the
    /// retry delay allows), or no attempt would ever be made once every waiter has been refused.
    func probe() {
        if canOpen() { _ = launchReserved() }
    }

    func serverLoggedIn(_ server: ServerConnection) {
        failoverWait.serverLoggedIn()
        let wasFailing = machine.loginFailing || machine.backoff.consecutiveFailures > 0
        let greeted = machine.loginSucceeded()
        if wasFailing { shareLoginState(rejection: nil) }
        if welcome == nil {
            welcome = server.reportedOrder.compactMap { k in server.params[k].map { ($0.name, $0.value) } }
            share?.welcome = welcome
        }
        for member in greeted { member.client.sendWelcome(serverParameters: welcome ?? []) }
        server.state = .idle
        release(server)
    }

    // MARK: login failures

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
    ///
    /// A pool following hosts (`HostSelector.followsHosts`) backs off the host instead, for
    /// transport failures and 57P03, and keeps its clients waiting for another host (see
    /// failover_timeout): refusals of the login itself still go through the pool.
    func loginAttemptFailed(_ server: ServerConnection?, host: ServerHost? = nil, reason: String,
                            failure: ServerConnection.LoginFailure, clientMessage: String? = nil) {
        let now = loop.now
        let prefix = server?.logPrefix ?? "\(databaseName)/\(userName)"
        if selector.followsHosts, let host = server?.host ?? host {
            var hostFailure = true, severity: String?
            if case .rejected(let code, let s) = failure {
                hostFailure = code == SQLState.cannotConnectNow
                severity = s
            }
            if hostFailure {
                if let severity {
                    loop.log.warning("server login failed: \(severity) \(reason)")  // PgBouncer's exact line
                } else {
                    loop.log.warning("\(prefix) server login failed: \(reason)")
                }
                loop.hostHealth.failed(host, at: now, attemptStarted: server?.connectTime ?? now, reason: reason,
                                       retryLimit: loop.config.settings.serverLoginRetry)
                lastFailureMessage = reason
                noteHostsUnavailable()
                return
            }
        }
        let kind: PoolStateMachine.LoginFailure
        switch failure {
        case .transport:
            loop.log.warning("\(prefix) server login failed: \(reason)")
            kind = .transport
        case .rejected(let code, let severity):
            if let severity {
                loop.log.warning("server login failed: \(severity) \(reason)")  // PgBouncer's exact line
            } else {
                loop.log.warning("\(prefix) server login failed: \(reason)")
            }
            kind = code == SQLState.cannotConnectNow ? .startingUp : .rejected
        }
        let killed = machine.loginFailed(kind, now: now, attemptStarted: server?.connectTime ?? now,
                                         retryBase: loop.config.settings.serverLoginRetry)
        if kind != .startingUp { lastFailureMessage = reason }
        var rejection: (message: String, code: String)?
        if case .rejected(let code, _) = failure, kind == .rejected { rejection = (clientMessage ?? reason, code) }
        shareLoginState(rejection: rejection)
        guard kind != .startingUp else { return }
        if machine.backoff.isBackingOff {
            loop.log.log("\(prefix) \(machine.backoff.consecutiveFailures) consecutive server login failures, next attempt in \(formatSeconds(machine.backoff.delay))")
        }
        guard let killed, case .rejected(let code, _) = failure else { return }
        let lookups = authLookups
        authLookups.removeAll()
        // Clients waiting for an auth_query of this pool get the server's refusal too (an
        // auth_dbname served by `*` that PostgreSQL does not have: its own error).
        for l in lookups { l.answer(.serverError(message: reason, code: code)) }
        for member in killed.clients { member.client.sendError(clientMessage ?? reason, code: code) }
    }

    /// Login health is the pool's, not the loop's: what a failure or success left here is copied
    /// to the pool on every other loop (and kept for pools made later), and a refused login fails
    /// the clients waiting there too.
    private func shareLoginState(rejection: (message: String, code: String)?) {
        guard let share else { return }
        let state = PoolLoginState(backoff: machine.backoff, failing: machine.loginFailing, message: lastFailureMessage)
        share.loginState = state
        let key = self.key
        for other in 0..<loop.group.count where other != loop.index {
            loop.group.post(to: other) { $0.pools[key]?.adoptLoginState(state, rejection: rejection) }
        }
    }

    /// `shareLoginState` of another loop.
    func adoptLoginState(_ state: PoolLoginState, rejection: (message: String, code: String)?) {
        machine.adoptLoginState(backoff: state.backoff, failing: state.failing)
        lastFailureMessage = state.message
        guard let rejection, let killed = machine.failWaitersAfterRejection() else { return }
        let lookups = authLookups
        authLookups.removeAll()
        for l in lookups { l.answer(.serverError(message: rejection.message, code: rejection.code)) }
        for member in killed.clients { member.client.sendError(rejection.message, code: rejection.code) }
        balance()
    }

    private func formatSeconds(_ s: Double) -> String {
        s == s.rounded() ? "\(Int(s)) s" : "\((s * 1000).rounded() / 1000) s"
    }

    func serverClosed(_ server: ServerConnection, previousState: ServerConnection.State) {
        let slot: PoolStateMachine.Slot
        switch previousState {
        case .resolving, .connecting, .tlsRequest, .tlsHandshake, .loggingIn: slot = .connecting
        case .active, .ownQuery, .beingCanceled: slot = .active
        case .idle: slot = .idle
        case .closed, .listening: slot = .uncounted
        }
        let clientsWait = machine.serverClosed(server.member, from: slot)
        loop.serverClosed(server)
        if clientsWait { launchIfNeeded() }
        balance()
    }
}
