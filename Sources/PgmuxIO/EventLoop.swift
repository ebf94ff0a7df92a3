import Glibc
import CLibEV
import PgmuxCore

/// Everything one event loop owns: its libev loop, configuration, pools, connections, timers and
/// counters. There are no globals, so several loops (one per core) can run side by side.
public final class EventLoop {
    let ev: OpaquePointer
    public internal(set) var config: Config
    var authFile: [String: String] = [:]
    public let log: Log
    let buffers: BufferPool
    lazy var login = LoginHandler(loop: self)
    lazy var admin = AdminConsole(loop: self)
    var maxPacketSize: Int
    /// disable_pqexec: a simple Query closes the client (read once per relay walk).
    var refusesSimpleQuery: Bool
    var trackedParameters: Set<String>

    var pools: [String: Pool] = [:]
    var clients: [UInt64: ClientConnection] = [:]
    var servers: [UInt64: ServerConnection] = [:]
    /// Cancel requests on their way to PostgreSQL (each holds its own short-lived connection).
    var cancelForwarders: [UInt64: CancelForwarder] = [:]
    var listeners: [Listener] = []
    var metrics: MetricsEndpoint?
    /// Closed connections, freed after the current loop iteration (never inside their callbacks).
    private var graveyard: [Endpoint] = []
    private var idCounter: UInt64 = 0
    var dbServerCounts: [String: Int] = [:]
    var userServerCounts: [String: Int] = [:]
    var shuttingDown = false
    /// SHUTDOWN WAIT_FOR_CLIENTS: exit when the last client leaves, not when servers are released.
    var shutdownWaitsForClients = false
    /// PAUSE without an argument, and per-database PAUSE.
    var globallyPaused = false
    var pausedDatabases: Set<String> = []
    /// SUSPEND: no socket is read (outgoing buffers still drain) and nothing is accepted.
    var suspended = false
    /// DISABLE db: new logins to it are refused.
    var disabledDatabases: Set<String> = []
    /// Start of the current stats_period (averages in SHOW STATS and the `stats:` line).
    var statsPeriodStart: Double = 0
    /// Clients past a valid startup packet, checked against max_client_conn.
    var loggedInClients = 0
    /// PBKDF2 results, so no login repeats the 4096-round derivation.
    let scramCache = SCRAMKeyCache()
    /// SCRAM nonces and cancel keys, drawn from OpenSSL in blocks.
    var random = RandomPool()
    /// Runs the derivations the cache misses on a worker thread (its thread starts on first use).
    lazy var crypto = CryptoWorker(ev: ev)
    /// TLS toward clients and toward PostgreSQL.
    let tls = TLSContexts()
    /// auth_query answers per user, reused for `authQueryCacheSeconds`.
    var authQueryCache: [String: (secret: String?, time: Double)] = [:]
    let authQueryCacheSeconds = 30.0
    /// Shared parameter dictionaries (see `interned`).
    private var parameterSets: Set<[String: String]> = []
    /// Pooler-wide names of protocol-level prepared statements.
    let preparedStatements = PreparedStatementRegistry()

    /// Last `returnIdleMemory` pass, and whether clients came or went since (their login state
    /// and buffers leave freed holes in the heap that only malloc_trim gives back).
    private var lastMemoryTrim: Double = 0
    var heapChurned = false

    private let check = UnsafeMutablePointer<ev_check>.allocate(capacity: 1)
    private let maintenance = UnsafeMutablePointer<ev_timer>.allocate(capacity: 1)
    private var signals: [UnsafeMutablePointer<ev_signal>] = []
    /// Every connection's watchers. Declared last, so it outlives the other properties while the
    /// loop is destroyed (connections give their watchers back when freed; see `deinit`).
    let watchers = WatcherSlab()

