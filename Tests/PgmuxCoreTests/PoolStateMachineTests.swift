import PgmuxCore
import XCTest

final class PoolStateMachineTests: XCTestCase {
    private typealias M = PoolStateMachine
    private let ready: (PoolMember) -> M.IdleVerdict = { _ in .ready }

    private func machine(size: Int = 2, reserve: Int = 0, min: Int = 0, reserveTimeout: Double = 5,
                         roundRobin: Bool = false) -> M {
        M(limits: .init(size: size, reserveSize: reserve, minSize: min, reserveTimeout: reserveTimeout,
                        roundRobin: roundRobin))
    }

    private func c(_ n: UInt) -> PoolMember { PoolMember(1000 + n) }
    private func s(_ n: UInt) -> PoolMember { PoolMember(n) }

    /// Opens and logs in `n` servers numbered from `first`, leaving them idle.
    private func addIdle(_ m: inout M, _ servers: ClosedRange<UInt>) {
        for n in servers {
            m.connectStarted()
            _ = m.loginSucceeded()
            XCTAssertEqual(m.loggedInServerReady(s(n), stale: false), .keepIdle)
        }
    }

    // MARK: several event loops

    func testLimitsCountTheServersOfEveryLoop() {
        var m = machine(size: 2)
        XCTAssertEqual(m.clientRequests(c(1), since: 0, vet: ready), .queued)
        XCTAssertEqual(m.openDecision(now: 0, total: 1), .yes, "one server on another loop")
        XCTAssertEqual(m.openDecision(now: 0, total: 2), .no, "pool_size reached across loops")
        XCTAssertTrue(m.wantsMinimumServer(forcedUser: true, total: 0) == false, "min_pool_size 0")
    }

    func testReserveAcrossLoopsFollowsTheTotal() {
        var m = PoolStateMachine(limits: .init(size: 1, reserveSize: 1, minSize: 0, reserveTimeout: 5, roundRobin: false))
        XCTAssertEqual(m.clientRequests(c(1), since: 0, vet: ready), .queued)
        XCTAssertEqual(m.openDecision(now: 6, total: 1), .fromReserve(firstWaiter: c(1)))
        XCTAssertEqual(m.openDecision(now: 6, total: 2), .no)
    }

    func testHandOverIdleOnlyWithoutOwnWaiters() {
        var m = machine(size: 2)
        addIdle(&m, 1...2)
        XCTAssertEqual(m.handOverIdle(), s(1), "the one idle longest")
        XCTAssertEqual(m.serverCount, 1, "no longer counted here")
        XCTAssertEqual(m.clientRequests(c(1), since: 0, vet: ready), .lend(server: s(2)))
        XCTAssertEqual(m.clientRequests(c(2), since: 0, vet: ready), .queued)
        XCTAssertNil(m.handOverIdle(), "nothing idle")
        XCTAssertEqual(m.serverReleased(s(2), stale: false), .lend(client: c(2)))
        XCTAssertEqual(m.clientRequests(c(3), since: 0, vet: ready), .queued)
        m.connectStarted(); _ = m.loginSucceeded()
        XCTAssertEqual(m.loggedInServerReady(s(3), stale: false), .lend(client: c(3)))
    }

    // MARK: limits

    func testOpensOnlyWithinPoolSize() {
        var m = machine(size: 2)
        for n in 1...3 { XCTAssertEqual(m.clientRequests(c(UInt(n)), since: 0, vet: ready), .queued) }
        XCTAssertEqual(m.serversWanted, 3)
        XCTAssertEqual(m.openDecision(now: 0), .yes)
        m.connectStarted()
        XCTAssertEqual(m.openDecision(now: 0), .yes)
        m.connectStarted()
        XCTAssertEqual(m.openDecision(now: 0), .no, "pool_size reached")
        XCTAssertEqual(m.serversWanted, 1)
        XCTAssertEqual(m.serverCount, 2)
    }

