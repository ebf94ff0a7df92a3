import Glibc
import CLibEV
import PgmuxCore

/// The event loops of one process (`workers`, one thread each) and the one place where they
/// meet. Everything else in the shell is single-threaded: a loop's connections, pools, buffers
/// and timers are touched by its own thread only, with unchecked exclusivity and no locks.
///
/// Loops meet in exactly three ways, all defined here or in the small types named below:
///
/// 1. **Mailboxes** (`post(to:_:)`): a closure runs on another loop's thread, at the top of one of
///    its iterations. A job captures only values (descriptors, strings, value types, an OpenSSL
///    session nobody else holds), never an object of the posting loop. Used to hand an idle
///    server to the loop whose clients wait for it (`ServerTransfer`), and to tell the other
///    loops what one learned: a pool's login failed or works again, a host changed role or
///    address, a DNS answer arrived, a place freed up (a server closed, one was evicted).
/// 2. **Stopping the world** (`withWorldStopped(from:_:)`): the calling loop parks every other
///    loop at a safe point (between callbacks, in its mailbox callback) and waits until all are
///    parked; it may then read and change their state as if the process had one loop, libev
///    calls on their loops included (no other thread touches them meanwhile, and the semaphores
///    order the memory). Used where one answer needs every loop: the admin console, signals,
///    RELOAD, cancel requests for another loop's client, the metrics endpoint, the stats line;
///    and to move idle clients between loops (`worker_placement`, LoopGroup+Placement.swift): a
///    client object changes owner only then, whole, and belongs to its new loop alone afterwards.
///    Only one loop stops the world at a time; a loop waiting for its turn parks when asked,
///    so two stoppers never wait on each other.
/// 3. **Shared structures with their own lock**: `ServerBudget` (global pool and server limits),
///    `PoolShare` (who idles and who waits, per pool; a pool's login health and welcome),
///    `ClientCounts` (max_client_conn and the client caps), the prepared-statement registry,
///    the SCRAM key cache, the auth_query cache, host health and the DNS cache. Their critical
///    sections are a few dictionary operations and never call out. The TLS contexts are shared
///    too (OpenSSL's SSL_CTX serves several threads) and replaced only with the world stopped.
///
/// With `workers = 1` no mailbox job is ever posted and no world is stopped.
public final class LoopGroup: @unchecked Sendable {
    /// The loops, in index order. Unowned: `Main` (or a test) owns them for as long as loop 0
    /// runs, and each loop keeps its group alive.
    private var members: [Unmanaged<EventLoop>] = []
    var loops: [EventLoop] { members.map { $0.takeUnretainedValue() } }
    var count: Int { members.count }
    func loop(_ index: Int) -> EventLoop { members[index].takeUnretainedValue() }

    let budget = ServerBudget()
    let clientCounts = ClientCounts()
    let preparedStatements = PreparedStatementRegistry()
    /// PBKDF2 results, so no login on any loop repeats the 4096-round derivation.
    let scramCache = SCRAMKeyCache()
    let authQueryCache = AuthQueryCache()
    /// What the loops learned about server hosts (failures, roles), behind `EventLoop.hostHealth`.
    let hostHealth = SharedHostHealth()
    let dns = SharedDNS()
    /// Loaded by loop 0, and again (the world stopped) by RELOAD and SET.
    let tls = TLSContexts()
    /// Pool shares by pool key (see `PoolShare`), made when a loop first makes the pool.
    private let sharesLock = Lock()
    private var shares: [String: PoolShare] = [:]
    /// Held by the loop that stops the world.
    private let stopper = Lock()
    /// Threads of loops 1..n-1.
    private var threads: [pthread_t] = []
    /// Client connections per loop, for spreading new ones (`lessLoadedLoop`); the loops that
    /// take new clients (`LoopBalancer.inUse`) and each loop's CPU clock, for loop 0's balancing
    /// (`balanceClients`).
    let loadLock = Lock()
    var load: [Int] = []
    var loopsInUse = 1
    var cpuClocks: [clockid_t?] = []
    /// Loop 0's thread only: the placement policy and the CPU times it last read.
    var balancer = LoopBalancer(loops: 1, placement: .load)
    var lastCPUSample: (time: Double, cpu: [Double])?
    /// Loops whose shutdown condition holds (see `EventLoop.sweep`).
    private let drainedLock = Lock()
    private var drained: Set<Int> = []
    /// Some loop freed memory since loop 0 last gave the heap's free pages back (see
    /// `EventLoop.returnIdleMemory`).
    private let heapLock = Lock()
    private var heapTrimWanted = false

    public init() {}

