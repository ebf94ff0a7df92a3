import Glibc
import PgmuxCore
import CLibEV

/// The `pgbouncer` (alias `pgmux`) pseudo-database: PgBouncer's admin console, answered by the
/// pooler itself. Parsing, access rules and row formatting live in PgmuxCore/Admin; this file
/// gathers the live figures and carries out the commands.
///
/// One console for the whole process: a command runs with the world stopped (see `LoopGroup`),
/// reads every loop's connections and pools as one view, and acts on every loop before it
/// answers.
final class AdminConsole {
    unowned(unsafe) let loop: EventLoop
    /// Every loop of the process (read and changed with the world stopped).
    private var loops: [EventLoop] { loop.group.loops }
    var allPools: [Pool] { loops.flatMap { $0.pools.values } }
    var allClients: [ClientConnection] { loops.flatMap { $0.clients.values } }
    var allServers: [ServerConnection] { loops.flatMap { $0.servers.values } }
    /// With several loops, PAUSE / WAIT_CLOSE / SUSPEND conditions are checked every 10 ms (each
    /// check stops the world), woken by this timer while a caller waits.
    private let waitTimer = UnsafeMutablePointer<ev_timer>.allocate(capacity: 1)
    private var lastWaitCheck = 0.0
    static let databaseNames: Set<String> = ["pgbouncer", "pgmux"]
    /// Extended-protocol state per console client: the parsed query, and the reply messages
    /// computed at Describe and still owed at Execute.
    private var extended: [UInt64: (query: String, pending: [(UInt8, [UInt8])]?)] = [:]
    /// PAUSE / WAIT_CLOSE callers waiting for their condition, answered from `check()`.
    private var waiters: [(client: ClientConnection, tag: String, done: () -> Bool)] = []

    init(loop: EventLoop) {
        self.loop = loop
        waitTimer.initialize(to: ev_timer())
        pgmux_ev_timer_init(waitTimer, { _, _, _ in }, 0.01, 0.01, nil)  // wakes the loop; its sweep checks
    }

    deinit {
        ev_timer_stop(loop.ev, waitTimer)
        waitTimer.deallocate()
    }

    static func isConsole(_ database: String) -> Bool { databaseNames.contains(database) }

    /// After authentication: admit the user with its role, or refuse.
    func login(_ client: ClientConnection, sameUIDUnixSocket: Bool = false) {
        let s = loop.config.settings
        guard let role = AdminAccess.role(user: client.user, adminUsers: s.adminUsers, statsUsers: s.statsUsers,
                                          sameUIDUnixSocket: sameUIDUnixSocket, authTypeAny: s.authType == .any) else {
            client.sendError("not allowed")
            return
        }
        client.adminRole = role
        client.params = [:]
        client.sendWelcome(serverParameters: [
            ("server_version", "\(Version.string)/bouncer"), ("client_encoding", "UTF8"), ("server_encoding", "UTF8"),
            ("DateStyle", "ISO"), ("TimeZone", "GMT"), ("standard_conforming_strings", "on"), ("is_superuser", "on"),
        ])
    }

    /// Reads whole console messages: simple Query only, as PgBouncer.
    func handle(_ client: ClientConnection) {
        guard let base = client.inbuf.base else { return }
        while client.state == .idle {
            switch Framing.peek(base + client.inbuf.start, available: client.inbuf.pending, maxPacketSize: loop.buffers.size) {
            case .needHeader:
                return
            case .invalid(let length):
                client.sendError("invalid packet length \(length)")
                return
            case .message(let type, let total):
                guard client.inbuf.pending >= total else { return }
                let body = Array(UnsafeRawBufferPointer(start: base + client.inbuf.start + 5, count: total - 5))
                client.inbuf.start += total
                client.inbuf.scanned = client.inbuf.start
                if client.inbuf.isEmpty { client.inbuf.clear() }
                switch type {
                case UInt8(ascii: "Q"):
                    let text = String(decoding: body.prefix { $0 != 0 }, as: UTF8.self)
                    var reply = MessageBuilder()
                    run(text, client, &reply)
                    if !reply.bytes.isEmpty { client.queue(reply.bytes) }
                case UInt8(ascii: "X"):
                    extended[client.id] = nil
                    client.disconnect(reason: "client close request", notify: false)
                    return
                case UInt8(ascii: "P"), UInt8(ascii: "B"), UInt8(ascii: "D"), UInt8(ascii: "E"),
                     UInt8(ascii: "S"), UInt8(ascii: "H"), UInt8(ascii: "C"):
                    // pgmux extension: drivers that only speak the extended protocol (JDBC,
                    // asyncpg, pgx) can use the console too; PgBouncer refuses them.
                    extendedMessage(type, body, client)
                default:
                    fail(client, .unsupportedPacket(type))
                    return
                }
            }
        }
    }