    func testServersWantedCountsLookupsAndOneWelcome() {
        var m = machine(size: 5)
        XCTAssertTrue(m.awaitWelcome(c(1)))
        XCTAssertTrue(m.awaitWelcome(c(2)))
        XCTAssertEqual(m.serversWanted, 1, "one login gives every waiter its welcome")
        XCTAssertEqual(m.lookupRequested(vet: ready), .queued)
        XCTAssertEqual(m.serversWanted, 2)
        m.connectStarted()
        XCTAssertEqual(m.serversWanted, 1)
        XCTAssertEqual(m.loginSucceeded(), [c(1), c(2)])
        XCTAssertEqual(m.loggedInServerReady(s(1), stale: false), .serveLookup, "the lookup before anyone else")
        XCTAssertEqual(m.serversWanted, 0)
        XCTAssertEqual(m.active, 1)
    }

    // MARK: reserve pool

    func testReservePoolOnlyAfterTheFirstClientWaitedReservePoolTimeout() {
        var m = machine(size: 1, reserve: 2, reserveTimeout: 5)
        m.connectStarted()
        _ = m.loginSucceeded()
        XCTAssertEqual(m.loggedInServerReady(s(1), stale: false), .keepIdle)
        XCTAssertEqual(m.clientRequests(c(1), since: 10, vet: ready), .lend(server: s(1)))
        XCTAssertEqual(m.clientRequests(c(2), since: 11, vet: ready), .queued)
        XCTAssertEqual(m.clientRequests(c(3), since: 12, vet: ready), .queued)
        XCTAssertEqual(m.openDecision(now: 15.9), .no, "c2 has waited 4.9 s")
        XCTAssertEqual(m.openDecision(now: 16), .fromReserve(firstWaiter: c(2)))
        m.connectStarted()
        XCTAssertEqual(m.openDecision(now: 16), .fromReserve(firstWaiter: c(2)))
        m.connectStarted()
        XCTAssertEqual(m.openDecision(now: 100), .no, "pool_size + reserve_pool_size reached")
    }

    func testWithinPoolSizeAnOpenIsNotFromTheReserve() {
        var m = machine(size: 3, reserve: 1, reserveTimeout: 0)
        XCTAssertEqual(m.clientRequests(c(1), since: 0, vet: ready), .queued)
        XCTAssertEqual(m.openDecision(now: 0), .yes)
    }

    // MARK: FIFO and idle order

    func testWaitingClientsAreServedFirstComeFirstServed() {
        var m = machine(size: 1)
        for n in 1...4 { _ = m.clientRequests(c(UInt(n)), since: Double(n), vet: ready) }
        m.connectStarted()
        _ = m.loginSucceeded()
        XCTAssertEqual(m.loggedInServerReady(s(1), stale: false), .lend(client: c(1)))
        XCTAssertEqual(m.oldestWaitStart, 2)
        m.clientLeft(c(2), from: .server)  // gave up waiting
        XCTAssertEqual(m.serverReleased(s(1), stale: false), .lend(client: c(3)))
        XCTAssertEqual(m.serverReleased(s(1), stale: false), .lend(client: c(4)))
        XCTAssertEqual(m.serverReleased(s(1), stale: false), .keepIdle)
        XCTAssertEqual(m.waitingCount, 0)
        XCTAssertEqual(m.idle, [s(1)])
        XCTAssertEqual(m.active, 0)
    }

    func testIdleServersMostRecentlyUsedFirstOrRoundRobin() {
        var m = machine(size: 3)
        addIdle(&m, 1...3)
        XCTAssertEqual(m.clientRequests(c(1), since: 0, vet: ready), .lend(server: s(3)))
        var rr = machine(size: 3, roundRobin: true)
        addIdle(&rr, 1...3)
        XCTAssertEqual(rr.clientRequests(c(1), since: 0, vet: ready), .lend(server: s(1)))
    }

