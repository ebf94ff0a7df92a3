import Glibc
import CLibEV
import PgmuxCore

/// `worker_placement`: which loops take clients, and clients moving between loops between two
/// transactions (see `LoopBalancer` for the policy). Loop 0 decides once a second from each
/// loop's CPU time and client count (both read under `loadLock`, without stopping anyone); only
/// when clients must move does it stop the world, and then moves them as one loop would.
extension LoopGroup {
    /// Loop 0's thread, from its maintenance timer.
    func balanceClients(from me: EventLoop) {
        guard count > 1, me.index == 0 else { return }
        let t = me.now
        if let last = lastCPUSample, t - last.time < 1 { return }
        let (clocks, counts) = loadLock.withLock { (cpuClocks, load) }
        let cpu = clocks.map { $0.map(Self.threadCPUSeconds) ?? 0 }
        defer { lastCPUSample = (t, cpu) }
        guard let last = lastCPUSample else { return }
        let busy = zip(cpu, last.cpu).map { max(0, ($0 - $1) / (t - last.time)) }
        let moves = balancer.tick(placement: me.config.settings.workerPlacement, busy: busy, clients: counts)
        let inUse = balancer.inUse
        loadLock.withLock { loopsInUse = inUse }
        guard !moves.isEmpty else { return }
        withWorldStopped(from: me) {
            let ls = loops
            // Nothing moves while the pooler suspends, shuts down or hands its clients over.
            guard !ls.contains(where: { $0.suspended || $0.shuttingDown }),
                  me.takeoverSender.map({ $0.progress.phase == TakeoverProgress.Phase.none }) ?? true else { return }
            for m in moves { ls[m.from].moveClients(upTo: m.count, to: ls[m.to]) }
        }
    }

    /// A loop's thread reports its CPU clock once it runs (`LoopBalancer`'s busy figures).
    func loopStarted(_ index: Int, cpuClock: clockid_t?) {
        loadLock.withLock { cpuClocks[index] = cpuClock }
    }

    static func threadCPUSeconds(_ clock: clockid_t) -> Double {
        var ts = timespec()
        guard clock_gettime(clock, &ts) == 0 else { return 0 }
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

extension EventLoop {
    /// Moves up to `n` of this loop's clients that are between transactions to `target`, the
    /// world stopped.
    func moveClients(upTo n: Int, to target: EventLoop) {
        precondition(target !== self)
        let movable = clients.values.lazy.filter { self.canMove($0) }.prefix(n)
        for c in Array(movable) { move(c, to: target) }
    }

    /// Logged in, linked to no server, nothing read or to write, no state that lives on this loop
    /// only: a console client, a pinned or replication session, a LISTEN, an unfinished Parse.
    private func canMove(_ c: ClientConnection) -> Bool {
        guard c.state == .idle, c.server == nil, let pool = c.pool, c.adminRole == nil, c.login == nil, !c.pinned,
              c.replication == .none, c.inbuf.isEmpty, c.ownOut.isEmpty, !c.closeAfterFlush, !c.exemptFromSuspend,
              c.sessionBox?.oversizedParse == nil, !(pool.notificationsIfAny?.knows(c) ?? false) else { return false }
        return true
    }

    /// The client leaves this loop's books and joins `target`'s as if it had logged in there
    /// (same id, same cancel key, same TLS session); the application does not notice.
    private func move(_ c: ClientConnection, to target: EventLoop) {
        let from = c.pool!
        from.clientLeft(c, previous: .idle)
        clients[c.id] = nil
        login.handOverCount(of: c, to: target.login)
        c.rehome(to: target, read: clientReadable)
        target.clients[c.id] = c
        let pool = target.pool(database: from.databaseName, entry: from.database, user: c.user)
        // What a login on that loop would have taught its pool.
        if pool.scramPassThrough == nil { pool.scramPassThrough = from.scramPassThrough }
        if from.serverPasswordFromLogin && (pool.serverPassword == nil || pool.serverPasswordFromLogin) {
            pool.serverPassword = from.serverPassword
            pool.serverPasswordFromLogin = true
        }
        c.pool = pool
        pool.machine.clientJoined()
        c.params = target.interned(c.params)
        group.clientMoved(from: index, to: target.index)
        clientsMovedOut &+= 1
        target.clientsMovedIn &+= 1
        c.startReading()
    }
}
