import Glibc
import COpenSSL
import CLibEV
import PgmuxCore

/// An idle server on its way from one loop to another (see `Pool.balance`): its socket, TLS
/// session and session state, as values. Whoever holds it owns the socket.
struct ServerTransfer: @unchecked Sendable {
    let poolKey: String
    let database: String
    let user: String
    let fd: Int32
    let ssl: OpaquePointer?
    let address: Socket.Address
    let localAddress: Socket.Address
    let host: ServerHost
    let connectTime: Double
    let lastUsed: Double
    let backendKey: UInt64
    let params: [String: (name: String, value: String)]
    let reportedOrder: [String]
    let paramsInSync: [String: String]?
    let sessionSettings: SessionSettings
    let sessionDirty: Bool
    let statementCache: ServerStatementCache
}

extension ServerConnection {
    /// Whether this idle server can go to another loop now: nothing half-read or half-written.
    var transferable: Bool {
        state == .idle && inbuf.isEmpty && ownOut.isEmpty && !closeNeeded && cancelsInFlight == 0
    }

    /// Leaves this loop for another: the endpoint closes without closing the socket.
    func detachForTransfer() -> ServerTransfer {
        let pool = self.pool
        let (fd, ssl) = (self.fd, self.ssl)
        let t = ServerTransfer(poolKey: pool.key, database: pool.database.dbname, user: pool.serverUser, fd: fd,
                               ssl: ssl, address: address, localAddress: localAddress, host: host,
                               connectTime: connectTime, lastUsed: lastUsed, backendKey: backendKey, params: params,
                               reportedOrder: reportedOrder, paramsInSync: paramsInSync,
                               sessionSettings: sessionSettings, sessionDirty: sessionDirty,
                               statementCache: statementCache)
        state = .closed
        _ = releaseSocket()
        loop.serverLeft(self)
        return t
    }
}

extension Pool {
    /// With several loops, after every change of this pool's idle or waiting figures: publish
    /// them, then hand an idle server to a loop whose clients wait, or ask a loop that idles one
    /// for it when this loop's clients wait for a server the limits do not let it open.
    ///
    /// The figures are published when one of them becomes zero or stops being zero (what the
    /// other loops decide on), otherwise at most once per millisecond: under steady load the
    /// lock is not taken on every transaction.
    @inline(__always)
    func balance() {
        guard isShared else { return }
        let idleNow = machine.idle.count > 0, waitingNow = machine.waitingCount > 0
        guard idleNow != publishedIdle || waitingNow != publishedWaiting || loop.now - publishedAt >= 0.001 else { return }
        publishedIdle = idleNow
        publishedWaiting = waitingNow
        publishedAt = loop.now
        withShare { balance($0) }
    }

    private func balance(_ share: PoolShare) {
        let me = loop.index
        let (waitingLoop, idleLoop) = share.publish(loop: me, idle: machine.idle.count, waiting: machine.waitingCount,
                                                    oldestWait: machine.oldestWaitStart)
        if let target = waitingLoop, let server = serverToHandOver() {
            guard loop.now >= server.lastUsed + Pool.handOverGrace else {
                loop.handOverLater(self, at: server.lastUsed + Pool.handOverGrace)
                return
            }
            guard let member = machine.handOverIdle() else { return }
            send(member.server, to: target)
            _ = share.publish(loop: me, idle: machine.idle.count, waiting: machine.waitingCount,
                              oldestWait: machine.oldestWaitStart)
        } else if let source = idleLoop, machine.serversWanted > pullsInFlight {
            pullsInFlight += 1
            let key = self.key
            loop.group.post(to: source) { $0.pools[key]?.giveIdle(to: me) }
        }
    }

    /// A server goes to another loop only once it has been idle this long. This loop's own
    /// clients reuse a server released a moment ago far more cheaply than a move costs (two
    /// epoll changes, a wake-up of the other loop), and under even load, where each loop's idle
    /// list empties and fills all the time, handing servers over at once moved one every few
    /// dozen transactions (`pgbench -S -c 50`, workers = 2) with no client the better for it.
    static let handOverGrace = 0.002

    /// The idle server `machine.handOverIdle` would give away (the one idle longest), when this
    /// loop's clients do not wait and it can leave now.
    private func serverToHandOver() -> ServerConnection? {
        guard machine.waitingCount == 0, let server = machine.idle.first?.server, server.transferable else { return nil }
        return server
    }

    /// `handOverGrace` after a deferred hand-over: publish again, and hand the server over if
    /// another loop's clients still wait and no client of this loop has taken it.
    func handOverIfStillWanted() {
        handOverScheduled = false
        publishedAt = -.infinity
        balance()
    }

    /// A server just released while this loop's clients wait: the loop it should go to instead,
    /// when clients there have waited longer (`PoolShare.waitingLonger`); nil to serve here.
    func fairerLoop(for server: ServerConnection) -> Int? {
        // Asked at most once per millisecond, the resolution that matters against the slack.
        guard isShared, loop.now - fairnessCheckedAt >= 0.001 else { return nil }
        fairnessCheckedAt = loop.now
        guard machine.pause == .running, machine.pendingLookups == 0,
              let mine = machine.oldestWaitStart, server.inbuf.isEmpty, server.ownOut.isEmpty, !server.closeNeeded
        else { return nil }
        let me = loop.index
        return withShare { $0.waitingLonger(than: mine, except: me) } ?? nil
    }