    func testStaleIdleServerIsClosedAndTheRequestAskedAgain() {
        var m = machine(size: 2)
        addIdle(&m, 1...2)
        let vet: (PoolMember) -> M.IdleVerdict = { $0 == self.s(2) ? .stale : .ready }
        XCTAssertEqual(m.clientRequests(c(1), since: 0, vet: vet), .closeStale(server: s(2)))
        XCTAssertFalse(m.serverClosed(s(2), from: .idle), "nobody waits")
        XCTAssertEqual(m.clientRequests(c(1), since: 0, vet: vet), .lend(server: s(1)))
        XCTAssertEqual(m.serverCount, 1)
    }

    func testHealthCheckQueuesTheClientBehindTheCheck() {
        var m = machine(size: 1)
        addIdle(&m, 1...1)
        XCTAssertEqual(m.clientRequests(c(1), since: 0, vet: { _ in .needsCheck }), .healthCheck(server: s(1)))
        XCTAssertEqual(m.active, 1)
        XCTAssertEqual(m.waitingCount, 1)
        XCTAssertEqual(m.serversWanted, 1, "the client counts as waiting while the check runs")
        XCTAssertEqual(m.serverReleased(s(1), stale: false), .lend(client: c(1)))
    }

    func testStaleReleasedServerIsClosed() {
        var m = machine(size: 1)
        addIdle(&m, 1...1)
        _ = m.clientRequests(c(1), since: 0, vet: ready)
        _ = m.clientRequests(c(2), since: 0, vet: ready)
        XCTAssertEqual(m.serverReleased(s(1), stale: true), .close)
        XCTAssertTrue(m.serverClosed(s(1), from: .uncounted), "c2 waits: open another")
        XCTAssertEqual(m.serverCount, 0)
        XCTAssertEqual(m.openDecision(now: 0), .yes)
    }

    // MARK: min_pool_size

    func testMinPoolSizeWantsServersOnlyWithClientsOrAForcedUserAndWithinPoolSize() {
        var m = machine(size: 3, min: 5)
        XCTAssertFalse(m.wantsMinimumServer(forcedUser: false, total: m.serverCount))
        XCTAssertTrue(m.wantsMinimumServer(forcedUser: true, total: m.serverCount))
        m.clientJoined()
        XCTAssertTrue(m.wantsMinimumServer(forcedUser: false, total: m.serverCount))
        addIdle(&m, 1...3)
        XCTAssertFalse(m.wantsMinimumServer(forcedUser: false, total: m.serverCount), "min_pool_size stays within pool_size")
        m.clientLeft(c(1), from: .none)
        XCTAssertEqual(m.clients, 0)
        var small = machine(size: 5, min: 2)
        small.clientJoined()
        addIdle(&small, 1...2)
        XCTAssertFalse(small.wantsMinimumServer(forcedUser: true, total: small.serverCount))
    }

    // MARK: max_db_connections / max_user_connections

    func testCapsAskForEvictionOnlyWhenAClientWaits() {
        var caps = ServerCaps()
        caps.opened(database: "db", user: "a")
        caps.opened(database: "db", user: "b")
        XCTAssertEqual(caps.verdict(database: "db", user: "a", maxDatabase: 2, maxUser: 0, evictIfNeeded: true),
                       .evict(.database))
        XCTAssertEqual(caps.verdict(database: "db", user: "a", maxDatabase: 2, maxUser: 0, evictIfNeeded: false),
                       .deny, "min_pool_size does not evict")
        XCTAssertEqual(caps.verdict(database: "other", user: "a", maxDatabase: 2, maxUser: 1, evictIfNeeded: true),
                       .evict(.user))
        caps.closed(database: "db", user: "b")  // the eviction
        XCTAssertEqual(caps.verdict(database: "db", user: "a", maxDatabase: 2, maxUser: 0, evictIfNeeded: true), .allow)
        XCTAssertEqual(caps.count(database: "db"), 1)
        XCTAssertEqual(caps.count(user: "b"), 0)
        XCTAssertEqual(caps.verdict(database: "db", user: "c", maxDatabase: 0, maxUser: 0, evictIfNeeded: false),
                       .allow, "0 is no limit")
    }

    // MARK: pause