    public init(config: Config, log: Log) throws {
        guard let ev = ev_loop_new(UInt32(EVFLAG_AUTO)) else { throw SocketError("ev_loop_new", 0) }
        self.ev = ev
        self.config = config
        self.log = log
        buffers = BufferPool(size: max(config.settings.pktBuf, 16384))
        maxPacketSize = config.settings.maxPacketSize
        refusesSimpleQuery = config.settings.disablePqexec
        trackedParameters = ParameterTracking.trackedSet(extra: config.settings.trackExtraParameters)
        check.initialize(to: ev_check())
        now = ev_now(ev)
        maintenance.initialize(to: ev_timer())
        try loadAuthFile()
        try tls.load(config.settings)
    }

    /// libev's time of the current iteration (`ev_now`), copied in when the iteration's callbacks
    /// begin. A stored field: the relay reads the clock several times per transaction, and each
    /// call into libev through the loop reference cost a retain/release pair around it.
    private(set) var now: Double = 0

    func nextID() -> UInt64 { idCounter &+= 1; return idCounter }

    /// auth_hba_file rules, when auth_type = hba.
    var hba: HBAFile?
    /// auth_ident_file maps (for the hba rules' `map=`), when auth_type = hba and the file is set.
    var identMaps: IdentFile?

    func loadAuthFile() throws {
        (authFile, hba, identMaps) = try EventLoop.readAuthFiles(config.settings)
    }

    /// auth_file, auth_hba_file and auth_ident_file as `settings` name them; read before anything
    /// is replaced, so a broken file leaves the running ones in place. As PgBouncer, the ident file
    /// is read only with auth_type = hba, before the hba file whose `map=` options must name its
    /// maps (regular expressions are compiled here, not at login).
    static func readAuthFiles(_ s: Settings) throws -> ([String: String], HBAFile?, IdentFile?) {
        let users = try s.authFile.flatMap { $0.isEmpty ? nil : try AuthFile.load(path: $0) } ?? [:]
        guard s.authType == .hba else { return (users, nil, nil) }
        let ident = try s.authIdentFile.flatMap { $0.isEmpty ? nil : try IdentFile.load(path: $0) }
        let rules = try HBAFile.load(path: s.authHbaFile)
        try rules.checkIdentMaps(ident)
        return (users, rules, ident)
    }

    /// Returns an equal dictionary whose storage other clients already share: thousands of
    /// clients with the same settings then cost one copy, not thousands.
    func interned(_ params: [String: String]) -> [String: String] {
        let (inserted, member) = parameterSets.insert(params)
        return inserted ? params : member
    }

    func isTracked(_ name: String) -> Bool { trackedParameters.contains(name.lowercased()) }

    // MARK: lifecycle

    /// Opens the listeners, installs timers and signal handlers, and runs until shutdown.
    public func run() throws {
        let me = Unmanaged.passUnretained(self).toOpaque()
        // Signal watchers first: a SIGHUP sent as soon as "listening on" is logged must reach a
        // handler, not the default action that ends the process.
        for sig in [SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGUSR1, SIGUSR2] {
            let w = UnsafeMutablePointer<ev_signal>.allocate(capacity: 1)
            w.initialize(to: ev_signal())
            pgmux_ev_signal_init(w, loopSignal, sig, me)
            ev_signal_start(ev, w)
            signals.append(w)
        }
        try openListeners()
        pgmux_ev_check_init(check, loopCheck, me)
        pgmux_ev_set_max_priority(check)  // runs before every other callback of an iteration
        ev_check_start(ev, check)
        now = ev_now(ev)
        pgmux_ev_timer_init(maintenance, loopMaintenance, 1.0 / 3.0, 1.0 / 3.0, me)
        ev_timer_start(ev, maintenance)
        ev_run(ev, 0)
        for l in listeners { l.close() }
    }