    /// Makes `workers` loops (the configuration's `workers`, `auto` being the online CPUs) of one
    /// group; the caller keeps them.
    public static func makeLoops(config: Config, log: Log) throws -> [EventLoop] {
        let n = config.settings.workers.resolved(onlineCPUs: sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        let group = LoopGroup()
        var loops: [EventLoop] = []
        for i in 0..<n { loops.append(try EventLoop(config: config, log: log, group: group, index: i, of: n)) }
        group.balancer = LoopBalancer(loops: n, placement: config.settings.workerPlacement)
        group.loopsInUse = group.balancer.inUse
        return loops
    }

    func join(_ loop: EventLoop) {
        precondition(loop.index == members.count)
        members.append(Unmanaged.passUnretained(loop))
        load.append(0)
        cpuClocks.append(nil)
    }

    /// A client connection joined (+1) or left (-1) loop `index`.
    func clientLoad(_ index: Int, _ delta: Int) {
        guard members.count > 1 else { return }
        loadLock.withLock { load[index] += delta }
    }

    /// A client moved between loops, the world stopped (`EventLoop.moveClients`).
    func clientMoved(from: Int, to: Int) {
        loadLock.withLock { load[from] -= 1; load[to] += 1 }
    }

    /// Where a connection accepted by loop `index` goes instead: the least loaded loop in use,
    /// when loop `index` is not in use or has at least two client connections more.
    func lessLoadedLoop(than index: Int) -> Int? {
        guard members.count > 1 else { return nil }
        return loadLock.withLock {
            guard let least = (0..<loopsInUse).min(by: { load[$0] < load[$1] }) else { return nil }
            return index >= loopsInUse || load[index] >= load[least] + 2 ? least : nil
        }
    }

    /// A loop freed memory worth giving back to the kernel.
    func wantHeapTrim() {
        heapLock.withLock { heapTrimWanted = true }
    }

    /// Whether a loop asked for a heap trim since the last call (which clears the request).
    func takeHeapTrim() -> Bool {
        heapLock.withLock {
            defer { heapTrimWanted = false }
            return heapTrimWanted
        }
    }

    func share(for key: String) -> PoolShare? {
        guard members.count > 1 else { return nil }
        return sharesLock.withLock {
            if let s = shares[key] { return s }
            let s = PoolShare(loops: members.count)
            shares[key] = s
            return s
        }
    }

    // MARK: running

    /// Loop 0 runs on the calling thread once it listens; the others each on a thread of their
    /// own, accepting on loop 0's sockets. Returns when loop 0 stops (after the others).
    func runOthers() {
        for loop in loops.dropFirst() {
            var thread = pthread_t()
            let context = Unmanaged.passRetained(loop).toOpaque()
            let rc = pthread_create(&thread, nil, { raw in
                guard let raw else { return nil }
                let loop = Unmanaged<EventLoop>.fromOpaque(raw).takeRetainedValue()
                loop.runWorker()
                return nil
            }, context)
            if rc != 0 {
                Unmanaged<EventLoop>.fromOpaque(context).release()
                loop.log.error("cannot start worker \(loop.index): \(String(cString: strerror(rc)))")
                continue
            }
            threads.append(thread)
        }
    }

    /// Every loop stops (SIGQUIT, SHUTDOWN, the end of a safe shutdown); loop 0's thread waits
    /// for the others.
    func stopAll(from me: EventLoop) {
        for loop in loops where loop !== me { post(to: loop.index) { $0.stop() } }
        me.stop()
    }

    func joinOthers() {
        for t in threads { pthread_join(t, nil) }
        threads.removeAll()
    }

    /// A loop's part of a safe shutdown is done (or undone); true for the call that completes
    /// every loop's (the caller then stops them all).
    func loopDrained(_ loop: EventLoop, _ isDrained: Bool) -> Bool {
        drainedLock.withLock {
            if isDrained { drained.insert(loop.index) } else { drained.remove(loop.index) }
            return isDrained && drained.count == members.count
        }
    }

    // MARK: mailboxes

    /// Runs `job` on loop `index`'s thread. The job must capture values only (see the type's doc).
    func post(to index: Int, _ job: @escaping (EventLoop) -> Void) {
        loop(index).mailbox.post(MailboxJob(run: job))
    }

    // MARK: stopping the world

    /// Runs `body` on the calling loop's thread while every other loop is parked.
    /// Reentrant: `body` may stop the world again (a console RELOAD).
    func withWorldStopped<R>(from me: EventLoop, _ body: () throws -> R) rethrows -> R {
        guard members.count > 1, !me.holdsWorld else { return try body() }
        while !stopper.tryLock() {
            me.mailbox.parkIfAsked()  // another loop is stopping the world: let it
            sched_yield()
        }
        defer { stopper.unlock() }
        // A loop that has stopped running (shutdown) is not waited for: nothing runs there.
        let others = loops.filter { $0 !== me && $0.mailbox.askToPark() }
        for l in others { l.mailbox.waitUntilParked() }
        defer { for l in others { l.mailbox.unpark() } }
        me.holdsWorld = true
        defer { me.holdsWorld = false }
        return try body()
    }

    /// `body` on every loop, the world stopped (PAUSE, KILL, signals...), loop 0 last: the loops
    /// watching its sockets stop doing so before it closes them (shutdown).
    func everywhere(from me: EventLoop, _ body: (EventLoop) -> Void) {
        withWorldStopped(from: me) { for l in loops.reversed() { body(l) } }
    }
}

/// The DNS cache and zone serials of the whole process (see `Resolver`).
final class SharedDNS: @unchecked Sendable {
    let lock = Lock()
    var cache = DNSCache()
    var zoneSerials = DNSZoneSerials()