    func testPauseQueuesWithoutLendingAndResumeServesTheQueue() {
        var m = machine(size: 2)
        addIdle(&m, 1...2)
        _ = m.clientRequests(c(1), since: 0, vet: ready)  // c1 holds s2
        m.setPause(.paused)
        XCTAssertEqual(m.clientRequests(c(2), since: 1, vet: ready), .queuedWhilePaused)
        XCTAssertEqual(m.clientRequests(c(3), since: 2, vet: ready), .queuedWhilePaused)
        XCTAssertEqual(m.serverReleased(s(2), stale: false), .keepIdle, "a released server is not lent while paused")
        XCTAssertEqual(m.resumeNext(vet: ready), .done, "still paused")
        m.setPause(.running)
        XCTAssertEqual(m.resumeNext(vet: ready), .lend(server: s(2), client: c(2)))
        XCTAssertEqual(m.resumeNext(vet: { _ in .needsCheck }), .lend(server: s(1), client: c(3)),
                       "RESUME does not health-check")
        XCTAssertEqual(m.resumeNext(vet: ready), .done)
        XCTAssertEqual(m.active, 2)
    }

    func testPausedWhileShuttingDownRefusesWithoutQueueing() {
        var m = machine()
        m.setPause(.refusing)
        XCTAssertEqual(m.clientRequests(c(1), since: 0, vet: ready), .refuse)
        XCTAssertEqual(m.waitingCount, 0)
    }

    // MARK: KILL

    func testKillLeavesNothingCountedAndNothingWanted() {
        var m = machine(size: 3)
        addIdle(&m, 1...2)
        m.clientJoined(); m.clientJoined(); m.clientJoined()
        XCTAssertEqual(m.clientRequests(c(1), since: 0, vet: ready), .lend(server: s(2)))
        XCTAssertEqual(m.clientRequests(c(2), since: 0, vet: ready), .lend(server: s(1)))
        XCTAssertEqual(m.clientRequests(c(3), since: 0, vet: ready), .queued)
        m.connectStarted()
        // KILL: every client told and closed, every server closed, in the shell's order.
        m.clientLeft(c(1), from: .none)
        m.clientLeft(c(2), from: .none)
        m.clientLeft(c(3), from: .server)
        XCTAssertFalse(m.serverClosed(s(1), from: .active))
        XCTAssertFalse(m.serverClosed(s(2), from: .active))
        XCTAssertFalse(m.serverClosed(s(3), from: .connecting))
        XCTAssertEqual([m.serverCount, m.clients, m.waitingCount, m.serversWanted], [0, 0, 0, 0])
    }

    // MARK: RELOAD

    func testSmallerPoolAfterReloadClosesExcessIdleLeastRecentlyUsedFirst() {
        var m = machine(size: 4)
        addIdle(&m, 1...4)
        _ = m.clientRequests(c(1), since: 0, vet: ready)  // s4 lent
        XCTAssertEqual(Array(m.excessIdle(total: m.serverCount)), [])
        m.limits.size = 1
        XCTAssertEqual(Array(m.excessIdle(total: m.serverCount)), [s(1), s(2), s(3)])
        m.limits.reserveSize = 1
        XCTAssertEqual(Array(m.excessIdle(total: m.serverCount)), [s(1), s(2)])
        for server in m.excessIdle(total: m.serverCount) { _ = m.serverClosed(server, from: .idle) }
        XCTAssertEqual(m.idle, [s(3)])
        XCTAssertEqual(Array(m.excessIdle(total: m.serverCount)), [])
    }

    func testLargerPoolAfterReloadOpensForTheQueue() {
        var m = machine(size: 1)
        m.connectStarted()
        _ = m.clientRequests(c(1), since: 0, vet: ready)
        _ = m.clientRequests(c(2), since: 0, vet: ready)
        XCTAssertEqual(m.openDecision(now: 0), .no)
        m.limits.size = 2
        XCTAssertEqual(m.openDecision(now: 0), .yes)
        XCTAssertEqual(m.serversWanted, 1)
    }

    // MARK: login failures