    func openListeners() throws {
        let s = config.settings
        for addr in s.listenAddr where !addr.isEmpty {
            let host = addr == "*" ? "" : addr
            var addresses = try Socket.Address.resolve(host: host, port: s.listenPort, passive: true)
            if addr == "*" { addresses.sort { $0.family == AF_INET && $1.family != AF_INET } }
            for a in addresses {
                let fd = try Socket.listen(a, backlog: Int32(s.listenBacklog), reusePort: s.soReuseport,
                                           deferAccept: s.tcpDeferAccept)
                listeners.append(Listener(loop: self, fd: fd, description: a.description))
                log.log("listening on \(a.description)")
            }
        }
        if !s.unixSocketDir.isEmpty {
            let path = "\(s.unixSocketDir)/.s.PGSQL.\(s.listenPort)"
            guard let a = Socket.Address.unix(path: path) else { throw SocketError("unix socket path too long: \(path)", 0) }
            // A socket file left by a dead process is removed; a live one means another pooler.
            if access(path, F_OK) == 0 {
                if let probe = try? Socket.connect(a) {
                    var pfd = pollfd(fd: probe, events: Int16(POLLOUT), revents: 0)
                    _ = poll(&pfd, 1, 200)
                    let alive = Socket.pendingError(probe) == 0 && pfd.revents & Int16(POLLOUT) != 0
                    Glibc.close(probe)
                    if alive { throw SocketError("unix socket \(path) is in use by another process", 0) }
                }
                unlink(path)
            }
            let fd = try Socket.listen(a, backlog: Int32(s.listenBacklog), reusePort: false)
            chmod(path, mode_t(s.unixSocketMode))
            if !s.unixSocketGroup.isEmpty {
                guard let group = getgrnam(s.unixSocketGroup) else {
                    throw SocketError("unix_socket_group: no such group: \(s.unixSocketGroup)", 0)
                }
                chown(path, uid_t.max, group.pointee.gr_gid)
            }
            listeners.append(Listener(loop: self, fd: fd, description: "unix:\(path)", unixPath: path))
            log.log("listening on unix:\(path)")
        }
        if s.metricsPort > 0 {
            guard let a = try Socket.Address.resolve(host: s.metricsAddr, port: s.metricsPort, passive: true).first else {
                throw SocketError("cannot resolve metrics_addr \(s.metricsAddr)", 0)
            }
            metrics = try MetricsEndpoint(loop: self, address: a)
            log.log("metrics on http://\(a.description)/metrics")
        }
        guard !listeners.isEmpty else { throw SocketError("nothing to listen on (listen_addr and unix_socket_dir are empty)", 0) }
    }

    func stop() { ev_break(ev, Int32(EVBREAK_ALL)) }

    // MARK: connection registry

    func bury(_ e: Endpoint) { graveyard.append(e) }

    /// Connections give their watchers back to `watchers` when freed: free them all while the
    /// loop is still whole.
    deinit {
        graveyard.removeAll()
        clients.removeAll()
        servers.removeAll()
        pools.removeAll()
        cancelForwarders.removeAll()
        metrics = nil
    }

    /// First callback of every iteration (the check watcher has the highest priority): takes the
    /// iteration's time, frees what the previous iteration closed, runs pending console waits.
    fileprivate func sweep() {
        now = ev_now(ev)
        if !graveyard.isEmpty { graveyard.removeAll(keepingCapacity: true) }
        admin.check()
        guard shuttingDown else { return }
        if shutdownWaitsForClients {
            if !clients.values.contains(where: { $0.adminRole == nil }) {
                log.log("client connections dropped, exiting")
                stop()
            }
        } else if servers.values.allSatisfy({ $0.state != .active }) && clientsInTransaction == 0 {
            log.log("server connections dropped, exiting")
            stop()
        }
    }

    // MARK: pause, kill

    @inline(__always)
    func isPaused(_ db: String?) -> Bool {
        if globallyPaused { return true }
        guard let db, !pausedDatabases.isEmpty else { return false }
        return pausedDatabases.contains(db)
    }

    /// PAUSE: no server is lent any more; running transactions finish and give theirs back.
    func pause(_ db: String?) {
        if let db { pausedDatabases.insert(db) } else { globallyPaused = true }
    }

    func pausedAndDrained(_ db: String?) -> Bool {
        !servers.values.contains { s in
            (db == nil || s.pool.databaseName == db) && s.client != nil
        }
    }

    /// RESUME: waiting clients get servers again.
    func resume(_ db: String?) {
        if let db { pausedDatabases.remove(db) } else { globallyPaused = false; pausedDatabases.removeAll() }
        for p in pools.values where !isPaused(p.databaseName) { p.serveWaiting() }
    }

