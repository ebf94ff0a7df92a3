/// What the I/O layer reports about the pooler's state for one SHOW; `table(for:)` turns it into
/// PgBouncer 1.25.2's exact rows. Input order of rows does not matter where PgBouncer sorts
/// (pools, databases, users, config: byte-wise, like `strcmp`); within one pool and state list the
/// input order of connections is kept (it is PgBouncer's list order).
public struct AdminSnapshot: Sendable {
    /// Every pool, including the `pgbouncer` admin pool (it appears in POOLS, STATS, SOCKETS).
    public var pools: [AdminPoolRow] = []
    /// Every client and server connection (all pools, peer pools and logging-in clients).
    public var connections: [AdminConnectionRow] = []
    /// µs between now and the start of the previous stats period (PgBouncer's `now - old_stamp`);
    /// 0 makes every average 0.
    public var statsWindowUs: UInt64 = 0
    public var databases: [AdminDatabaseRow] = []
    public var users: [AdminUserRow] = []
    public var config: [AdminConfigRow] = []
    public var peers: [AdminPeerRow] = []
    public var peerPools: [AdminPeerPoolRow] = []
    public var lists = AdminLists()
    public var mem: [AdminMemRow] = []
    public var fds: [AdminFdRow] = []
    public var dnsHosts: [AdminDNSHostRow] = []
    public var dnsZones: [AdminDNSZoneRow] = []
    public var hosts: [AdminHostRow] = []
    public var threads: [AdminThreadRow] = []
    public var pauseMode: AdminPauseMode = .none
    /// An online restart this process takes part in (SHOW STATE).
    public var restart = TakeoverProgress()
    /// SHOW VERSION's single value (PgBouncer: `PgBouncer 1.25.2`).
    public var version: String = ""

    public init() {}
}

// MARK: - row types

/// Per-pool counters (PgBouncer's `PgStats`), all monotonic since the pool was created.
public struct AdminStatCounters: Equatable, Sendable {
    public var serverAssignmentCount: UInt64 = 0
    public var xactCount: UInt64 = 0
    public var queryCount: UInt64 = 0
    public var clientBytes: UInt64 = 0
    public var serverBytes: UInt64 = 0
    public var xactTime: UInt64 = 0
    public var queryTime: UInt64 = 0
    public var waitTime: UInt64 = 0
    public var psClientParseCount: UInt64 = 0
    public var psServerParseCount: UInt64 = 0
    public var psBindCount: UInt64 = 0
    /// server_reset_query runs (pgmux extension: session pooling resets only servers whose
    /// state a client may have changed).
    public var serverResetCount: UInt64 = 0

    public init() {}

    /// In SHOW order.
    var values: [UInt64] {
        [serverAssignmentCount, xactCount, queryCount, clientBytes, serverBytes, xactTime, queryTime,
         waitTime, psClientParseCount, psServerParseCount, psBindCount, serverResetCount]
    }

    public static func &+ (a: AdminStatCounters, b: AdminStatCounters) -> AdminStatCounters {
        var r = AdminStatCounters()
        r.serverAssignmentCount = a.serverAssignmentCount &+ b.serverAssignmentCount
        r.xactCount = a.xactCount &+ b.xactCount
        r.queryCount = a.queryCount &+ b.queryCount
        r.clientBytes = a.clientBytes &+ b.clientBytes
        r.serverBytes = a.serverBytes &+ b.serverBytes
        r.xactTime = a.xactTime &+ b.xactTime
        r.queryTime = a.queryTime &+ b.queryTime
        r.waitTime = a.waitTime &+ b.waitTime
        r.psClientParseCount = a.psClientParseCount &+ b.psClientParseCount
        r.psServerParseCount = a.psServerParseCount &+ b.psServerParseCount
        r.psBindCount = a.psBindCount &+ b.psBindCount
        r.serverResetCount = a.serverResetCount &+ b.serverResetCount
        return r
    }

