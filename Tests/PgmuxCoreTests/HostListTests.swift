import XCTest
@testable import PgmuxCore

/// `host=` lists with `port=` lists, target_session_attrs, and how `HostHealth` and
/// `HostSelector` choose among the hosts.
final class HostListTests: XCTestCase {
    private func entry(_ text: String) throws -> DatabaseEntry {
        try DatabaseEntry.parse(name: "app", connectionString: text, file: "f", line: 1)
    }

    func testHostAndPortLists() throws {
        let one = try entry("host=a,b,c port=6000")
        XCTAssertEqual(one.hosts, [ServerHost(name: "a", port: 6000), ServerHost(name: "b", port: 6000),
                                   ServerHost(name: "c", port: 6000)])
        XCTAssertEqual(one.port, 6000)
        let each = try entry("host=10.0.0.1,/tmp port=5433,5434 target_session_attrs=read-write")
        XCTAssertEqual(each.hosts, [ServerHost(name: "10.0.0.1", port: 5433), ServerHost(name: "/tmp", port: 5434)])
        XCTAssertEqual(each.port, 5433)
        XCTAssertTrue(each.hosts[1].isUnixSocket)
        XCTAssertEqual(each.targetSessionAttrs, .readWrite)
        XCTAssertEqual(try entry("").hosts, [ServerHost(name: "", port: 5432)])
        XCTAssertNil(try entry("host=a").targetSessionAttrs)
        for v in ["any", "read-write", "read-only", "primary", "standby", "prefer-standby"] {
            XCTAssertEqual(try entry("target_session_attrs=\(v)").targetSessionAttrs?.rawValue, v)
        }
    }

    func testListMistakesAreErrors() {
        XCTAssertThrowsError(try entry("host=a,b,c port=1,2")) { e in
            XCTAssertTrue("\(e)".contains("could not match 2 port numbers to 3 hosts"), "\(e)")
        }
        XCTAssertThrowsError(try entry("host=a port=1,2"))
        XCTAssertThrowsError(try entry("host=a,b port=1,x"))
        XCTAssertThrowsError(try entry("host=a,b port=1,0"))
        XCTAssertThrowsError(try entry("target_session_attrs=master"))
    }

    func testGlobalTargetSessionAttrsAndFailoverTimeout() throws {
        var s = Settings()
        XCTAssertEqual(s.targetSessionAttrs, .any)
        XCTAssertEqual(s.failoverTimeout, 5)
        _ = try s.apply(key: "target_session_attrs", value: "prefer-standby", file: "f", line: 1)
        _ = try s.apply(key: "failover_timeout", value: "0.5", file: "f", line: 1)
        XCTAssertEqual(s.targetSessionAttrs, .preferStandby)
        XCTAssertEqual(s.failoverTimeout, 0.5)
    }

    // MARK: roles

    private let primary = ServerStatus(hotStandby: false, defaultReadOnly: false)
    private let standby = ServerStatus(hotStandby: true, defaultReadOnly: false)
    private let readOnlyPrimary = ServerStatus(hotStandby: false, defaultReadOnly: true)

    func testStatusFromParameterStatus() {
        XCTAssertNil(ServerStatus(inHotStandby: nil, defaultTransactionReadOnly: "off"))
        XCTAssertEqual(ServerStatus(inHotStandby: "on", defaultTransactionReadOnly: "off"), standby)
        XCTAssertEqual(ServerStatus(inHotStandby: "off", defaultTransactionReadOnly: "on"), readOnlyPrimary)
        XCTAssertEqual(ServerStatus(inHotStandby: "off", defaultTransactionReadOnly: nil), primary)
    }

    func testTargetsAsLibpq() {
        let table: [(TargetSessionAttrs, [Bool])] = [  // primary, standby, read-only primary
            (.any, [true, true, true]), (.readWrite, [true, false, false]), (.readOnly, [false, true, true]),
            (.primary, [true, false, true]), (.standby, [false, true, false]), (.preferStandby, [false, true, false]),
        ]
        for (target, expected) in table {
            XCTAssertEqual([primary, standby, readOnlyPrimary].map(target.accepts), expected, "\(target)")
        }
    }

    // MARK: health