    /// SUSPEND: stop reading every socket but the issuing console's, and stop accepting.
    func suspend(except console: ClientConnection) {
        suspended = true
        console.exemptFromSuspend = true
        for c in clients.values where c !== console { c.stopReading() }
        for s in servers.values { s.stopReading() }
        for l in listeners { l.pause() }
    }

    /// True when no connection has bytes waiting to be written.
    func buffersFlushed() -> Bool {
        !clients.values.contains { !$0.ownOut.isEmpty || $0.inbuf.scanned > $0.inbuf.start }
            && !servers.values.contains { !$0.ownOut.isEmpty || $0.inbuf.scanned > $0.inbuf.start }
    }

    /// RESUME after SUSPEND: every connection that was readable is read again.
    func resumeFromSuspend() {
        suspended = false
        for c in clients.values {
            c.exemptFromSuspend = false
            switch c.state {
            case .waiting, .waitingForWelcome, .closing: break
            default: c.startReading()
            }
        }
        for s in servers.values where s.state != .closed && s.state != .connecting { s.startReading() }
        for l in listeners { l.resume() }
    }

    /// KILL: drop every client and server of a database (or of all).
    func kill(database db: String?) {
        for c in clients.values where c.adminRole == nil && (db == nil || c.pool?.databaseName == db) {
            c.sendError("database removed")
        }
        for s in servers.values where db == nil || s.pool.databaseName == db {
            s.close(reason: "database removed", notifyClient: true, loginFailure: nil)
        }
    }


    var clientsInTransaction: Int { clients.values.reduce(0) { $0 + ($1.server != nil ? 1 : 0) } }

    func clientAccepted(_ c: ClientConnection) { clients[c.id] = c }
    func clientClosed(_ c: ClientConnection) {
        bury(c)  // keeps it alive until the iteration ends: callers still run on it
        clients[c.id] = nil
        heapChurned = true
    }
    func serverOpened(_ s: ServerConnection) {
        servers[s.id] = s
        dbServerCounts[s.pool.database.dbname, default: 0] += 1
        userServerCounts[s.pool.serverUser, default: 0] += 1
    }
    func serverClosed(_ s: ServerConnection) {
        bury(s)
        servers[s.id] = nil
        dbServerCounts[s.pool.database.dbname, default: 1] -= 1
        userServerCounts[s.pool.serverUser, default: 1] -= 1
    }

    /// max_db_connections / max_user_connections across all pools. When one is reached and
    /// `evictIfNeeded` (a client is waiting), the least recently used idle server of another pool
    /// under the same limit is closed to make room, as PgBouncer's evict_connection and
    /// evict_user_connection do: otherwise idle servers of one user could starve another user's
    /// clients of the same database forever.
    func limitsAllow(_ pool: Pool, evictIfNeeded: Bool) -> Bool {
        let db = pool.database.dbname, user = pool.serverUser
        let maxDb = pool.database.maxDbConnections ?? config.settings.maxDbConnections
        if maxDb > 0 {
            while evictIfNeeded && dbServerCounts[db, default: 0] >= maxDb && evictIdleServer(where: { $0.database.dbname == db }) {}
            if dbServerCounts[db, default: 0] >= maxDb { return false }
        }
        let maxUser = config.users[pool.userName]?.maxUserConnections ?? config.settings.maxUserConnections
        if maxUser > 0 {
            while evictIfNeeded && userServerCounts[user, default: 0] >= maxUser && evictIdleServer(where: { $0.serverUser == user }) {}
            if userServerCounts[user, default: 0] >= maxUser { return false }
        }
        return true
    }

    /// Closes the idle server unused longest among the pools `matching`; false when there is none.
    private func evictIdleServer(where matching: (Pool) -> Bool) -> Bool {
        var oldest: ServerConnection?
        for p in pools.values where matching(p) {
            // Idle lists are used from the end, so each one's first server is its least recent.
            if let s = p.idle.first, s.lastUsed < (oldest?.lastUsed ?? .infinity) { oldest = s }
        }
        guard let oldest else { return false }
        oldest.close(reason: "evicted", notifyClient: false)
        return true
    }