    /// PgBouncer's `calc_average` (unsigned, truncating): counts and bytes per second over
    /// `windowUs`; xact/query/wait time per xact/query/assignment. All 0 if `windowUs` is 0.
    public static func average(current cur: AdminStatCounters, older old: AdminStatCounters,
                               windowUs dur: UInt64) -> AdminStatCounters {
        var avg = AdminStatCounters()
        guard dur > 0 else { return avg }
        let usec: UInt64 = 1_000_000
        func rate(_ c: UInt64, _ o: UInt64) -> UInt64 { (usec &* (c &- o)) / dur }
        let queries = cur.queryCount &- old.queryCount
        let xacts = cur.xactCount &- old.xactCount
        let assignments = cur.serverAssignmentCount &- old.serverAssignmentCount
        avg.queryCount = rate(cur.queryCount, old.queryCount)
        avg.xactCount = rate(cur.xactCount, old.xactCount)
        avg.serverAssignmentCount = rate(cur.serverAssignmentCount, old.serverAssignmentCount)
        avg.clientBytes = rate(cur.clientBytes, old.clientBytes)
        avg.serverBytes = rate(cur.serverBytes, old.serverBytes)
        if queries > 0 { avg.queryTime = (cur.queryTime &- old.queryTime) / queries }
        if xacts > 0 { avg.xactTime = (cur.xactTime &- old.xactTime) / xacts }
        if assignments > 0 { avg.waitTime = (cur.waitTime &- old.waitTime) / assignments }
        avg.psClientParseCount = rate(cur.psClientParseCount, old.psClientParseCount)
        avg.psServerParseCount = rate(cur.psServerParseCount, old.psServerParseCount)
        avg.psBindCount = rate(cur.psBindCount, old.psBindCount)
        avg.serverResetCount = rate(cur.serverResetCount, old.serverResetCount)
        return avg
    }
}

public struct AdminPoolRow: Sendable {
    public var database: String
    public var user: String
    public var clActive = 0, clWaiting = 0, clActiveCancelReq = 0, clWaitingCancelReq = 0
    /// Clients kept on their server by session state (pgmux extension, `cl_pinned`).
    public var clPinned = 0
    public var svActive = 0, svActiveCancel = 0, svBeingCanceled = 0, svIdle = 0, svUsed = 0
    public var svTested = 0, svLogin = 0
    /// µs the oldest waiting client has waited (0 if none); split into maxwait / maxwait_us.
    public var maxWaitUs: UInt64 = 0
    /// Effective pool mode name: `session`, `transaction`, `statement`.
    public var poolMode = "session"
    /// `load_balance_hosts` name when the database host is a comma list, else nil (NULL).
    public var loadBalanceHosts: String? = nil
    /// Counters now, and as of the start of the previous stats period (`older_stats`).
    public var stats = AdminStatCounters()
    public var olderStats = AdminStatCounters()

    public init(database: String, user: String) {
        self.database = database
        self.user = user
    }
}

/// Which list a connection is on (PgBouncer's per-pool StatLists, plus `login_client_list`).
public enum AdminConnectionState: Sendable, CaseIterable {
    case clActive, clWaiting, clActiveCancelReq, clWaitingCancelReq, clLogin
    case svActive, svIdle, svUsed, svTested, svLogin, svActiveCancel, svBeingCanceled
    /// pgmux's own: a pool's LISTEN/NOTIFY listener connection, outside its counts.
    case svListen

    public var isServer: Bool {
        switch self {
        case .clActive, .clWaiting, .clActiveCancelReq, .clWaitingCancelReq, .clLogin: return false
        default: return true
        }
    }

    /// State text in SHOW CLIENTS / SERVERS (before the `active` → `idle` rule); nil if not listed.
    var listName: String? {
        switch self {
        case .clActive, .svActive: return "active"
        case .clWaiting: return "waiting"
        case .clActiveCancelReq: return "active_cancel_req"
        case .clWaitingCancelReq: return "waiting_cancel_req"
        case .clLogin: return nil
        case .svIdle: return "idle"
        case .svUsed: return "used"
        case .svTested: return "tested"
        case .svLogin: return "new"
        case .svActiveCancel: return "active_cancel"
        case .svBeingCanceled: return "being_canceled"
        case .svListen: return "listen"
        }
    }

