/// A client or server as a pool's state machine knows it: a value the shell chooses (pgmux uses
/// the connection object's address), stored and compared, never dereferenced. A plain integer,
/// so queueing and lending cost no reference counting.
public struct PoolMember: Hashable, Sendable {
    public let raw: UInt
    public init(_ raw: UInt) { self.raw = raw }
}

/// The decisions of one (database, user) pool, without sockets or clocks: which clients wait and
/// in what order, which servers are idle, how many are lent or being opened, whether another may
/// be opened (pool_size, reserve_pool_size after reserve_pool_timeout, the login backoff), pause.
/// The shell reports events (a client asks for a server, a server is released, logs in, closes,
/// a login fails) and carries out the small action each one returns.
///
/// Counting mirrors the shell's server states: `connecting` until the login completes, `active`
/// while lent to a client, running the pooler's own query or waiting for cancels to land, and
/// `idle` while in the idle list. The shell vets idle servers it is about to reuse (lifetime,
/// configuration change, server_check_delay) through an `IdleVerdict` query, and checks the
/// limits across pools (max_db_connections, max_user_connections: `ServerCaps`) after `openDecision`.
public struct PoolStateMachine: Sendable {
    public struct Limits: Equatable, Sendable {
        /// pool_size, reserve_pool_size, min_pool_size.
        public var size: Int
        public var reserveSize: Int
        public var minSize: Int
        /// reserve_pool_timeout: how long the first client must have waited before the reserve
        /// may be used.
        public var reserveTimeout: Double
        /// server_round_robin: idle servers are reused least recently used first instead of most
        /// recently used first.
        public var roundRobin: Bool

        public init(size: Int, reserveSize: Int, minSize: Int, reserveTimeout: Double, roundRobin: Bool) {
            self.size = size
            self.reserveSize = reserveSize
            self.minSize = minSize
            self.reserveTimeout = reserveTimeout
            self.roundRobin = roundRobin
        }
    }

    /// PAUSE in effect for this pool. `refusing`: paused while shutting down, so that a client
    /// asking for a server is told so instead of queued.
    public enum Pause: Equatable, Sendable { case running, paused, refusing }

    /// The shell's answer about an idle server about to be reused.
    public enum IdleVerdict: Equatable, Sendable {
        case ready
        /// Idle longer than server_check_delay: server_check_query runs before a client gets it.
        case needsCheck
        /// Past server_lifetime or marked by a configuration change: it must be closed.
        case stale
    }

    /// What a client's request for a server leads to.
    public enum RequestAction: Equatable, Sendable {
        /// Link the client to this idle server.
        case lend(server: PoolMember)
        /// The client is queued behind this idle server's health check, whose release serves it.
        case healthCheck(server: PoolMember)
        /// Close this idle server (taken out of the idle list), then ask again.
        case closeStale(server: PoolMember)
        /// Queued while paused: nothing opens.
        case queuedWhilePaused
        /// Queued: open servers for the queue.
        case queued
        /// Paused while shutting down: tell the client, do not queue it.
        case refuse
        /// check_fast_fail: logins are failing and no server is left to wait for.
        case fastFail
    }

    /// What to do with a server back from a client, a pooler query, cancels, or its login.
    public enum ReleaseAction: Equatable, Sendable {
        /// Lend it to this waiting client (taken out of the queue).
        case lend(client: PoolMember)
        /// Run the oldest queued auth_query on it.
        case serveLookup
        /// Keep it in the idle list.
        case keepIdle
        /// It may not be reused: close it, then open servers for the queue.
        case close
    }

    /// What an auth_query lookup leads to.
    public enum LookupAction: Equatable, Sendable {
        /// Run it on this idle server.
        case serve(server: PoolMember)
        /// Close this idle server (taken out of the idle list), then ask again.
        case closeStale(server: PoolMember)
        /// Queued: open servers for it.
        case queued
    }

    /// What RESUME does next for this pool's queue.
    public enum ResumeAction: Equatable, Sendable {
        case lend(server: PoolMember, client: PoolMember)
        /// Close this idle server (taken out of the idle list), then ask again.
        case closeStale(server: PoolMember)
        /// Nothing more to lend: open servers for what still waits.
        case done
    }

    /// Whether a server may be opened now, as far as this pool is concerned.
    public enum OpenDecision: Equatable, Sendable {
        case no
        case yes
        /// Only because the first waiting client has waited reserve_pool_timeout.
        case fromReserve(firstWaiter: PoolMember)
    }