    /// Random 63-bit cancel key for a client (the pid half is positive). No index is kept:
    /// cancels are rare and a scan of the clients costs less than a table entry per idle client.
    func newCancelKey() -> UInt64 {
        while true {
            let key = random.uint64() & ~(UInt64(1) << 63)
            if key != 0 { return key }
        }
    }

    /// A CancelRequest: forwarded with the real backend key if the client has a server.
    func handleCancel(key: UInt64) {
        guard let client = clients.values.first(where: { $0.cancelKey == key }) else { return }
        guard let server = client.server else {
            log.debug("\(client.logPrefix) cancel request for idle client")
            return
        }
        forwardCancel(to: server)
    }

    /// Opens a connection to the server's PostgreSQL and sends its real cancel key. Until that
    /// connection ends, the server is not lent to another client (see `cancelLanded`).
    func forwardCancel(to server: ServerConnection) {
        guard server.backendKey != 0 else { return }
        do {
            let fd = try Socket.connect(server.address)
            let forwarder = CancelForwarder(loop: self, fd: fd, key: server.backendKey, serverID: server.id)
            cancelForwarders[forwarder.id] = forwarder
            server.cancelsInFlight += 1
        } catch {
            log.warning("\(server.logPrefix) cancel request failed: \(error)")
        }
    }

    /// A cancel connection ended (PostgreSQL closed it after acting on the request, or
    /// cancel_wait_timeout gave up): a server released meanwhile may now go back to its pool.
    func cancelLanded(serverID: UInt64) {
        guard let server = servers[serverID], server.cancelsInFlight > 0 else { return }
        server.cancelsInFlight -= 1
        if server.cancelsInFlight == 0 && server.state == .beingCanceled { server.pool.release(server) }
    }

    // MARK: pools

    /// The pool for (database, user), created on first use.
    func pool(database name: String, entry: DatabaseEntry, user: String) -> Pool {
        let serverUser = entry.user ?? user
        let key = "\(name)\u{0}\(serverUser)"
        if let p = pools[key] { return p }
        var password = entry.password
        if password == nil, let secret = authFile[serverUser] {
            password = secret  // plain, md5 (for md5 servers) or a SCRAM verifier (with a client's SCRAM keys)
        }
        let p = Pool(loop: self, databaseName: name, database: entry, userName: serverUser,
                     serverUser: serverUser, serverPassword: password)
        pools[key] = p
        return p
    }

    /// Where a database's servers live: a TCP host, or the Unix socket of `host` (a directory) or
    /// of unix_socket_dir when no host is given.
    func serverAddress(for db: DatabaseEntry) -> Socket.Address? {
        let host = db.host ?? ""
        if host.isEmpty || host.hasPrefix("/") {
            let dir = host.isEmpty ? config.settings.unixSocketDir : host
            return Socket.Address.unix(path: "\(dir)/.s.PGSQL.\(db.port)")
        }
        let first = host.split(separator: ",").first.map(String.init) ?? host
        do {
            return try Socket.Address.resolve(host: first, port: db.port).first
        } catch {
            log.warning("\(db.name): \(error)")
            return nil
        }
    }

    // MARK: periodic work