    /// State text in SHOW SOCKETS; nil if not listed there.
    var socketName: String? {
        switch self {
        case .clActive: return "cl_active"
        case .clWaiting: return "cl_waiting"
        case .clLogin: return "cl_login"
        case .svActive: return "sv_active"
        case .svIdle: return "sv_idle"
        case .svUsed: return "sv_used"
        case .svTested: return "sv_tested"
        case .svLogin: return "sv_login"
        case .svListen: return "sv_listen"
        case .clActiveCancelReq, .clWaitingCancelReq, .svActiveCancel, .svBeingCanceled: return nil
        }
    }
}

/// The pool list a connection sits in, for ordering.
public enum AdminConnectionOwner: Equatable, Sendable {
    case pool(database: String, user: String)
    case peer(id: Int)
    /// Still logging in (SOCKETS only, state `cl_login`).
    case login
}

public enum AdminReplication: String, Sendable {
    case none, logical, physical
}

public struct AdminConnectionRow: Sendable {
    public var owner: AdminConnectionOwner
    public var state: AdminConnectionState
    /// Login user; nil → `(nouser)`.
    public var user: String?
    /// Database name; nil → `(nodb)` (unknown, or a peer pool). Defaults to the owner pool's.
    public var database: String?
    public var replication: AdminReplication = .none
    /// Remote address text (`unix` for Unix sockets) and port (Unix: the listen port).
    public var addr = "", port = 0
    public var localAddr = "", localPort = 0
    /// Already formatted `YYYY-MM-DD HH:MM:SS TZ` (local time).
    public var connectTime = "", requestTime = ""
    /// µs since the current request started, 0 if none.
    public var waitUs: UInt64 = 0
    public var closeNeeded = false
    /// Identity text, `0x…` hex.
    public var ptr = ""
    /// `ptr` of the linked connection, nil if unlinked (an unlinked `active` client shows `idle`).
    public var link: String? = nil
    public var remotePid: Int32 = 0
    /// Empty, or `<protocol>/<cipher>[/ECDH=<curve>|/DH=<bits>]`.
    public var tls = ""
    public var applicationName = ""
    public var preparedStatements = 0
    /// A client kept on its server by session state, or a server keeping one (pgmux extension).
    public var pinned = false
    /// The event loop holding the connection (pgmux extension).
    public var worker = 0
    /// KILL_CLIENT id (printed as int4, truncated like PgBouncer's `%d`).
    public var id: UInt64 = 0
    // SOCKETS buffer internals.
    public var recvPos = 0, pktPos = 0, pktRemain = 0, sendPos = 0, pktAvail = 0, sendAvail = 0
    /// ACTIVE_SOCKETS lists only connections whose buffer is not empty.
    public var hasBufferedData = false

    public init(owner: AdminConnectionOwner, state: AdminConnectionState, user: String?) {
        self.owner = owner
        self.state = state
        self.user = user
        if case .pool(let db, _) = owner { database = db }
    }
}

public struct AdminDatabaseRow: Sendable {
    public var name: String
    /// nil = default Unix socket (NULL).
    public var host: String? = nil
    public var port = 0
    /// The real database name on the server.
    public var database: String
    public var forceUser: String? = nil
    /// Effective values (database setting or global default).
    public var poolSize = 0, minPoolSize = 0, reservePoolSize = 0
    /// Effective server_lifetime in seconds.
    public var serverLifetime = 0
    /// nil = inherits (NULL).
    public var poolMode: String? = nil
    public var loadBalanceHosts: String? = nil
    public var maxConnections = 0, currentConnections = 0
    public var maxClientConnections = 0, currentClientConnections = 0
    public var paused = false, disabled = false

    public init(name: String, database: String) {
        self.name = name
        self.database = database
    }
}

public struct AdminUserRow: Sendable {
    public var name: String
    /// nil when not set for this user (empty text); else printed `%9d`.
    public var poolSize: Int? = nil
    public var reservePoolSize: Int? = nil
    public var poolMode: String? = nil
    public var maxUserConnections = 0, currentConnections = 0
    public var maxUserClientConnections = 0, currentClientConnections = 0

