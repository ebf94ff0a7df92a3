import Glibc
import CLibEV
import PgmuxCore

/// Everything one event loop owns: its libev loop, configuration, pools, connections, timers and
/// counters. There are no globals: the `workers` loops of a process run side by side, one thread
/// each, and meet only through their `LoopGroup`.
public final class EventLoop {
    let ev: OpaquePointer
    /// The loops of this process and what they share. Strong: the group does not own its loops.
    public let group: LoopGroup
    /// This loop's place in the group: 0 listens, handles signals and runs the metrics endpoint.
    public let index: Int
    /// Jobs and park requests from the other loops.
    let mailbox: Mailbox
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
    /// Connection ids are unique across loops: loop i of n hands out i + n, i + 2n, ...
    private var idCounter: UInt64 = 0
    private let idStride: UInt64
    /// Failing hosts and the roles hosts reported, shared by the pools of every loop (see
    /// `HostSelector`): read as a copy, changed in place under the group's lock.
    var hostHealth: HostHealth {
        get { group.hostHealth.lock.withLock { group.hostHealth.value } }
        _modify {
            group.hostHealth.lock.lock()
            defer { group.hostHealth.lock.unlock() }
            yield &group.hostHealth.value
        }
    }
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
    /// PBKDF2 results, so no login repeats the 4096-round derivation (the group's).
    let scramCache: SCRAMKeyCache
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
    /// TLS toward clients and toward PostgreSQL: the group's contexts (OpenSSL's SSL_CTX serves
    /// several threads), so a session resumes whatever loop accepts the reconnection.
    let tls: TLSContexts
    /// auth_query answers per user (the group's).
    let authQueryCache: AuthQueryCache
    /// Shared parameter dictionaries (see `interned`).
    private var parameterSets: Set<[String: String]> = []
    /// Pooler-wide names of protocol-level prepared statements (the group's).
    let preparedStatements: PreparedStatementRegistry
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
    /// Pools with an idle server to hand to another loop once it has been idle for
    /// `Pool.handOverGrace`, and the timer that wakes the loop for them.
    var handOversDue: [Pool] = []
    let handOverTimer = UnsafeMutablePointer<ev_timer>.allocate(capacity: 1)
    private var signals: [UnsafeMutablePointer<ev_signal>] = []
    /// Every connection's watchers. Declared last, so it outlives the other properties while the
    /// loop is destroyed (connections give their watchers back when freed; see `deinit`).
    let watchers = WatcherSlab()

    /// A loop of its own group, as the only one (tests and tools).
    public convenience init(config: Config, log: Log) throws {
        try self.init(config: config, log: log, group: LoopGroup(), index: 0, of: 1)
    }

    /// Loop `index` of the `count` loops of `group` (made in index order, see
    /// `LoopGroup.makeLoops`).
    init(config: Config, log: Log, group: LoopGroup, index: Int, of count: Int) throws {
        guard let ev = ev_loop_new(UInt32(EVFLAG_AUTO)) else { throw SocketError("ev_loop_new", 0) }
        self.ev = ev
        self.group = group
        self.index = index
        idCounter = UInt64(index)
        idStride = UInt64(count)
        mailbox = Mailbox(ev: ev)
        scramCache = group.scramCache
        authQueryCache = group.authQueryCache
        preparedStatements = group.preparedStatements
        tls = group.tls
        self.config = config
        self.log = log
        buffers = BufferPool(size: max(config.settings.pktBuf, 16384))
        maxPacketSize = config.settings.maxPacketSize
        refusesSimpleQuery = config.settings.disablePqexec
        trackedParameters = ParameterTracking.trackedSet(extra: config.settings.trackExtraParameters)
        check.initialize(to: ev_check())
        now = ev_now(ev)
        maintenance.initialize(to: ev_timer())
        handOverTimer.initialize(to: ev_timer())
        try loadAuthFile()
        if index == 0 { try tls.load(config.settings) }
        group.join(self)
        mailbox.start(self)
    }

    /// libev's time of the current iteration (`ev_now`), copied in when the iteration's callbacks
    /// begin. A stored field: the relay reads the clock several times per transaction, and each
    /// call into libev through the loop reference cost a retain/release pair around it.
    private(set) var now: Double = 0