    /// A console client left: drop its extended-protocol state.
    func forget(_ client: ClientConnection) { extended[client.id] = nil }

    private func extendedMessage(_ type: UInt8, _ body: [UInt8], _ client: ClientConnection) {
        var m = MessageBuilder()
        switch type {
        case UInt8(ascii: "P"):
            var r = MessageReader(body)
            _ = r.cString()
            extended[client.id] = (r.cString() ?? "", nil)
            m.raw(UInt8(ascii: "1"), [])
        case UInt8(ascii: "B"):
            m.raw(UInt8(ascii: "2"), [])
        case UInt8(ascii: "D"):
            let messages = computeIfNeeded(client)
            if body.first == UInt8(ascii: "S") { m.raw(UInt8(ascii: "t"), [0, 0]) }
            if let first = messages.first, first.0 == UInt8(ascii: "T") {
                m.raw(first.0, first.1)
                extended[client.id]?.pending = Array(messages.dropFirst())
            } else if let first = messages.first, first.0 == UInt8(ascii: "E") {
                m.raw(first.0, first.1)
                extended[client.id]?.pending = []
            } else {
                m.raw(UInt8(ascii: "n"), [])
            }
        case UInt8(ascii: "E"):
            for (t, b) in computeIfNeeded(client) { m.raw(t, b) }
            extended[client.id]?.pending = nil
            extended[client.id]?.query = ""
        case UInt8(ascii: "C"):
            m.raw(UInt8(ascii: "3"), [])
        case UInt8(ascii: "S"):
            m.readyForQuery(UInt8(ascii: "I"))
        default:
            break  // Flush: everything is written at once anyway
        }
        if !m.bytes.isEmpty { client.queue(m.bytes) }
    }

    /// The reply messages of the parsed query, computed once (ReadyForQuery left to Sync).
    private func computeIfNeeded(_ client: ClientConnection) -> [(UInt8, [UInt8])] {
        if let pending = extended[client.id]?.pending { return pending }
        let query = extended[client.id]?.query ?? ""
        var reply = MessageBuilder()
        if query.isEmpty { reply.emptyQueryResponse() } else { run(query, client, &reply) }
        var messages: [(UInt8, [UInt8])] = []
        var i = 0
        let bytes = reply.bytes
        while i + 5 <= bytes.count {
            let len = Int(bytes[i + 1]) << 24 | Int(bytes[i + 2]) << 16 | Int(bytes[i + 3]) << 8 | Int(bytes[i + 4])
            guard len >= 4, i + 1 + len <= bytes.count else { break }
            if bytes[i] != UInt8(ascii: "Z") { messages.append((bytes[i], Array(bytes[(i + 5)..<(i + 1 + len)]))) }
            i += 1 + len
        }
        extended[client.id]?.pending = messages
        return messages
    }

    private func fail(_ client: ClientConnection, _ error: AdminError) {
        loop.log.error("\(client.logPrefix) \(error.message)")
        var m = MessageBuilder()
        m.errorResponse(fields: [(UInt8(ascii: "S"), "FATAL"), (UInt8(ascii: "C"), error.sqlstate),
                                 (UInt8(ascii: "M"), error.message)])
        client.ownOut.append(contentsOf: m.bytes)
        client.disconnect(reason: error.message, notify: false)
    }