    public init(name: String) { self.name = name }
}

public struct AdminConfigRow: Sendable {
    public var key: String
    /// nil = unset (NULL); "" = empty string.
    public var value: String?
    public var defaultValue: String?
    public var changeable: Bool

    public init(key: String, value: String?, defaultValue: String?, changeable: Bool) {
        self.key = key
        self.value = value
        self.defaultValue = defaultValue
        self.changeable = changeable
    }
}

public struct AdminPeerRow: Sendable {
    public var peerId: Int
    public var host: String?
    public var port: Int
    public var poolSize: Int

    public init(peerId: Int, host: String?, port: Int, poolSize: Int) {
        self.peerId = peerId; self.host = host; self.port = port; self.poolSize = poolSize
    }
}

public struct AdminPeerPoolRow: Sendable {
    public var peerId: Int
    public var clActiveCancelReq = 0, clWaitingCancelReq = 0, svActiveCancel = 0, svLogin = 0

    public init(peerId: Int) { self.peerId = peerId }
}

/// SHOW LISTS counts (free/used: allocated-but-unused vs in-use connection objects).
public struct AdminLists: Sendable {
    public var databases = 0, users = 0, peers = 0, pools = 0, peerPools = 0
    public var freeClients = 0, usedClients = 0, loginClients = 0, freeServers = 0, usedServers = 0
    public var dnsNames = 0, dnsZones = 0, dnsQueries = 0, dnsPending = 0

    public init() {}
}

public struct AdminMemRow: Sendable {
    public var name: String
    public var size: Int, used: Int, free: Int, memtotal: Int

    public init(name: String, size: Int, used: Int, free: Int, memtotal: Int) {
        self.name = name; self.size = size; self.used = used; self.free = free; self.memtotal = memtotal
    }
}

/// One SHOW FDS row (`task` = `pooler`, `client` or `server`; nil → NULL).
public struct AdminFdRow: Sendable {
    public var fd: Int32
    public var task: String
    public var user: String? = nil, database: String? = nil, addr: String? = nil
    public var port = 0
    public var cancel: UInt64 = 0
    public var link: Int32 = 0
    public var clientEncoding: String? = nil, stdStrings: String? = nil
    public var dateStyle: String? = nil, timeZone: String? = nil
    public var password: String? = nil
    /// Printed as `\x` + lowercase hex; nil → NULL.
    public var scramClientKey: [UInt8]? = nil, scramServerKey: [UInt8]? = nil

    public init(fd: Int32, task: String) { self.fd = fd; self.task = task }
}

public struct AdminDNSHostRow: Sendable {
    public var hostname: String
    /// Seconds left, 0 if expired.
    public var ttl: UInt64
    /// Comma list.
    public var addrs: String

    public init(hostname: String, ttl: UInt64, addrs: String) {
        self.hostname = hostname; self.ttl = ttl; self.addrs = addrs
    }
}

public struct AdminDNSZoneRow: Sendable {
    public var zonename: String
    public var serial: UInt64
    public var count: Int

    public init(zonename: String, serial: UInt64, count: Int) {
        self.zonename = zonename; self.serial = serial; self.count = count
    }
}

/// SHOW HOSTS: a host of a database's list as the pooler sees it now.
/// SHOW THREADS: one event loop (`workers`) and its load.
public struct AdminThreadRow: Sendable {
    public var worker: Int
    public var clients = 0
    public var waitingClients = 0
    public var servers = 0
    public var activeServers = 0
    public var idleServers = 0
    public var pools = 0
    /// CPU time the loop's thread has used.
    public var cpuSeconds = 0.0
    /// Idle servers handed to this loop by others, and by this loop to others.
    public var serversMovedIn: UInt64 = 0
    public var serversMovedOut: UInt64 = 0
    /// Clients moved to this loop by `worker_placement`, and from it.
    public var clientsMovedIn: UInt64 = 0
    public var clientsMovedOut: UInt64 = 0
    /// The loop takes new clients (`LoopBalancer.inUse`).
    public var inUse = true

    public init(worker: Int) { self.worker = worker }
}