    /// Where a closed server was counted.
    public enum Slot: Equatable, Sendable { case connecting, active, idle, uncounted }

    /// Which queue a leaving client was in.
    public enum Queue: Equatable, Sendable { case none, server, welcome }

    /// How a connect or login failed: `transport` and `rejected` as `ServerConnection.LoginFailure`;
    /// `startingUp` is 57P03, retried without backoff and failing no one.
    public enum LoginFailure: Equatable, Sendable { case transport, rejected, startingUp }

    /// Everyone failed with a refused login (PgBouncer's kill_pool_logins): clients waiting for
    /// the first login's welcome, then clients waiting for a server, in order; and how many
    /// auth_query lookups (the shell holds them) to answer with the refusal.
    public struct KilledLogins: Equatable, Sendable {
        public var clients: [PoolMember]
        public var lookups: Int
    }

    @usableFromInline
    struct Waiter: Sendable {
        @usableFromInline var client: PoolMember
        @usableFromInline var since: Double
    }

    public var limits: Limits
    public private(set) var pause: Pause = .running
    /// Least recently released first.
    public private(set) var idle: [PoolMember] = []
    @usableFromInline private(set) var waiting = FIFOQueue<Waiter>()
    /// Clients logged in before any server of this pool has: they wait for its ParameterStatus set.
    @usableFromInline private(set) var welcomeWaiters: [PoolMember] = []
    /// A server of this pool has logged in (its parameters are the pool's welcome).
    @usableFromInline private(set) var hasWelcome = false
    /// auth_query lookups waiting for a server (the shell keeps their callbacks in this order).
    public private(set) var pendingLookups = 0
    public private(set) var active = 0
    public private(set) var connecting = 0
    /// Logged-in clients.
    public private(set) var clients = 0
    /// PgBouncer's `last_login_failed`: the last connect or login failed and none has succeeded
    /// since. Clients that would have to wait for a new server are refused (check_fast_fail).
    public private(set) var loginFailing = false
    public private(set) var backoff = LoginBackoff()

    public init(limits: Limits) {
        self.limits = limits
    }

    /// Servers that exist or are being opened.
    @inlinable public var serverCount: Int { idle.count + active + connecting }
    public var waitingCount: Int { waiting.count }
    /// The client a server opened now would serve first: the welcome's waiters, then the queue's.
    public var firstWaiter: PoolMember? { welcomeWaiters.first ?? waiting.first?.client }
    /// When the longest-waiting client began to wait.
    public var oldestWaitStart: Double? { waiting.first?.since }

    /// Servers wanted beyond those being opened: one per waiting client and lookup, and one for
    /// the welcome while no server has logged in yet. Unlike PgBouncer (one connect in flight per
    /// pool), a cold pool under a burst then fills in one round trip.
    @inlinable public var serversWanted: Int {
        waiting.count + pendingLookups + (!hasWelcome && !welcomeWaiters.isEmpty ? 1 : 0) - connecting
    }

    /// Someone waits for a server (after a close, more may have to be opened).
    private var hasDemand: Bool { !waiting.isEmpty || (!hasWelcome && !welcomeWaiters.isEmpty) }

    /// min_pool_size wants another server: as PgBouncer's janitor, within pool_size and only for
    /// pools that have clients or belong to a database with a forced user.
    /// `total`: the servers of this pool on every event loop (this machine's own count with one).
    public func wantsMinimumServer(forcedUser: Bool, total: Int) -> Bool {
        (clients > 0 || forcedUser) && total < limits.minSize && total < limits.size
    }

    /// Idle servers to close after pool_size or reserve_pool_size went down (RELOAD, SET), least
    /// recently used first, as PgBouncer's check_pool_size. `total` as in `wantsMinimumServer`.
    public func excessIdle(total: Int) -> ArraySlice<PoolMember> {
        idle.prefix(max(0, total - (limits.size + limits.reserveSize)))
    }

    // MARK: clients

    public mutating func clientJoined() { clients += 1 }

    /// A logged-in client left; it is taken out of the queue it was in.
    public mutating func clientLeft(_ client: PoolMember, from queue: Queue) {
        switch queue {
        case .server: waiting.remove { $0.client == client }
        case .welcome: welcomeWaiters.removeAll { $0 == client }
        case .none: break
        }
        clients -= 1
    }

