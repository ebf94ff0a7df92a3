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
    /// Cancel requests for other processes of the peer group, per peer id (made on first use).
    var peerPools: [Int: PeerPool] = [:]
    var listeners: [Listener] = []
    var metrics: MetricsEndpoint?
    /// Closed connections, freed after the current loop iteration (never inside their callbacks).
    var graveyard: [Endpoint] = []
    private var idCounter: UInt64 = 0
    /// Servers per database and per user, for max_db_connections and max_user_connections.
    var serverCaps = ServerCaps()
    /// Failing hosts and the roles hosts reported, shared by the pools (see `HostSelector`).
    var hostHealth = HostHealth()
    /// Server host names, looked up without blocking; created at the first lookup, so that a
    /// configuration without host names never sets c-ares up.
    private(set) var resolverIfStarted: Resolver?
    var resolver: Resolver {
        if let r = resolverIfStarted { return r }
        let r = Resolver(loop: self)
        resolverIfStarted = r
        return r
    }
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
    /// systemd's Type=notify messages (nothing when not started by systemd).
    let systemd = SystemdNotifier()
    /// Runs the derivations the cache misses on a worker thread (its thread starts on first use).
    lazy var crypto = CryptoWorker(ev: ev)
    /// auth_type pam: PAM checks on worker threads (started on first use).
    lazy var pamWorker = BlockingAuthWorker(ev: ev)
    /// ldap: LDAP binds on worker threads (a server that never answers holds one until timeout).
    lazy var ldapWorker = BlockingAuthWorker(ev: ev)
    /// gss: accepting security contexts on worker threads.
    lazy var gssWorker = BlockingAuthWorker(ev: ev)
    /// TLS toward clients and toward PostgreSQL.
    let tls = TLSContexts()
    /// auth_query answers per user, reused for `authQueryCacheSeconds`.
    var authQueryCache: [String: (secret: String?, time: Double)] = [:]
    let authQueryCacheSeconds = 30.0
    /// Shared parameter dictionaries (see `interned`).
    private var parameterSets: Set<[String: String]> = []
    /// Pooler-wide names of protocol-level prepared statements.
    let preparedStatements = PreparedStatementRegistry()
    /// `pgmux -R`: the old process's listening sockets, taken before the loop runs.
    public var takeoverHandshake: TakeoverHandshake?
    /// Offers this process's sockets and clients to a successor (`pgmux -R`).
    var takeoverSender: TakeoverSender?
    /// Adopts the clients the old process hands over, after `takeoverHandshake`.
    var takeoverReceiver: TakeoverReceiver?
    /// What the restart signal (SIGURG) starts; nil when it cannot be started.
    public var successorCommand: SuccessorCommand?
    let successor = SuccessorLauncher()

    /// Last `returnIdleMemory` pass, and whether clients came or went since (their login state
    /// and buffers leave freed holes in the heap that only malloc_trim gives back).
    var lastMemoryTrim: Double = 0
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
        for sig in [SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGUSR1, SIGUSR2, SIGURG] {
            let w = UnsafeMutablePointer<ev_signal>.allocate(capacity: 1)
            w.initialize(to: ev_signal())
            pgmux_ev_signal_init(w, loopSignal, sig, me)
            ev_signal_start(ev, w)
            signals.append(w)
        }
        try openListeners()
        startTakeoverSockets()
        pgmux_ev_check_init(check, loopCheck, me)
        pgmux_ev_set_max_priority(check)  // runs before every other callback of an iteration
        ev_check_start(ev, check)
        now = ev_now(ev)
        pgmux_ev_timer_init(maintenance, loopMaintenance, 1.0 / 3.0, 1.0 / 3.0, me)
        ev_timer_start(ev, maintenance)
        systemd.ready()  // listening, pidfile written (as PgBouncer's "process up")
        ev_run(ev, 0)
        for l in listeners { l.close() }
        takeoverSender?.removeSocketFile()
    }

    func stop() { ev_break(ev, Int32(EVBREAK_ALL)) }

    /// Connections give their watchers back to `watchers` when freed: free them all while the
    /// loop is still whole.
    deinit {
        graveyard.removeAll()
        clients.removeAll()
        servers.removeAll()
        pools.removeAll()
        peerPools.removeAll()
        cancelForwarders.removeAll()
        metrics = nil
    }

    /// First callback of every iteration (the check watcher has the highest priority): takes the
    /// iteration's time, frees what the previous iteration closed, runs pending console waits.
    fileprivate func sweep() {
        now = ev_now(ev)
        if !graveyard.isEmpty { graveyard.removeAll(keepingCapacity: true) }
        admin.check()
        if let t = takeoverSender, t.progress.phase == .handingOver, t.handOver() {
            log.log("takeover: every client handed over (\(t.progress.clients) clients, \(t.progress.servers) servers), exiting")
            for s in Array(servers.values) { s.close(reason: "online restart finished", notifyClient: false) }
            stop()
            return
        }
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