    private func run(_ text: String, _ client: ClientConnection, _ reply: inout MessageBuilder) {
        loop.group.withWorldStopped(from: loop) { execute(text, client, &reply) }
    }

    private func execute(_ text: String, _ client: ClientConnection, _ reply: inout MessageBuilder) {
        let command: AdminCommand
        switch AdminParser.parse(text) {
        case .failure(let e): return error(e, &reply)
        case .success(let c): command = c
        }
        if let e = AdminAccess.check(command, role: client.adminRole ?? .stats) { return error(e, &reply) }
        if let line = command.logMessage { loop.log.log("\(client.logPrefix) \(line)") }
        switch command {
        case .show(.help):
            AdminReply.help(into: &reply)
        case .show(let item):
            var snap = snapshot()
            if item == .fds { addFds(to: &snap) }
            guard let table = snap.table(for: item) else { return error(.invalidCommand(text), &reply) }
            AdminReply.table(table, into: &reply)
        case .fakeShow(let p):
            AdminReply.fakeShow(p, into: &reply)
        case .fakeSet:
            AdminReply.fakeSet(into: &reply)
        case .set(let key, let value):
            var settings = loop.config.settings
            guard Settings.info(for: key)?.reloadable == true,
                  (try? settings.apply(key: key, value: value, file: "SET", line: 0)) == true else {
                return error(.setFailed, &reply)
            }
            let k = key.lowercased()
            var tlsFailed = false
            for l in loops {
                l.config.settings = settings
                l.applySettings()
            }
            if k.contains("_tls_") || k.contains("_tls13_") {
                do { try loop.tls.load(settings) } catch { tlsFailed = true }
            }
            if tlsFailed {
                reply.errorResponse(severity: "NOTICE", code: "00000",
                                    message: "TLS settings could not be applied, still using old configuration", notice: true)
            }
            AdminReply.setDone(key: k, value: value, into: &reply)
        case .reload:
            guard loop.reload() else { return error(.reloadFailed, &reply) }
            AdminReply.complete(command.tag, into: &reply)
        case .pause(let db):
            if let db, loop.config.database(named: db) == nil { return error(.noSuchDatabase(db), &reply) }
            if loop.isPaused(db) { return error(.alreadyPaused, &reply) }
            for l in loops { l.pause(db) }
            waitThen(client, tag: command.tag, &reply) { [unowned(unsafe) loop] in
                loop.group.loops.allSatisfy { $0.pausedAndDrained(db) }
            }
        case .resume(nil) where loop.shuttingDown:
            error(.shuttingDown, &reply)
        case .resume(nil) where loop.suspended:
            for l in loops { l.resumeFromSuspend() }
            AdminReply.complete(command.tag, into: &reply)
        case .resume(let db):
            guard loop.isPaused(db) else {
                return error(db.map { .databaseNotPaused($0) } ?? .notPaused, &reply)
            }
            for l in loops { l.resume(db) }
            AdminReply.complete(command.tag, into: &reply)
        case .disable(let db?):
            guard loop.config.database(named: db) != nil else { return error(.noSuchDatabase(db), &reply) }
            for l in loops { l.disabledDatabases.insert(db) }
            AdminReply.complete(command.tag, into: &reply)
        case .enable(let db?):
            for l in loops { l.disabledDatabases.remove(db) }
            AdminReply.complete(command.tag, into: &reply)
        case .kill(let db):
            if let db, loop.config.database(named: db) == nil { return error(.noSuchDatabase(db), &reply) }
            for l in loops { l.kill(database: db) }
            AdminReply.complete(command.tag, into: &reply)
        case .killClient(let id?):
            guard let victim = loops.lazy.compactMap({ $0.clients[id] }).first, victim !== client else {
                return error(.clientNotFound, &reply)
            }
            victim.sendError("admin forced disconnect")
            AdminReply.complete(command.tag, into: &reply)
        case .reconnect(let db):
            for l in loops {
                for s in l.servers.values where db == nil || s.pool.databaseName == db { s.closeNeeded = true }
                for p in l.pools.values where db == nil || p.databaseName == db { p.closeIdleMarked() }
            }
            AdminReply.complete(command.tag, into: &reply)
        case .waitClose(let db):
            waitThen(client, tag: command.tag, &reply) { [unowned(unsafe) loop] in
                !loop.group.loops.contains { l in
                    l.servers.values.contains { $0.closeNeeded && (db == nil || $0.pool.databaseName == db) }
                }
            }
        case .shutdown(let mode):
            switch mode {
            case .immediate:
                loop.group.stopAll(from: loop)  // as PgBouncer: no reply, the connection ends with the process
            case .waitForServers, .waitForClients:
                AdminReply.complete(command.tag, into: &reply)
                client.queue(reply.bytes)
                reply = MessageBuilder()
                for l in loops.reversed() { l.beginShutdown(waitForClients: mode == .waitForClients) }
            }
        case .suspend:
            if loop.suspended || loop.globallyPaused { return error(.alreadyPaused, &reply) }
            if !loop.pausedDatabases.isEmpty { return error(.suspendWithPausedDatabases, &reply) }
            for l in loops { l.suspend(except: client) }
            let started = loop.now
            waitThen(client, tag: command.tag, &reply) { [unowned(unsafe) loop] in
                loop.group.loops.allSatisfy { $0.buffersFlushed() } || loop.now - started > loop.config.settings.suspendTimeout
            }
        case .disable(nil), .enable(nil), .killClient(nil):
            error(.badArguments, &reply)
        }
    }