    /// A client logged in before any server has: it waits for the welcome, unless logins fail.
    /// True when it was queued (the shell then opens servers), false for check_fast_fail.
    public mutating func awaitWelcome(_ client: PoolMember) -> Bool {
        if loginFailing { return false }
        welcomeWaiters.append(client)
        return true
    }

    /// A logged-in client has a request (`since`: when it began to wait). An idle server is
    /// reused most recently released first (least with server_round_robin), unless `vet` finds
    /// it stale or due for a check.
    public mutating func clientRequests(_ client: PoolMember, since: Double,
                                        vet: (PoolMember) -> IdleVerdict) -> RequestAction {
        switch pause {
        case .refusing: return .refuse
        case .paused:
            waiting.append(Waiter(client: client, since: since))
            return .queuedWhilePaused
        case .running: break
        }
        if let server = popIdle() {
            switch vet(server) {
            case .stale: return .closeStale(server: server)
            case .needsCheck:
                waiting.append(Waiter(client: client, since: since))
                active += 1
                return .healthCheck(server: server)
            case .ready:
                active += 1
                return .lend(server: server)
            }
        }
        if loginFailing && active == 0 { return .fastFail }
        waiting.append(Waiter(client: client, since: since))
        return .queued
    }

    // MARK: servers

    /// A lent server is free again (its client left or finished, or the pooler's query, or the
    /// last cancel for it, is done). `stale`: it may not be reused.
    public mutating func serverReleased(_ server: PoolMember, stale: Bool) -> ReleaseAction {
        active -= 1
        return place(server, stale: stale)
    }

    /// A server's login completed: logins work again, the welcome exists. Returns the clients
    /// that waited for it, to be greeted; then `loggedInServerReady` places the server.
    public mutating func loginSucceeded() -> [PoolMember] {
        connecting -= 1
        loginFailing = false
        backoff.reset()
        hasWelcome = true
        defer { welcomeWaiters.removeAll() }
        return welcomeWaiters
    }

    /// The server of `loginSucceeded`, once its waiters are greeted.
    public mutating func loggedInServerReady(_ server: PoolMember, stale: Bool) -> ReleaseAction {
        place(server, stale: stale)
    }

    /// A pending lookup before a waiting client (a client's login may depend on it), waiting
    /// clients unless paused, else the idle list.
    private mutating func place(_ server: PoolMember, stale: Bool) -> ReleaseAction {
        if stale { return .close }
        if pendingLookups > 0 {
            pendingLookups -= 1
            active += 1
            return .serveLookup
        }
        if pause == .running, let next = waiting.popFirst() {
            active += 1
            return .lend(client: next.client)
        }
        idle.append(server)
        return .keepIdle
    }

    /// Looks up a user's secret with auth_query. Idle servers are not health-checked for it, and
    /// pause does not hold it back (a login waits on it).
    public mutating func lookupRequested(vet: (PoolMember) -> IdleVerdict) -> LookupAction {
        if let server = popIdle() {
            if vet(server) == .stale { return .closeStale(server: server) }
            active += 1
            return .serve(server: server)
        }
        pendingLookups += 1
        return .queued
    }

    /// After RESUME: idle servers go to waiting clients (without health checks), first come
    /// first served.
    public mutating func resumeNext(vet: (PoolMember) -> IdleVerdict) -> ResumeAction {
        guard pause == .running, !waiting.isEmpty, let server = popIdle() else { return .done }
        if vet(server) == .stale { return .closeStale(server: server) }
        guard let next = waiting.popFirst() else { return .done }
        active += 1
        return .lend(server: server, client: next.client)
    }

    /// Another event loop's server of this pool logged in: its parameters are the welcome here
    /// too, so clients log in without waiting for a server of this loop.
    public mutating func welcomeKnown() { hasWelcome = true }

    /// A server is being opened (its connect has started).
    public mutating func connectStarted() { connecting += 1 }

    /// A server that arrives lent to its client: an online restart moves a session-pooled client
    /// together with its server.
    public mutating func serverArrivedLent() {
        active += 1
        hasWelcome = true
    }

    /// A server closed. True when clients still wait, so servers should be opened.
    public mutating func serverClosed(_ server: PoolMember, from slot: Slot) -> Bool {
        switch slot {
        case .connecting: connecting -= 1
        case .active: active -= 1
        case .idle: idle.removeAll { $0 == server }
        case .uncounted: break
        }
        return hasDemand
    }