    fileprivate func maintain() {
        let s = config.settings
        let t = now
        for client in clients.values {
            switch client.state {
            case .startup, .tlsHandshake, .authenticating:
                if s.clientLoginTimeout > 0 && t - client.connectTime > s.clientLoginTimeout {
                    client.sendError("client_login_timeout")
                }
            case .waitingForWelcome:
                // PgBouncer keeps these clients in the pool's waiting list (CL_WAITING_LOGIN):
                // the queue timeouts apply to them, and client_login_timeout while the pool
                // has no welcome.
                let queryTimeout = config.users[client.user]?.queryTimeout ?? s.queryTimeout
                if queryTimeout > 0 && t - client.stateSince > queryTimeout {
                    client.sendError("query_timeout")
                } else if s.queryWaitTimeout > 0 && t - client.stateSince > s.queryWaitTimeout {
                    client.sendError("query_wait_timeout")
                } else if s.clientLoginTimeout > 0 && t - client.connectTime > s.clientLoginTimeout {
                    client.sendError("client_login_timeout (server down)")
                }
            case .waiting:
                // Same order as PgBouncer's janitor: query_timeout first.
                let queryTimeout = config.users[client.user]?.queryTimeout ?? s.queryTimeout
                if queryTimeout > 0 && t - client.stateSince > queryTimeout {
                    client.sendError("query_timeout")
                } else if s.queryWaitTimeout > 0 && t - client.stateSince > s.queryWaitTimeout {
                    client.sendError("query_wait_timeout")
                } else if s.queryWaitNotify > 0 && !client.toldToWait && t - client.stateSince > s.queryWaitNotify {
                    // The client is unlinked, so a NoticeResponse cannot interleave with a reply.
                    client.toldToWait = true
                    var m = MessageBuilder()
                    m.errorResponse(severity: "NOTICE", code: "00000",
                                    message: "No server connection available in postgres backend, client being queued", notice: true)
                    client.queue(m.bytes)
                }
            case .idle:
                let idleTimeout = config.users[client.user]?.clientIdleTimeout ?? s.clientIdleTimeout
                if idleTimeout > 0 && t - max(client.lastActivity, client.connectTime) > idleTimeout {
                    client.sendError("client_idle_timeout")
                }
            case .active:
                if let server = client.server, case .active = server.state { enforceTransactionTimeouts(client, server, now: t) }
            default:
                break
            }
        }
        for server in servers.values {
            switch server.state {
            case .connecting, .tlsRequest, .tlsHandshake, .loggingIn:
                if s.serverConnectTimeout > 0 && t - server.connectTime > s.serverConnectTimeout {
                    server.close(reason: "connect timeout", notifyClient: false)
                }
            case .idle:
                let pool = server.pool
                if s.serverIdleTimeout > 0 && t - server.lastUsed > s.serverIdleTimeout && pool.serverCount > pool.minSize {
                    server.close(reason: "server idle timeout", notifyClient: false)
                } else if t - server.connectTime > pool.effectiveLifetime && pool.serverCount > pool.minSize {
                    server.close(reason: "server lifetime over", notifyClient: false)
                }
            case .active:
                // server_fast_close: a session-mode server marked by RECONNECT or RELOAD is closed
                // between transactions instead of when its client leaves (PgBouncer's janitor).
                if s.serverFastClose && server.closeNeeded && server.pool.mode == .session && server.tracker.isIdle
                    && server.scanner.passthrough == 0 && !server.releaseAfterFlush {
                    server.close(reason: "database configuration changed", notifyClient: true)
                }
            default:
                break
            }
        }
        for pool in pools.values { pool.closeExcessIdle() }
        if !suspended {
            // A forced-user database with min_pool_size gets its pool before any client logs in,
            // so that the minimum is kept from the start (PgBouncer's janitor does the same).
            for (name, entry) in config.databases where entry.user != nil && config.minPoolSize(database: name) > 0 {
                _ = pool(database: name, entry: entry, user: entry.user!)
            }
        }
        for pool in pools.values where !shuttingDown && !isPaused(pool.databaseName) { pool.topUp() }
        metrics?.expire(now: t)
        for f in cancelForwarders.values where s.cancelWaitTimeout > 0 && t - f.connectTime > s.cancelWaitTimeout {
            log.warning("cancel request not delivered within cancel_wait_timeout")
            f.finish()
        }
        dropIdleAutoDatabases(now: t)
        if t - lastMemoryTrim >= 1 { returnIdleMemory(now: t) }
        if statsPeriodStart == 0 { statsPeriodStart = t }
        if t - statsPeriodStart >= Double(max(1, s.statsPeriod)) {
            if s.logStats { log.log(Stats.logLine(pools: Array(pools.values), window: t - statsPeriodStart)) }
            for p in pools.values { p.periodCounters = p.counters }
            statsPeriodStart = t
        }
    }