    private func error(_ e: AdminError, _ reply: inout MessageBuilder) {
        loop.log.error(e.message)
        AdminReply.error(e, into: &reply)
    }

    /// Answers now when `done()` holds, else when the maintenance check finds it true.
    private func waitThen(_ client: ClientConnection, tag: String, _ reply: inout MessageBuilder, _ done: @escaping () -> Bool) {
        if done() { AdminReply.complete(tag, into: &reply); return }
        waiters.append((client, tag, done))
        if loop.group.count > 1 { ev_timer_start(loop.ev, waitTimer) }
    }

    /// Called each loop iteration: answers console clients whose PAUSE / WAIT_CLOSE completed.
    func check() {
        guard !waiters.isEmpty else { return }
        if loop.group.count > 1 {
            guard loop.now - lastWaitCheck >= 0.01 else { return }
            lastWaitCheck = loop.now
        }
        loop.group.withWorldStopped(from: loop) {
            waiters.removeAll { w in
                if w.client.isClosed { return true }
                guard w.done() else { return false }
                var m = MessageBuilder()
                AdminReply.complete(w.tag, into: &m)
                w.client.queue(m.bytes)
                return true
            }
        }
        if waiters.isEmpty { ev_timer_stop(loop.ev, waitTimer) }
    }

    // MARK: live figures

    /// SHOW DATABASES and SHOW POOLS show load_balance_hosts only for a host list (PgBouncer).
    static func loadBalanceText(_ e: DatabaseEntry) -> String? {
        e.host?.contains(",") == true ? e.loadBalanceHosts.rawValue : nil
    }

    /// SHOW HOSTS rows of one database: its hosts as `HostHealth` knows them, judged against its
    /// target_session_attrs.
    private func hostRows(_ name: String, _ e: DatabaseEntry) -> [AdminHostRow] {
        let target = e.targetSessionAttrs ?? loop.config.settings.targetSessionAttrs
        let now = loop.now
        return e.hosts.map { host in
            let h = loop.hostHealth[host]
            let state: String
            if let h, h.failures > 0 { state = "backoff" }
            else if let s = h?.status { state = target == .preferStandby || target.accepts(s) ? "usable" : "wrong role" }
            else { state = "unknown" }
            return AdminHostRow(database: name, host: host.name.isEmpty ? loop.config.settings.unixSocketDir : host.name,
                                port: host.port, targetSessionAttrs: target.rawValue,
                                role: h?.status?.roleName ?? "unknown", state: state, failures: h?.failures ?? 0,
                                retryIn: h?.retryIn(at: now) ?? 0, lastError: h?.lastError ?? "")
        }
    }