    func nextID() -> UInt64 { idCounter &+= idStride; return idCounter }

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

    /// Loop 0: opens the listeners, installs timers and signal handlers, starts the other loops
    /// (which accept on the same sockets), and runs until shutdown; returns once all have stopped.
    public func run() throws {
        precondition(index == 0, "loop 0 runs the process")
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
        // Before their threads start: creating a thread orders these writes before its reads.
        for other in group.loops.dropFirst() { other.shareListeners(of: self) }
        startHousekeeping()
        group.runOthers()
        log.log("\(group.count) worker\(group.count == 1 ? "" : "s") running")
        systemd.ready()  // listening, pidfile written (as PgBouncer's "process up")
        ev_run(ev, 0)
        mailbox.stop()  // before waiting for the others: one of them may be stopping the world
        group.joinOthers()
        for l in listeners { l.close() }
        takeoverSender?.removeSocketFile()
    }

    /// Loops 1..n-1, on their own thread: serve until `stop`.
    func runWorker() {
        startHousekeeping()
        ev_run(ev, 0)
        mailbox.stop()
        for l in listeners { l.close() }
    }

    /// The check watcher (first callback of every iteration) and the maintenance timer.
    private func startHousekeeping() {
        var clock = clockid_t()
        if pthread_getcpuclockid(pthread_self(), &clock) == 0 { cpuClock = clock }
        group.loopStarted(index, cpuClock: cpuClock)
        let me = Unmanaged.passUnretained(self).toOpaque()
        pgmux_ev_check_init(check, loopCheck, me)
        pgmux_ev_set_max_priority(check)  // runs before every other callback of an iteration
        ev_check_start(ev, check)
        now = ev_now(ev)
        pgmux_ev_timer_init(maintenance, loopMaintenance, 1.0 / 3.0, 1.0 / 3.0, me)
        ev_timer_start(ev, maintenance)
    }

    /// This loop only; `LoopGroup.stopAll` stops the process.
    func stop() { ev_break(ev, Int32(EVBREAK_ALL)) }

    /// Jobs and park requests from other loops (`Mailbox`).
    func mailboxReady() {
        now = ev_now(ev)
        mailbox.drain(self)
    }

    /// Whether this loop's part of a safe shutdown is done, as last told to the group.
    private var reportedDrained = false
    /// This loop's thread has stopped the world (`LoopGroup.withWorldStopped`).
    var holdsWorld = false
    /// Idle servers other loops handed to this one, and this one to others (SHOW THREADS).
    var serversMovedIn: UInt64 = 0
    var serversMovedOut: UInt64 = 0
    /// Clients that came from other loops and left for them (`worker_placement`, SHOW THREADS).
    var clientsMovedIn: UInt64 = 0
    var clientsMovedOut: UInt64 = 0
    /// The CPU clock of the loop's thread, once it runs (SHOW THREADS).
    private var cpuClock: clockid_t?

    /// CPU time this loop's thread has used.
    var cpuSeconds: Double { cpuClock.map(LoopGroup.threadCPUSeconds) ?? 0 }

    /// Connections give their watchers back to `watchers` when freed: free them all while the
    /// loop is still whole.
    deinit {
        mailbox.stop()
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
            group.withWorldStopped(from: self) {
                for l in group.loops {
                    for s in Array(l.servers.values) { s.close(reason: "online restart finished", notifyClient: false) }
                }
            }
            group.stopAll(from: self)
            return
        }
        guard shuttingDown else { return }
        let drained: Bool
        if shutdownWaitsForClients {
            drained = !clients.values.contains(where: { $0.adminRole == nil })
        } else {
            drained = servers.values.allSatisfy({ $0.state != .active }) && clientsInTransaction == 0
        }
        guard drained != reportedDrained else { return }
        reportedDrained = drained
        if group.loopDrained(self, drained) {
            log.log(shutdownWaitsForClients ? "client connections dropped, exiting" : "server connections dropped, exiting")
            group.stopAll(from: self)
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