public struct AdminHostRow: Sendable {
    public var database: String
    public var host: String
    public var port: Int
    public var targetSessionAttrs: String
    /// `primary`, `standby`, `primary (read-only)`, or `unknown` before a login reported it.
    public var role: String
    /// `backoff` (its last connect or login failed; tried again after `retryIn`), else `usable` or
    /// `wrong role` (for this database's target) by its last reported role, `unknown` before one.
    public var state: String
    public var failures: Int
    /// Seconds until the next attempt while backing off.
    public var retryIn: Double
    public var lastError: String

    public init(database: String, host: String, port: Int, targetSessionAttrs: String, role: String, state: String,
                failures: Int, retryIn: Double, lastError: String) {
        self.database = database; self.host = host; self.port = port; self.targetSessionAttrs = targetSessionAttrs
        self.role = role; self.state = state; self.failures = failures; self.retryIn = retryIn; self.lastError = lastError
    }
}

public enum AdminPauseMode: Sendable {
    case none, pause, suspend
}

// MARK: - formatting

extension AdminSnapshot {
    /// The result set for `item`, or nil for `help` (use `AdminReply.help`).
    public func table(for item: AdminShowItem) -> AdminTable? {
        var t = AdminTable(columns: AdminColumns.columns(for: item))
        switch item {
        case .help:
            return nil
        case .pools:
            for p in sortedPools {
                t.append([p.database, p.user, i4(p.clActive), i4(p.clWaiting), i4(p.clActiveCancelReq),
                          i4(p.clWaitingCancelReq), i4(p.svActive), i4(p.svActiveCancel), i4(p.svBeingCanceled),
                          i4(p.svIdle), i4(p.svUsed), i4(p.svTested), i4(p.svLogin),
                          i4(p.maxWaitUs / 1_000_000), i4(p.maxWaitUs % 1_000_000), p.poolMode, p.loadBalanceHosts,
                          i4(p.clPinned)])
            }
        case .clients:
            let pools: [AdminConnectionState] = [.clActive, .clWaiting, .clActiveCancelReq, .clWaitingCancelReq]
            for c in orderedConnections(pool: pools, peer: [.clActiveCancelReq, .clWaitingCancelReq], login: false) {
                t.append(connectionRow(c, state: c.state.listName!, debug: false))
            }
        case .servers:
            let pools: [AdminConnectionState] = [.svActive, .svIdle, .svUsed, .svTested, .svLogin, .svActiveCancel,
                                                 .svBeingCanceled, .svListen]
            for c in orderedConnections(pool: pools, peer: [.svLogin, .svActiveCancel], login: false) {
                t.append(connectionRow(c, state: c.state.listName!, debug: false))
            }
        case .sockets, .activeSockets:
            let pools: [AdminConnectionState] = [.clActive, .clWaiting, .svActive, .svIdle, .svUsed, .svTested, .svLogin,
                                                 .svListen]
            for c in orderedConnections(pool: pools, peer: [], login: true)
            where item == .sockets || c.hasBufferedData {
                t.append(connectionRow(c, state: c.state.socketName!, debug: true))
            }
        case .stats, .statsTotals, .statsAverages:
            for (db, cur, old) in statsByDatabase {
                let avg = AdminStatCounters.average(current: cur, older: old, windowUs: statsWindowUs)
                let numbers: [UInt64]
                switch item {
                case .stats: numbers = cur.values + avg.values
                case .statsTotals: numbers = cur.values
                default: numbers = avg.values
                }
                t.append([db] + numbers.map { String($0) })
            }
        case .totals:
            var cur = AdminStatCounters(), old = AdminStatCounters()
            for p in pools { cur = cur &+ p.stats; old = old &+ p.olderStats }
            let avg = AdminStatCounters.average(current: cur, older: old, windowUs: statsWindowUs)
            for (name, value) in zip(AdminColumns.totalsRowNames, cur.values + avg.values) {
                t.append([name, String(value)])
            }
        case .databases:
            for d in databases.sorted(by: { strcmpLess($0.name, $1.name) }) {
                t.append([d.name, d.host, i4(d.port), d.database, d.forceUser, i4(d.poolSize), i4(d.minPoolSize),
                          i4(d.reservePoolSize), i4(d.serverLifetime), d.poolMode, d.loadBalanceHosts,
                          i4(d.maxConnections), i4(d.currentConnections), i4(d.maxClientConnections),
                          i4(d.currentClientConnections), bool01(d.paused), bool01(d.disabled)])
            }
        case .users:
            for u in users.sorted(by: { strcmpLess($0.name, $1.name) }) {
                t.append([u.name, u.poolSize.map(width9) ?? "", u.reservePoolSize.map(width9) ?? "", u.poolMode,
                          i4(u.maxUserConnections), i4(u.currentConnections), i4(u.maxUserClientConnections),
                          i4(u.currentClientConnections)])
            }
        case .config:
            for c in config.sorted(by: { strcmpLess($0.key, $1.key) }) {
                t.append([c.key, c.value, c.defaultValue, c.changeable ? "yes" : "no"])
            }
        case .peers:
            for p in peers.sorted(by: { $0.peerId < $1.peerId }) {
                t.append([i4(p.peerId), p.host, i4(p.port), i4(p.poolSize)])
            }
        case .peerPools:
            for p in peerPools.sorted(by: { $0.peerId < $1.peerId }) {
                t.append([i4(p.peerId), i4(p.clActiveCancelReq), i4(p.clWaitingCancelReq), i4(p.svActiveCancel),
                          i4(p.svLogin)])
            }
        case .lists:
            let l = lists
            for (name, n) in [("databases", l.databases), ("users", l.users), ("peers", l.peers), ("pools", l.pools),
                              ("peer_pools", l.peerPools), ("free_clients", l.freeClients),
                              ("used_clients", l.usedClients), ("login_clients", l.loginClients),
                              ("free_servers", l.freeServers), ("used_servers", l.usedServers),
                              ("dns_names", l.dnsNames), ("dns_zones", l.dnsZones), ("dns_queries", l.dnsQueries),
                              ("dns_pending", l.dnsPending)] {
                t.append([name, i4(n)])
            }
        case .mem:
            for m in mem { t.append([m.name, i4(m.size), i4(m.used), i4(m.free), i4(m.memtotal)]) }
        case .fds:
            for f in fds {
                t.append([String(f.fd), f.task, f.user, f.database, f.addr, i4(f.port), String(f.cancel), String(f.link),
                          f.clientEncoding, f.stdStrings, f.dateStyle, f.timeZone, f.password,
                          f.scramClientKey.map(byteaHex), f.scramServerKey.map(byteaHex)])
            }
        case .dnsHosts:
            for h in dnsHosts { t.append([h.hostname, String(h.ttl), h.addrs]) }
        case .dnsZones:
            for z in dnsZones { t.append([z.zonename, String(z.serial), i4(z.count)]) }
        case .hosts:
            for h in hosts {
                t.append([h.database, h.host, i4(h.port), h.targetSessionAttrs, h.role, h.state, i4(h.failures),
                          String(format3(h.retryIn)), h.lastError])
            }
        case .threads:
            for w in threads {
                t.append([i4(w.worker), i4(w.clients), i4(w.waitingClients), i4(w.servers), i4(w.activeServers),
                          i4(w.idleServers), i4(w.pools), String(format3(w.cpuSeconds)), String(w.serversMovedIn),
                          String(w.serversMovedOut), String(w.clientsMovedIn), String(w.clientsMovedOut), w.inUse ? "1" : "0"])
            }
        case .version:
            t.append([version])
        case .state:
            t.append(["active", pauseMode == .none ? "yes" : "no"])
            t.append(["paused", pauseMode == .pause ? "yes" : "no"])
            t.append(["suspended", pauseMode == .suspend ? "yes" : "no"])
            for row in restart.stateRows { t.append(row) }
        }
        return t
    }