    public mutating func setPause(_ p: Pause) { pause = p }

    /// Whether this pool may open a server at `now`: after a failure, one at a time and once the
    /// retry delay has passed; within pool_size, or pool_size + reserve_pool_size once the first
    /// waiting client has waited reserve_pool_timeout.
    ///
    /// Mutating although it changes nothing: the shell asks on every queued request, and a
    /// non-mutating call copied the whole machine out of its pool, retaining and releasing its
    /// arrays (callgrind, pgbench -S with 8 clients on a pool of 2: 4% more instructions in all).
    ///
    /// `total`: the servers of this pool on every event loop, which the limits are about (with
    /// several loops the shell asks under the lock of `ServerBudget`, whose count this is).
    @inlinable public mutating func openDecision(now: Double, total: Int) -> OpenDecision {
        if backoff.consecutiveFailures > 0 {
            if connecting > 0 || !backoff.mayAttempt(at: now) { return .no }
        }
        var limit = limits.size
        var reserveFor: PoolMember?
        if let first = waiting.first, limits.reserveSize > 0, now - first.since >= limits.reserveTimeout {
            limit += limits.reserveSize
            if total >= limits.size { reserveFor = first.client }
        }
        guard total < limit else { return .no }
        return reserveFor.map { .fromReserve(firstWaiter: $0) } ?? .yes
    }

    /// `openDecision` for a pool that lives on one loop only.
    @inlinable public mutating func openDecision(now: Double) -> OpenDecision {
        openDecision(now: now, total: serverCount)
    }

    /// Takes the server idle longest (`idle.first`) out of this machine, uncounted, to go to
    /// another event loop whose clients wait for it (its pool there adopts it); nil when none
    /// is idle or this pool's own clients wait. The longest idle: the one this loop's own
    /// clients would reuse last (LIFO), and the one the shell's hand-over grace is judged on.
    public mutating func handOverIdle() -> PoolMember? {
        guard waiting.isEmpty, !idle.isEmpty else { return nil }
        return idle.removeFirst()
    }

    // MARK: login failures

    /// A connect or login failed at `now` (the attempt began at `attemptStarted`; `retryBase` is
    /// server_login_retry). A refused login fails everyone waiting when no usable server is left
    /// (or none ever logged in): the returned clients and lookups, taken out of their queues.
    public mutating func loginFailed(_ failure: LoginFailure, now: Double, attemptStarted: Double,
                                     retryBase: Double) -> KilledLogins? {
        backoff.failed(at: now, attemptStarted: attemptStarted, transient: failure == .startingUp, base: retryBase)
        guard failure != .startingUp else { return nil }
        loginFailing = true
        guard failure == .rejected, !hasWelcome || idle.count + active == 0 else { return nil }
        let killed = KilledLogins(clients: welcomeWaiters + waiting.drain().map(\.client), lookups: pendingLookups)
        welcomeWaiters.removeAll()
        pendingLookups = 0
        return killed
    }

    /// The login health another event loop's machine of the same pool reached: failures and
    /// successes there hold here too (one backoff, one cached error per pool).
    public mutating func adoptLoginState(backoff: LoginBackoff, failing: Bool) {
        self.backoff = backoff
        loginFailing = failing
    }

    /// Another loop's login of this pool was refused: those waiting here fail too, unless this
    /// loop still has a usable server (as `loginFailed`). nil when none are failed.
    public mutating func failWaitersAfterRejection() -> KilledLogins? {
        guard !hasWelcome || idle.count + active == 0 else { return nil }
        guard !welcomeWaiters.isEmpty || !waiting.isEmpty || pendingLookups > 0 else { return nil }
        let killed = KilledLogins(clients: welcomeWaiters + waiting.drain().map(\.client), lookups: pendingLookups)
        welcomeWaiters.removeAll()
        pendingLookups = 0
        return killed
    }

    /// Forgets past failures (RELOAD with a changed database entry or password).
    public mutating func resetLoginBackoff() {
        backoff.reset()
        loginFailing = false
    }

    // MARK: idle list

    private mutating func popIdle() -> PoolMember? {
        if idle.isEmpty { return nil }
        return limits.roundRobin ? idle.removeFirst() : idle.removeLast()
    }
}
