import PgmuxCore
import XCTest

final class LoginBackoffTests: XCTestCase {
    func testDelayKeepsServerLoginRetryThenDoublesUpToTheCap() {
        let delays = (1...10).map { LoginBackoff.delay(base: 15, failures: $0) }
        XCTAssertEqual(delays, [15, 15, 15, 30, 60, 60, 60, 60, 60, 60])
        XCTAssertEqual((1...6).map { LoginBackoff.delay(base: 0.5, failures: $0) }, [0.5, 0.5, 0.5, 1, 2, 4])
        XCTAssertEqual(LoginBackoff.delay(base: 0.5, failures: 1000), 60)
        XCTAssertEqual(LoginBackoff.delay(base: 120, failures: 50), 120, "a server_login_retry above the cap is kept")
        XCTAssertEqual(LoginBackoff.delay(base: 0, failures: 9), 0)
    }

    func testRepeatedFailuresBackOffAndSuccessResets() {
        var b = LoginBackoff()
        XCTAssertTrue(b.mayAttempt(at: 0))
        var t = 100.0
        for expected in [1.0, 1, 1, 2, 4, 8] {
            b.failed(at: t, attemptStarted: t - 0.01, transient: false, base: 1)
            XCTAssertEqual(b.delay, expected)
            XCTAssertFalse(b.mayAttempt(at: t + expected - 0.01))
            XCTAssertTrue(b.mayAttempt(at: t + expected))
            t += expected
        }
        XCTAssertTrue(b.isBackingOff)
        b.reset()
        XCTAssertEqual(b.consecutiveFailures, 0)
        XCTAssertTrue(b.mayAttempt(at: t))
    }

    func testAttemptsInFlightTogetherCountOnce() {
        var b = LoginBackoff()
        for _ in 0..<10 { b.failed(at: 5, attemptStarted: 4, transient: false, base: 1) }
        XCTAssertEqual(b.consecutiveFailures, 1)
        b.failed(at: 7, attemptStarted: 6, transient: false, base: 1)
        XCTAssertEqual(b.consecutiveFailures, 2)
    }

    func testStartingUpDoesNotGrowTheDelay() {
        var b = LoginBackoff()
        var t = 0.0
        for _ in 0..<8 { t += 1; b.failed(at: t, attemptStarted: t, transient: true, base: 1) }
        XCTAssertEqual(b.delay, 1)
    }
}