    func testRefusedLoginFailsEveryWaiterWhileNoServerIsUsable() {
        var m = machine(size: 2)
        XCTAssertTrue(m.awaitWelcome(c(1)))
        _ = m.lookupRequested(vet: ready)
        m.connectStarted()
        _ = m.serverClosed(s(1), from: .connecting)
        let killed = m.loginFailed(.rejected, now: 10, attemptStarted: 9, retryBase: 1)
        XCTAssertEqual(killed?.clients, [c(1)])
        XCTAssertEqual(killed?.lookups, 1)
        XCTAssertTrue(m.loginFailing)
        XCTAssertEqual(m.serversWanted, 0)
        XCTAssertFalse(m.awaitWelcome(c(2)), "check_fast_fail")
        XCTAssertEqual(m.openDecision(now: 10.5), .no, "server_login_retry")
        XCTAssertEqual(m.openDecision(now: 11), .yes)
        m.connectStarted()
        XCTAssertEqual(m.openDecision(now: 20), .no, "one attempt at a time after a failure")
    }

    func testTransportFailureAndStartingUpFailNoOne() {
        var m = machine(size: 2)
        _ = m.clientRequests(c(1), since: 0, vet: ready)
        XCTAssertNil(m.loginFailed(.transport, now: 1, attemptStarted: 0, retryBase: 1))
        XCTAssertTrue(m.loginFailing)
        XCTAssertEqual(m.waitingCount, 1)
        var starting = machine()
        _ = starting.clientRequests(c(1), since: 0, vet: ready)
        XCTAssertNil(starting.loginFailed(.startingUp, now: 1, attemptStarted: 0, retryBase: 1))
        XCTAssertFalse(starting.loginFailing, "57P03 does not make clients fail fast")
    }

    func testRefusedLoginSparesWaitersWhileAServerIsUsable() {
        var m = machine(size: 2)
        addIdle(&m, 1...1)
        _ = m.clientRequests(c(1), since: 0, vet: ready)
        _ = m.clientRequests(c(2), since: 0, vet: ready)
        XCTAssertNil(m.loginFailed(.rejected, now: 1, attemptStarted: 0, retryBase: 1))
        XCTAssertEqual(m.waitingCount, 1)
        // check_fast_fail only once no server is left to wait for.
        XCTAssertEqual(m.clientRequests(c(3), since: 1, vet: ready), .queued)
        _ = m.serverClosed(s(1), from: .active)
        XCTAssertEqual(m.clientRequests(c(4), since: 1, vet: ready), .fastFail)
    }

    func testSuccessfulLoginClearsTheFailureState() {
        var m = machine()
        _ = m.loginFailed(.transport, now: 1, attemptStarted: 0, retryBase: 10)
        m.connectStarted()
        XCTAssertEqual(m.loginSucceeded(), [])
        XCTAssertFalse(m.loginFailing)
        XCTAssertEqual(m.backoff.consecutiveFailures, 0)
        XCTAssertEqual(m.openDecision(now: 1), .yes)
    }

    // MARK: the machine's counts match a shell that carries out its actions