    /// `release` found a loop whose clients waited longer: the server leaves this loop's counts
    /// (lent, or fresh from its login and not yet placed) and goes there.
    func sendReleased(_ server: ServerConnection, to target: Int) {
        if server.state != .idle { _ = machine.serverClosed(server.member, from: .active) }
        server.state = .idle
        server.lastUsed = loop.now
        send(server, to: target)
    }

    private func send(_ server: ServerConnection, to target: Int) {
        let t = server.detachForTransfer()
        loop.serversMovedOut &+= 1
        loop.group.post(to: target) { $0.adoptTransferred(t) }
    }

    /// Another loop's clients wait: one of this pool's idle servers goes there, if this loop's
    /// own clients do not need it (one idle for less than `handOverGrace` goes when it has been,
    /// if clients there still wait then).
    func giveIdle(to target: Int) {
        if let server = serverToHandOver() {
            if loop.now >= server.lastUsed + Pool.handOverGrace, let member = machine.handOverIdle() {
                send(member.server, to: target)
                balance()
                return
            }
            loop.handOverLater(self, at: server.lastUsed + Pool.handOverGrace)
        }
        let key = self.key
        loop.group.post(to: target) { $0.pools[key]?.pullAnswered() }
    }

    /// The loop asked had nothing to give after all: the maintenance timer asks again (not at
    /// once, or two loops could trade requests and refusals as fast as they can).
    func pullAnswered() {
        pullsInFlight = max(0, pullsInFlight - 1)
    }

    /// A server from another loop joins this pool as if it had just logged in: it greets clients
    /// waiting for the welcome and is lent to the first waiting client.
    func adopt(_ t: ServerTransfer) {
        pullsInFlight = max(0, pullsInFlight - 1)
        loop.serversMovedIn &+= 1
        let server = ServerConnection(loop: loop, pool: self, fd: t.fd, address: t.address, host: t.host,
                                      connectTime: t.connectTime)
        server.ssl = t.ssl
        server.localAddress = t.localAddress
        server.lastUsed = t.lastUsed
        server.backendKey = t.backendKey
        server.params = t.params
        server.reportedOrder = t.reportedOrder
        // This loop's copy of the set: `link` compares it with its clients' (interned here) by
        // storage first, and the other loop's storage would cost a full comparison every time.
        server.paramsInSync = t.paramsInSync.map { loop.interned($0) }
        server.sessionSettings = t.sessionSettings
        server.sessionDirty = t.sessionDirty
        server.statementCache = t.statementCache
        server.statementCache.setCapacity(loop.config.settings.maxPreparedStatements)
        machine.connectStarted()
        loop.serverOpened(server)
        serverLoggedIn(server)
    }
}

extension EventLoop {
    /// A server another loop handed over (`Pool.balance`); closed when its pool is gone here.
    func adoptTransferred(_ t: ServerTransfer) {
        if let pool = pools[t.poolKey], pool.selector.hosts.contains(t.host) {
            pool.adopt(t)
            return
        }
        var m = MessageBuilder()
        m.terminate()
        if let ssl = t.ssl {
            m.bytes.withUnsafeBytes { b in _ = SSL_write(ssl, b.baseAddress, Int32(b.count)) }
            SSL_free(ssl)
        } else {
            m.bytes.withUnsafeBytes { b in _ = send(t.fd, b.baseAddress, b.count, Int32(MSG_NOSIGNAL)) }
        }
        close(t.fd)
        group.budget.released(pool: t.poolKey, database: t.database, user: t.user)
    }

    /// Wakes this loop at `due` for `pool`'s deferred hand-over (`Pool.handOverGrace`). One
    /// timer serves every pool: a pool whose grace is not over when it fires defers again.
    func handOverLater(_ pool: Pool, at due: Double) {
        guard !pool.handOverScheduled else { return }
        pool.handOverScheduled = true
        handOversDue.append(pool)
        guard pgmux_ev_is_active(handOverTimer) == 0 else { return }
        pgmux_ev_timer_init(handOverTimer, loopHandOver, max(due - now, 0) + 0.0001, 0,
                            Unmanaged.passUnretained(self).toOpaque())
        ev_timer_start(ev, handOverTimer)
    }

    fileprivate func handOversNow() {
        let due = handOversDue
        handOversDue.removeAll(keepingCapacity: true)
        for pool in due {
            if pools[pool.key] === pool { pool.handOverIfStillWanted() } else { pool.handOverScheduled = false }
        }
    }
}

private func loopHandOver(_ l: OpaquePointer?, _ w: UnsafeMutablePointer<ev_timer>?, _ revents: Int32) {
    guard let w, let ctx = w.pointee.data else { return }
    Unmanaged<EventLoop>.fromOpaque(ctx)._withUnsafeGuaranteedRef { $0.handOversNow() }
}