    private let a = ServerHost(name: "a", port: 1), b = ServerHost(name: "b", port: 2), c = ServerHost(name: "c", port: 3)

    func testHostBackoffGrowsToServerLoginRetryAndLoginClears() {
        var h = HostHealth()
        var delays: [Double] = []
        for t in 0..<8 {
            h.failed(a, at: Double(t * 100), attemptStarted: Double(t * 100), reason: "refused", retryLimit: 5)
            delays.append(h[a]!.delay)
        }
        XCTAssertEqual(delays, [0.25, 0.5, 1, 2, 4, 5, 5, 5])
        XCTAssertTrue(h[a]!.isBackingOff(at: 704))
        XCTAssertFalse(h[a]!.isBackingOff(at: 705))
        XCTAssertEqual(h[a]!.retryIn(at: 703), 2)
        XCTAssertEqual(h[a]!.lastError, "refused")
        h.loggedIn(a, status: standby, at: 800)
        XCTAssertEqual(h[a]!.failures, 0)
        XCTAssertFalse(h[a]!.isBackingOff(at: 800))
        XCTAssertEqual(h[a]!.status, standby)
    }

    func testAttemptsInFlightTogetherCountOnce() {
        var h = HostHealth()
        h.failed(a, at: 10, attemptStarted: 9, reason: "x", retryLimit: 15)
        h.failed(a, at: 10.1, attemptStarted: 9.5, reason: "x", retryLimit: 15)  // started before the first failure
        XCTAssertEqual(h[a]!.failures, 1)
        h.failed(a, at: 11, attemptStarted: 10.5, reason: "x", retryLimit: 15)
        XCTAssertEqual(h[a]!.failures, 2)
        h.keepOnly([b])
        XCTAssertNil(h[a])
    }

    // MARK: selection

    func testRoundRobinSpreadsAndDisableKeepsOrder() {
        let h = HostHealth()
        var rr = HostSelector(hosts: [a, b, c], loadBalance: .roundRobin, target: .any)
        XCTAssertEqual((0..<4).map { _ in rr.pick(h, now: 0) }, [a, b, c, a])
        var first = HostSelector(hosts: [a, b, c], loadBalance: .disable, target: .any)
        XCTAssertEqual((0..<3).map { _ in first.pick(h, now: 0) }, [a, a, a])
        XCTAssertFalse(HostSelector(hosts: [a], loadBalance: .roundRobin, target: .any).followsHosts)
        XCTAssertTrue(HostSelector(hosts: [a], loadBalance: .roundRobin, target: .readWrite).followsHosts)
        XCTAssertTrue(first.followsHosts)
    }

    func testFailingHostIsSkippedUntilItsRetry() {
        var h = HostHealth()
        h.failed(a, at: 10, attemptStarted: 10, reason: "connect failed", retryLimit: 15)
        var s = HostSelector(hosts: [a, b], loadBalance: .disable, target: .any)
        XCTAssertEqual(s.pick(h, now: 10.1), b)
        XCTAssertEqual(s.pick(h, now: 10.3), a)
        h.failed(b, at: 10.3, attemptStarted: 10.3, reason: "timeout", retryLimit: 15)
        h.failed(a, at: 10.3, attemptStarted: 10.3, reason: "refused", retryLimit: 15)
        XCTAssertNil(s.pick(h, now: 10.4))
        XCTAssertEqual(s.unavailableReason(h, now: 10.4), "a:1: refused; b:2: timeout (target_session_attrs=any)")
    }