    /// Random events against a simulated shell that tracks every connection's state itself: after
    /// each step the machine's counts, idle list and queue must be what the shell sees, lending
    /// must follow the queue's order, and opening must stay within pool_size + reserve_pool_size.
    func testCountsMatchASimulatedShell() {
        enum Server: Equatable { case connecting, idle, busy }
        var rng = SplitMix64(state: 7)
        var m = machine(size: 3, reserve: 1, reserveTimeout: 2)
        var servers: [UInt: Server] = [:]
        var queue: [UInt] = []  // the shell's own record of who waits, in order
        var linked: [UInt: UInt] = [:]  // client → server
        var nextServer: UInt = 1, nextClient: UInt = 1_000_000, now = 0.0
        func stale(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &rng) < p }
        func check(_ step: Int) {
            let count = { (state: Server) in servers.values.filter { $0 == state }.count }
            XCTAssertEqual(m.active, count(.busy), "step \(step)")
            XCTAssertEqual(m.connecting, count(.connecting), "step \(step)")
            XCTAssertEqual(Set(m.idle.map(\.raw)), Set(servers.filter { $0.value == .idle }.keys), "step \(step)")
            XCTAssertEqual(m.waitingCount, queue.count, "step \(step)")
            XCTAssertLessThanOrEqual(m.serverCount, 4, "step \(step)")
        }
        func lend(_ server: UInt, to client: UInt) {
            XCTAssertEqual(queue.first, client, "first come, first served")
            queue.removeFirst()
            servers[server] = .busy
            linked[client] = server
        }
        func closed(_ server: UInt, from slot: M.Slot) { servers[server] = nil; _ = m.serverClosed(PoolMember(server), from: slot) }
        func placed(_ server: UInt, _ action: M.ReleaseAction) {
            switch action {
            case .lend(let client): lend(server, to: client.raw)
            case .keepIdle: servers[server] = .idle
            case .close: closed(server, from: .uncounted)
            case .serveLookup: XCTFail("no lookups here")
            }
        }
        for step in 0..<20000 {
            now += 0.1
            switch Int.random(in: 0..<10, using: &rng) {
            case 0, 1:  // a client asks for a server
                let client = nextClient; nextClient += 1
                var asking = true
                while asking {
                    asking = false
                    let isStale = stale(0.1)
                    switch m.clientRequests(PoolMember(client), since: now, vet: { _ in isStale ? .stale : .ready }) {
                    case .lend(let server):
                        queue.insert(client, at: 0)
                        lend(server.raw, to: client)
                    case .closeStale(let server):
                        closed(server.raw, from: .idle)
                        asking = true
                    case .queued, .queuedWhilePaused: queue.append(client)
                    case .fastFail: XCTAssertTrue(m.loginFailing && m.active == 0)
                    case .healthCheck, .refuse: XCTFail("not asked for")
                    }
                }
            case 2, 3:  // a linked client's transaction ends
                guard let (client, server) = linked.randomElement(using: &rng) else { break }
                linked[client] = nil
                placed(server, m.serverReleased(PoolMember(server), stale: stale(0.05)))
            case 4:  // open what the queue wants, as the shell's launchIfNeeded
                var toOpen = m.serversWanted
                while toOpen > 0 && m.openDecision(now: now) != .no {
                    servers[nextServer] = .connecting
                    m.connectStarted()
                    nextServer += 1; toOpen -= 1
                }
            case 5:  // a connecting server logs in or fails
                guard let server = servers.filter({ $0.value == .connecting }).keys.randomElement(using: &rng) else { break }
                if stale(0.8) {
                    XCTAssertEqual(m.loginSucceeded(), [])
                    placed(server, m.loggedInServerReady(PoolMember(server), stale: false))
                } else {
                    _ = m.loginFailed(.transport, now: now, attemptStarted: now - 0.05, retryBase: 0.3)
                    closed(server, from: .connecting)
                }
            case 6:  // a waiting client gives up
                guard let client = queue.randomElement(using: &rng) else { break }
                queue.removeAll { $0 == client }
                m.clientLeft(PoolMember(client), from: .server)
            case 7:  // a lent server dies; its client is told and goes away
                guard let (client, server) = linked.randomElement(using: &rng) else { break }
                linked[client] = nil
                closed(server, from: .active)
            case 8:  // PAUSE or RESUME
                if m.pause == .running { m.setPause(.paused); break }
                m.setPause(.running)
                var resuming = true
                while resuming {
                    let isStale = stale(0.1)
                    switch m.resumeNext(vet: { _ in isStale ? .stale : .ready }) {
                    case .lend(let server, let client): lend(server.raw, to: client.raw)
                    case .closeStale(let server): closed(server.raw, from: .idle)
                    case .done: resuming = false
                    }
                }
            default:  // an idle server times out
                guard let server = servers.filter({ $0.value == .idle }).keys.randomElement(using: &rng) else { break }
                closed(server, from: .idle)
            }
            check(step)
        }
    }
}