    /// Once a second: relay buffers unused for that long are freed, and after clients came or
    /// went the heap's free pages are handed back to the kernel, so RSS follows the number of
    /// connections down after a burst instead of staying at its peak (PgBouncer keeps its slabs).
    private func returnIdleMemory(now t: Double) {
        lastMemoryTrim = t
        let freed = buffers.trim(floor: 8)
        if freed > 0 || heapChurned {
            heapChurned = false
            _ = malloc_trim(0)
        }
    }

    /// query_timeout, idle_transaction_timeout and transaction_timeout of a linked client. The
    /// server is closed (never reused mid-query) and the client told why.
    private func enforceTransactionTimeouts(_ client: ClientConnection, _ server: ServerConnection, now t: Double) {
        let s = config.settings
        let user = config.users[client.user]
        let queryTimeout = user?.queryTimeout ?? s.queryTimeout
        let idleTxTimeout = user?.idleTransactionTimeout ?? s.idleTransactionTimeout
        let txTimeout = user?.transactionTimeout ?? s.transactionTimeout
        let tracker = server.tracker
        if queryTimeout > 0 && !tracker.isQuiet && client.queryStart > 0 && t - client.queryStart > queryTimeout {
            forwardCancel(to: server)  // stop the backend's work, not just our side of the socket
            server.close(reason: "query timeout", notifyClient: true)
        } else if idleTxTimeout > 0 && tracker.isQuiet && tracker.status != UInt8(ascii: "I")
                    && t - server.lastReadyAt > idleTxTimeout {
            server.close(reason: "idle transaction timeout", notifyClient: true)
        } else if txTimeout > 0 && server.transactionStart > 0 && t - server.transactionStart > txTimeout {
            server.close(reason: "transaction timeout", notifyClient: true)
        }
    }

    /// autodb_idle_timeout: pools created from the `*` entry, unused that long, are freed.
    private func dropIdleAutoDatabases(now t: Double) {
        let timeout = config.settings.autodbIdleTimeout
        guard timeout > 0 else { return }
        for (key, pool) in pools where config.databases[pool.databaseName] == nil
            && pool.clientCount == 0 && pool.activeCount == 0 && pool.connectingCount == 0 && pool.authLookups.isEmpty
            && t - pool.lastUsed > timeout {
            for s in pool.idle { s.close(reason: "auto-database idle timeout", notifyClient: false) }
            if pool.serverCount == 0 {
                pools[key] = nil
                log.log("freed auto-database: \(pool.databaseName)")
            }
        }
    }

    // MARK: signals

    fileprivate func onSignal(_ sig: Int32) {
        switch sig {
        case SIGHUP:
            log.log("got SIGHUP, re-reading config")
            reload()
        case SIGINT:
            if shuttingDown { log.log("got SIGINT while shutting down, fast exit"); stop(); return }
            log.log("got SIGINT, shutting down, waiting for all servers connections to be released")
            if suspended { log.error("suspend was in progress, going down immediately"); stop(); return }
            beginShutdown(waitForClients: false)
        case SIGTERM:
            // PgBouncer 1.23+: what systemd and Kubernetes send first lets clients finish.
            if shuttingDown { log.log("got SIGTERM while shutting down, fast exit"); stop(); return }
            log.log("got SIGTERM, shutting down, waiting for all clients disconnect")
            if suspended { log.error("suspend was in progress, going down immediately"); stop(); return }
            beginShutdown(waitForClients: true)
        case SIGUSR1:
            log.log("got SIGUSR1, pausing all activity")
            pause(nil)
        case SIGUSR2:
            if shuttingDown { log.log("got SIGUSR2 while shutting down, ignoring"); return }
            log.log("got SIGUSR2, continuing from PAUSE")
            resume(nil)
        case SIGQUIT:
            log.log("got SIGQUIT, fast exit")
            stop()
        default:
            break
        }
    }