    func testReadWriteSkipsStandbyUntilRecheck() {
        var h = HostHealth()
        var s = HostSelector(hosts: [a, b], loadBalance: .roundRobin, target: .readWrite)
        h.loggedIn(a, status: standby, at: 100)
        h.loggedIn(b, status: primary, at: 100)
        XCTAssertEqual((0..<3).map { _ in s.pick(h, now: 100.5) }, [b, b, b])  // known primary first, even later
        XCTAssertFalse(s.accepts(standby, from: a, h, now: 100.5))
        XCTAssertTrue(s.accepts(primary, from: b, h, now: 100.5))
        XCTAssertFalse(s.accepts(nil, from: b, h, now: 100.5))
        // The primary dies: the standby is probed once its report is roleRecheck old, not before.
        h.failed(b, at: 100.6, attemptStarted: 100.6, reason: "refused", retryLimit: 15)
        XCTAssertNil(s.pick(h, now: 100.7))
        XCTAssertEqual(s.unavailableReason(h, now: 100.7), "a:1: standby; b:2: refused (target_session_attrs=read-write)")
        h.failed(b, at: 100.9, attemptStarted: 100.9, reason: "refused", retryLimit: 15)  // until 101.4
        XCTAssertEqual(s.pick(h, now: 101.0), a)
        h.loggedIn(a, status: primary, at: 101.1)  // promoted
        XCTAssertTrue(s.accepts(primary, from: a, h, now: 101.1))
        h.failed(b, at: 101.1, attemptStarted: 101.0, reason: "refused", retryLimit: 15)
        XCTAssertEqual((0..<2).map { _ in s.pick(h, now: 101.2) }, [a, a])
    }

    func testPreferStandbyFallsBackToPrimaryOnlyWithoutStandby() {
        var h = HostHealth()
        var s = HostSelector(hosts: [a, b], loadBalance: .disable, target: .preferStandby)
        XCTAssertEqual(s.pick(h, now: 0), a)  // unknown: tried
        h.loggedIn(a, status: primary, at: 0)
        XCTAssertFalse(s.accepts(primary, from: a, h, now: 0), "b may be a standby")
        XCTAssertEqual(s.pick(h, now: 0.1), b)
        h.loggedIn(b, status: standby, at: 0.1)
        XCTAssertTrue(s.accepts(standby, from: b, h, now: 0.1))
        XCTAssertEqual(s.pick(h, now: 5), b)
        // The standby stops: the primary is used and accepted.
        h.failed(b, at: 6, attemptStarted: 6, reason: "refused", retryLimit: 15)
        XCTAssertEqual(s.pick(h, now: 6.1), a)
        h.loggedIn(a, status: primary, at: 6.2)
        XCTAssertTrue(s.accepts(primary, from: a, h, now: 6.2))
    }

    func testStandbyAndReadOnlyTargets() {
        var h = HostHealth()
        h.loggedIn(a, status: primary, at: 0)
        h.loggedIn(b, status: readOnlyPrimary, at: 0)
        h.loggedIn(c, status: standby, at: 0)
        var standbyOnly = HostSelector(hosts: [a, b, c], loadBalance: .disable, target: .standby)
        XCTAssertEqual(standbyOnly.pick(h, now: 0.5), c)
        var readOnly = HostSelector(hosts: [a, b, c], loadBalance: .roundRobin, target: .readOnly)
        XCTAssertEqual((0..<3).map { _ in readOnly.pick(h, now: 0.5) }, [b, c, b])
        var primaryOnly = HostSelector(hosts: [c, b], loadBalance: .disable, target: .primary)
        XCTAssertEqual(primaryOnly.pick(h, now: 0.5), b)
    }
}

/// failover_timeout's rule.
final class FailoverWaitTests: XCTestCase {
    func testClientsFailOnlyWithoutHostAndWithoutServers() {
        var w = FailoverWait()
        XCTAssertFalse(w.expired(waitingSince: 0, now: 100, timeout: 5, poolHasServers: false), "no failure yet")
        w.noHost(now: 10, poolHasServers: true)
        XCTAssertNil(w.withoutHostSince, "servers remain: clients wait for them")
        w.noHost(now: 11, poolHasServers: false)
        w.noHost(now: 12, poolHasServers: false)
        XCTAssertEqual(w.withoutHostSince, 11)
        XCTAssertFalse(w.expired(waitingSince: 10, now: 14.9, timeout: 5, poolHasServers: false))
        XCTAssertTrue(w.expired(waitingSince: 10, now: 15, timeout: 5, poolHasServers: false))
        XCTAssertFalse(w.expired(waitingSince: 10, now: 15, timeout: 5, poolHasServers: true))
        XCTAssertTrue(w.expired(waitingSince: 12, now: 12, timeout: 0, poolHasServers: false), "0: at once")
        w.serverLoggedIn()
        XCTAssertFalse(w.expired(waitingSince: 0, now: 100, timeout: 5, poolHasServers: false))
    }
}