    private func snapshot() -> AdminSnapshot {
        var snap = AdminSnapshot()
        let s = loop.config.settings
        snap.version = "pgmux \(Version.string)"
        snap.statsWindowUs = Stats.micros(loop.now - loop.statsPeriodStart)
        var rows: [String: AdminPoolRow] = [:]
        for p in allPools {
            // Replication pools add to their (database, user) row, as PgBouncer has one pool for
            // both; the pool mode shown is the normal pool's.
            let key = p.databaseName + "\u{0}" + p.userName
            let existing = rows[key]
            var row = existing ?? AdminPoolRow(database: p.databaseName, user: p.userName)
            if existing == nil || p.replication == .none {
                row.poolMode = p.mode.rawValue
                row.loadBalanceHosts = Self.loadBalanceText(p.database)
            }
            row.stats = row.stats &+ p.counters
            row.olderStats = row.olderStats &+ p.periodCounters
            if let since = p.machine.oldestWaitStart, since > 0 { row.maxWaitUs = max(row.maxWaitUs, Stats.micros(loop.now - since)) }
            rows[key] = row
        }
        // The console is a pool of its own, as in PgBouncer: database and forced user `pgbouncer`,
        // statement mode; its clients appear in SHOW CLIENTS and SOCKETS and count in SHOW POOLS.
        let consoleKey = "pgbouncer\u{0}pgbouncer"
        var consoleRow = AdminPoolRow(database: "pgbouncer", user: "pgbouncer")
        consoleRow.poolMode = PoolMode.statement.rawValue
        rows[consoleKey] = consoleRow
        for c in allClients {
            let owner: (database: String, user: String), key: String
            if let pool = c.pool {
                owner = (pool.databaseName, pool.userName)
                key = pool.databaseName + "\u{0}" + pool.userName
            } else if c.adminRole != nil {
                owner = ("pgbouncer", "pgbouncer")
                key = consoleKey
            } else {
                continue
            }
            let state: AdminConnectionState
            switch c.state {
            case .active, .idle:
                state = .clActive
                rows[key]?.clActive += 1
                if c.pinned { rows[key]?.clPinned += 1 }
            case .waiting, .waitingForWelcome: state = .clWaiting; rows[key]?.clWaiting += 1
            default: continue
            }
            var r = AdminConnectionRow(owner: .pool(database: owner.database, user: owner.user), state: state, user: c.user)
            r.database = c.database
            r.replication = c.replication.adminValue
            r.addr = c.remote.hostText
            r.port = c.isUnixSocket ? s.listenPort : Int(c.remote.port)
            r.connectTime = AdminConsole.timestamp(c.connectTime)
            r.requestTime = AdminConsole.timestamp(max(c.lastActivity, c.connectTime))
            r.waitUs = c.state == .waiting ? Stats.micros(loop.now - c.stateSince) : 0
            r.ptr = "0x\(String(c.id, radix: 16))"
            r.link = c.server.map { "0x\(String($0.id, radix: 16))" }
            r.applicationName = c.params["application_name"] ?? ""
            r.tls = c.ssl.map { TLSContexts.describe($0) } ?? ""  // as PgBouncer: empty without TLS
            r.preparedStatements = c.sessionBox?.rewriter.clientStatements.count ?? 0
            r.pinned = c.pinned
            r.worker = c.loop.index
            r.id = c.id
            snap.connections.append(r)
        }
        for sv in allServers {
            let pool = sv.pool
            let key = pool.databaseName + "\u{0}" + pool.userName
            let state: AdminConnectionState
            switch sv.state {
            case .active: state = .svActive; rows[key]?.svActive += 1
            case .idle: state = .svIdle; rows[key]?.svIdle += 1
            case .beingCanceled: state = .svBeingCanceled; rows[key]?.svBeingCanceled += 1
            case .ownQuery(let q): state = q == .reset ? .svTested : .svUsed
                if q == .reset { rows[key]?.svTested += 1 } else { rows[key]?.svUsed += 1 }
            case .resolving, .connecting, .tlsRequest, .tlsHandshake, .loggingIn: state = .svLogin; rows[key]?.svLogin += 1
            case .listening: state = .svListen  // not in SHOW POOLS' counts: outside the pool
            case .closed: continue
            }
            var r = AdminConnectionRow(owner: .pool(database: pool.databaseName, user: pool.userName), state: state,
                                       user: pool.serverUser)
            r.replication = pool.replication.adminValue
            r.addr = sv.address.family == AF_UNIX ? "unix" : sv.address.hostText
            r.port = sv.address.family == AF_UNIX ? pool.database.port : sv.address.port
            r.localAddr = sv.localAddress.hostText
            r.localPort = sv.localAddress.port
            r.connectTime = AdminConsole.timestamp(sv.connectTime)
            r.requestTime = AdminConsole.timestamp(sv.lastUsed)
            r.closeNeeded = sv.closeNeeded
            r.ptr = "0x\(String(sv.id, radix: 16))"
            r.link = sv.client.map { "0x\(String($0.id, radix: 16))" }
            r.remotePid = Int32(truncatingIfNeeded: sv.backendKey >> 32)
            r.applicationName = sv.params["application_name"]?.value ?? ""
            r.tls = sv.ssl.map { TLSContexts.describe($0) } ?? ""
            r.preparedStatements = sv.statementCache.count
            r.pinned = sv.client?.pinned == true
            r.worker = sv.loop.index
            r.id = sv.id
            snap.connections.append(r)
        }
        snap.pools = Array(rows.values)
        var names = Set(loop.config.databases.keys)
        for p in allPools { names.insert(p.databaseName) }
        for name in names {
            guard let e = loop.config.database(named: name) else { continue }
            var d = AdminDatabaseRow(name: name, database: e.dbname)
            d.host = e.host
            d.port = e.port
            d.forceUser = e.user
            d.poolSize = e.poolSize ?? s.defaultPoolSize
            d.minPoolSize = e.minPoolSize ?? s.minPoolSize
            d.reservePoolSize = e.reservePoolSize ?? s.reservePoolSize
            d.serverLifetime = Int(e.serverLifetime ?? s.serverLifetime)
            d.poolMode = e.poolMode?.rawValue
            d.loadBalanceHosts = Self.loadBalanceText(e)
            d.maxConnections = e.maxDbConnections ?? s.maxDbConnections
            d.currentConnections = loop.group.budget.count(database: e.dbname)
            // The counts max_db_client_connections is enforced on (LoginHandler.countClient).
            d.maxClientConnections = ClientLimits.effective(e.maxDbClientConnections, global: s.maxDbClientConnections)
            d.currentClientConnections = loop.group.clientCounts.database(name)
            d.paused = loop.isPaused(name)
            d.disabled = loop.disabledDatabases.contains(name)
            snap.databases.append(d)
        }
        // By database name, each database's hosts in the order of its list.
        for name in names.sorted() { if let e = loop.config.database(named: name) { snap.hosts += hostRows(name, e) } }
        snap.databases.append(consoleDatabaseRow(s, clients: loop.group.clientCounts.database("pgbouncer")))
        for name in knownUsers() {
            let u = loop.config.users[name]
            var row = AdminUserRow(name: name)
            row.poolSize = u?.poolSize
            row.reservePoolSize = u?.reservePoolSize
            row.poolMode = u?.poolMode?.rawValue
            row.maxUserConnections = u?.maxUserConnections ?? s.maxUserConnections
            row.currentConnections = loop.group.budget.count(user: name)
            row.maxUserClientConnections = ClientLimits.effective(u?.maxUserClientConnections, global: s.maxUserClientConnections)
            row.currentClientConnections = loop.group.clientCounts.user(name)
            snap.users.append(row)
        }
        snap.config = Settings.knownKeys.map { info in
            AdminConfigRow(key: info.name, value: s.textValue(of: info.name), defaultValue: info.defaultValue,
                           changeable: info.reloadable)
        }
        snap.lists.databases = names.count + 1
        snap.lists.users = snap.users.count
        snap.lists.pools = Set(allPools.map(\.key)).count
        snap.lists.usedClients = allClients.count
        snap.lists.usedServers = allServers.count
        snap.lists.freeServers = allPools.reduce(0) { $0 + $1.machine.idle.count }
        loop.group.dns.fill(&snap, now: loop.now)
        let buffers = loops.map(\.buffers), watchers = loops.map(\.watchers)
        let iobufSize = loop.buffers.size
        let iobufUsed = buffers.reduce(0) { $0 + $1.inUse }, iobufFree = buffers.reduce(0) { $0 + $1.freeCount }
        let watcherUsed = watchers.reduce(0) { $0 + $1.inUse }, watcherCapacity = watchers.reduce(0) { $0 + $1.capacity }
        snap.mem = [AdminMemRow(name: "iobuf", size: iobufSize, used: iobufUsed, free: iobufFree,
                                memtotal: iobufSize * (iobufUsed + iobufFree)),
                    AdminMemRow(name: "watcher", size: MemoryLayout<ev_io>.stride, used: watcherUsed,
                                free: watcherCapacity - watcherUsed, memtotal: MemoryLayout<ev_io>.stride * watcherCapacity)]
        snap.threads = loops.map(threadRow)
        addPeers(to: &snap)
        snap.pauseMode = loop.globallyPaused ? .pause : .none
        snap.restart = loop.group.loop(0).takeoverProgress
        return snap
    }