    private var sortedPools: [AdminPoolRow] {
        pools.sorted { poolLess(($0.database, $0.user), ($1.database, $1.user)) }
    }

    /// Counters summed per database over consecutive pools in pool order (`admin_database_stats`).
    private var statsByDatabase: [(String, AdminStatCounters, AdminStatCounters)] {
        var out: [(String, AdminStatCounters, AdminStatCounters)] = []
        for p in sortedPools {
            if let last = out.last, last.0 == p.database {
                out[out.count - 1] = (last.0, last.1 &+ p.stats, last.2 &+ p.olderStats)
            } else {
                out.append((p.database, p.stats, p.olderStats))
            }
        }
        return out
    }

    /// Connections in PgBouncer's walk order: pools by (database, user), then each state list in
    /// `pool` order; then peer pools by id with `peer` states; then logging-in clients.
    private func orderedConnections(pool poolStates: [AdminConnectionState], peer peerStates: [AdminConnectionState],
                                    login: Bool) -> [AdminConnectionRow] {
        func rank(_ c: AdminConnectionRow) -> (Int, Int)? {
            switch c.owner {
            case .pool: return poolStates.firstIndex(of: c.state).map { (0, $0) }
            case .peer: return peerStates.firstIndex(of: c.state).map { (1, $0) }
            case .login: return login && c.state == .clLogin ? (2, 0) : nil
            }
        }
        let ranked = connections.enumerated().compactMap { i, c in rank(c).map { (c, $0, i) } }
        return ranked.sorted { a, b in
            if a.1.0 != b.1.0 { return a.1.0 < b.1.0 }
            switch (a.0.owner, b.0.owner) {
            case let (.pool(d1, u1), .pool(d2, u2)) where d1 != d2 || u1 != u2:
                return poolLess((d1, u1), (d2, u2))
            case let (.peer(p1), .peer(p2)) where p1 != p2:
                return p1 < p2
            default:
                return a.1.1 != b.1.1 ? a.1.1 < b.1.1 : a.2 < b.2
            }
        }.map { $0.0 }
    }