    /// SHOW DNS_HOSTS, DNS_ZONES and the dns_* counts of SHOW LISTS.
    func fill(_ snap: inout AdminSnapshot, now: Double) {
        lock.withLock {
            for (name, r) in cache.records.sorted(by: { $0.key < $1.key }) {
                snap.dnsHosts.append(AdminDNSHostRow(hostname: name, ttl: UInt64(max(0, r.expires - now)),
                                                     addrs: r.addresses.joined(separator: ",")))
            }
            for zone in cache.zones {
                let names = cache.records.keys.filter { DNSCache.zone(of: $0) == zone }.count
                snap.dnsZones.append(AdminDNSZoneRow(zonename: zone, serial: UInt64(zoneSerials.serials[zone] ?? 0), count: names))
            }
            snap.lists.dnsNames = cache.records.count
            snap.lists.dnsZones = snap.dnsZones.count
            snap.lists.dnsQueries = cache.pendingCount
        }
    }
}

/// `HostHealth` of the whole process: a host that fails fails for every loop.
final class SharedHostHealth: @unchecked Sendable {
    let lock = Lock()
    var value = HostHealth()
}

/// A closure for another loop (see `LoopGroup`): it captures values only, so it may cross.
struct MailboxJob: @unchecked Sendable {
    let run: (EventLoop) -> Void
}

/// One loop's inbox: jobs and park requests from other loops, announced with `ev_async_send`
/// (the one libev call that is safe from another thread).
final class Mailbox: @unchecked Sendable {
    private let lock = Lock()
    private var jobs: [MailboxJob] = []
    private var parkAsked = false
    /// The loop has stopped running: nobody waits for it to park any more.
    private var closed = false
    private let parked = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)
    private let resumed = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)
    private let async = UnsafeMutablePointer<ev_async>.allocate(capacity: 1)
    private let ev: OpaquePointer
    private var started = false

    init(ev: OpaquePointer) {
        self.ev = ev
        sem_init(parked, 0, 0)
        sem_init(resumed, 0, 0)
        async.initialize(to: ev_async())
    }

    /// Loop thread, before other threads know the loop.
    func start(_ owner: EventLoop) {
        pgmux_ev_async_init(async, mailboxReady, Unmanaged.passUnretained(owner).toOpaque())
        ev_async_start(ev, async)
        started = true
    }

    /// Loop thread, once its loop has stopped running: a stopper that asked before is answered
    /// (and this thread waits until it is done), later ones do not wait for this loop.
    func stop() {
        let asked = lock.withLock { () -> Bool in
            closed = true
            defer { parkAsked = false }
            return parkAsked
        }
        if asked {
            sem_post(parked)
            while sem_wait(resumed) != 0 {}
        }
        if started { ev_async_stop(ev, async) }
        started = false
    }

    deinit {
        sem_destroy(parked)
        sem_destroy(resumed)
        parked.deallocate()
        resumed.deallocate()
        async.deallocate()
    }

    func post(_ job: MailboxJob) {
        lock.withLock { jobs.append(job) }
        ev_async_send(ev, async)
    }

    /// False when the loop no longer runs (it will not park).
    func askToPark() -> Bool {
        let open = lock.withLock { () -> Bool in
            if closed { return false }
            parkAsked = true
            return true
        }
        if open { ev_async_send(ev, async) }
        return open
    }

    func waitUntilParked() { while sem_wait(parked) != 0 {} }
    func unpark() { sem_post(resumed) }

    /// Loop thread: parks until the stopper is done, when one asked.
    func parkIfAsked() {
        let asked = lock.withLock { () -> Bool in
            defer { parkAsked = false }
            return parkAsked
        }
        guard asked else { return }
        sem_post(parked)
        while sem_wait(resumed) != 0 {}
    }

    /// Loop thread, from the ev_async callback.
    func drain(_ loop: EventLoop) {
        parkIfAsked()
        let pending = lock.withLock { () -> [MailboxJob] in
            defer { jobs.removeAll() }
            return jobs
        }
        for job in pending { job.run(loop) }
    }
}

private func mailboxReady(_ l: OpaquePointer?, _ w: UnsafeMutablePointer<ev_async>?, _ revents: Int32) {
    guard let w, let ctx = w.pointee.data else { return }
    Unmanaged<EventLoop>.fromOpaque(ctx)._withUnsafeGuaranteedRef { $0.mailboxReady() }
}