    /// SHOW THREADS: one loop's connections, pools, CPU time and server moves.
    private func threadRow(_ l: EventLoop) -> AdminThreadRow {
        var row = AdminThreadRow(worker: l.index)
        row.clients = l.clients.count
        row.waitingClients = l.clients.values.reduce(0) { $0 + ($1.state == .waiting || $1.state == .waitingForWelcome ? 1 : 0) }
        row.servers = l.servers.count
        for s in l.servers.values {
            if s.state == .idle { row.idleServers += 1 } else if s.state == .active { row.activeServers += 1 }
        }
        row.pools = l.pools.count
        row.cpuSeconds = l.cpuSeconds
        row.serversMovedIn = l.serversMovedIn
        row.serversMovedOut = l.serversMovedOut
        row.clientsMovedIn = l.clientsMovedIn
        row.clientsMovedOut = l.clientsMovedOut
        row.inUse = l.index < l.group.loadLock.withLock { l.group.loopsInUse }
        return row
    }

    /// SHOW DATABASES' row for the console itself (PgBouncer's admin_setup: pool size 2,
    /// statement mode, forced user `pgbouncer`, the listen port).
    private func consoleDatabaseRow(_ s: Settings, clients: Int) -> AdminDatabaseRow {
        var d = AdminDatabaseRow(name: "pgbouncer", database: "pgbouncer")
        d.port = s.listenPort
        d.forceUser = "pgbouncer"
        d.poolSize = 2
        d.minPoolSize = s.minPoolSize
        d.reservePoolSize = s.reservePoolSize
        d.serverLifetime = Int(s.serverLifetime)
        d.poolMode = PoolMode.statement.rawValue
        d.maxConnections = s.maxDbConnections
        d.maxClientConnections = s.maxDbClientConnections
        d.currentClientConnections = clients
        return d
    }

    /// Every user pgmux knows, as PgBouncer's user list: `[users]` entries, auth_file users,
    /// users found by auth_query, users of pools and logged-in clients, and `pgbouncer`.
    private func knownUsers() -> Set<String> {
        var names = Set(loop.config.users.keys).union(loop.authFile.keys)
        names.insert("pgbouncer")
        names.formUnion(loop.authQueryCache.usersFound)
        for p in allPools { names.insert(p.userName) }
        for c in allClients where c.countedAsLoggedIn && !c.user.isEmpty { names.insert(c.user) }
        return names
    }

    /// `YYYY-MM-DD HH:MM:SS TZ` in local time, as SHOW CLIENTS/SERVERS print it.
    static func timestamp(_ t: Double) -> String {
        var secs = time_t(t)
        var tmv = tm()
        localtime_r(&secs, &tmv)
        var buf = [CChar](repeating: 0, count: 64)
        let n = strftime(&buf, 64, "%Y-%m-%d %H:%M:%S %Z", &tmv)
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