    private func connectionRow(_ c: AdminConnectionRow, state: String, debug: Bool) -> [String?] {
        let shownState = (c.link == nil && state == "active") ? "idle" : state
        var row: [String?] = [
            c.state.isServer ? "S" : "C", c.user ?? "(nouser)", c.database ?? "(nodb)", c.replication.rawValue,
            shownState, c.addr, i4(c.port), c.localAddr, i4(c.localPort), c.connectTime, c.requestTime,
            i4(c.waitUs / 1_000_000), i4(c.waitUs % 1_000_000), bool01(c.closeNeeded), c.ptr, c.link ?? "",
            String(c.remotePid), c.tls, c.applicationName, i4(c.preparedStatements), i4(c.id), bool01(c.pinned),
            i4(c.worker),
        ]
        if debug {
            row += [i4(c.recvPos), i4(c.pktPos), i4(c.pktRemain), i4(c.sendPos), "0", i4(c.pktAvail), i4(c.sendAvail)]
        }
        return row
    }
}

// MARK: - value formatting helpers

/// `%d` of a C int: the low 32 bits, signed.
private func i4<T: BinaryInteger>(_ v: T) -> String { String(Int32(truncatingIfNeeded: v)) }
private func bool01(_ b: Bool) -> String { b ? "1" : "0" }
/// `printf("%9d")`.
private func width9(_ v: Int) -> String {
    let s = i4(v)
    return s.utf8.count >= 9 ? s : String(repeating: " ", count: 9 - s.utf8.count) + s
}
private func byteaHex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = Array("\\x".utf8)
    for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
    return String(decoding: out, as: UTF8.self)
}
/// `strcmp(a, b) < 0` (unsigned bytes).
func strcmpLess(_ a: String, _ b: String) -> Bool { a.utf8.lexicographicallyPrecedes(b.utf8) }
private func poolLess(_ a: (String, String), _ b: (String, String)) -> Bool {
    a.0 != b.0 ? strcmpLess(a.0, b.0) : strcmpLess(a.1, b.1)
}

/// Seconds with millisecond precision (`0.250`), as a numeric column's text.
private func format3(_ v: Double) -> String {
    let ms = Int((max(0, v) * 1000).rounded())
    let frac = String(ms % 1000)
    return "\(ms / 1000)." + String(repeating: "0", count: 3 - frac.count) + frac
}