    /// Safe shutdown, as PgBouncer: the TCP listeners close; the Unix socket stays open for
    /// console logins (so a draining pooler can be watched), other logins get `pooler is shutting
    /// down`. With `waitForClients` (SIGTERM, SHUTDOWN WAIT_FOR_CLIENTS) clients go on until they
    /// disconnect; otherwise (SIGINT, WAIT_FOR_SERVERS) the pooler pauses, running transactions
    /// finish, and a client asking for a server gets `server shutting down`.
    func beginShutdown(waitForClients: Bool) {
        shuttingDown = true
        shutdownWaitsForClients = waitForClients
        for l in listeners where l.unixPath == nil { l.close() }
        listeners.removeAll { $0.unixPath == nil }
        if waitForClients { return }
        globallyPaused = true
        for c in clients.values where c.state == .waiting { c.sendError("server shutting down") }
    }

    /// Makes the current settings take effect on what already exists, after RELOAD and after a
    /// console SET (PgBouncer reads its settings where it uses them, so a SET acts at once): pool
    /// modes, sizes and lifetimes (a pool grows now and shrinks as servers are released), the
    /// servers' prepared-statement caches, the packet limit, the verbosity.
    func applySettings() {
        let s = config.settings
        maxPacketSize = s.maxPacketSize
        refusesSimpleQuery = s.disablePqexec
        log.verbose = max(log.verbose, s.verbose)
        for pool in pools.values {
            let name = pool.databaseName
            pool.mode = config.poolMode(database: name, user: pool.userName)
            pool.size = config.poolSize(database: name, user: pool.userName)
            pool.reserveSize = config.reservePoolSize(database: name, user: pool.userName)
            pool.minSize = config.minPoolSize(database: name)
            pool.refreshLifetime()
            pool.welcomes.removeAll()  // track_extra_parameters may have changed
            pool.launchIfNeeded()
        }
        for server in servers.values { server.statementCache.setCapacity(s.maxPreparedStatements) }
        for l in listeners where l.unixPath == nil {
            Socket.setDeferAccept(l.fd, s.tcpDeferAccept)
            l.retune(s)
        }
    }

    /// Re-reads the configuration and auth_file. A bad file keeps the running configuration.
    @discardableResult
    public func reload() -> Bool {
        do {
            let fresh = try Config.load(path: config.path)
            for w in fresh.warnings { log.warning(w) }
            let (users, rules, maps) = try EventLoop.readAuthFiles(fresh.settings)
            config = fresh
            authFile = users
            hba = rules
            identMaps = maps
            authQueryCache.removeAll()
            log.open(path: fresh.settings.logfile)
            do { try tls.load(fresh.settings) } catch {
                log.error("TLS settings not applied, keeping the previous ones: \(error)")
            }
            for pool in pools.values {
                if let entry = fresh.database(named: pool.databaseName) {
                    if entry != pool.database {
                        for s in servers.values where s.pool === pool { s.closeNeeded = true }
                        pool.resetLoginBackoff()  // a fixed entry is tried at once
                    }
                    pool.database = entry
                    pool.serverPassword = entry.password ?? pool.serverPassword
                }
            }
            applySettings()
            return true
        } catch {
            log.error("\(error)")
            log.error("RELOAD failed, keeping the running configuration")
            return false
        }
    }
}

private func loopCheck(_ l: OpaquePointer?, _ w: UnsafeMutablePointer<ev_check>?, _ revents: Int32) {
    guard let w, let ctx = w.pointee.data else { return }
    Unmanaged<EventLoop>.fromOpaque(ctx)._withUnsafeGuaranteedRef { $0.sweep() }
}

private func loopMaintenance(_ l: OpaquePointer?, _ w: UnsafeMutablePointer<ev_timer>?, _ revents: Int32) {
    guard let w, let ctx = w.pointee.data else { return }
    Unmanaged<EventLoop>.fromOpaque(ctx)._withUnsafeGuaranteedRef { $0.maintain() }
}

private func loopSignal(_ l: OpaquePointer?, _ w: UnsafeMutablePointer<ev_signal>?, _ revents: Int32) {
    guard let w, let ctx = w.pointee.data else { return }
    let sig = w.pointee.signum
    Unmanaged<EventLoop>.fromOpaque(ctx)._withUnsafeGuaranteedRef { $0.onSignal(sig) }
}
