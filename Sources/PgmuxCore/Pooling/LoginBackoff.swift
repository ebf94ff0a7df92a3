/// When a pool may try to open a server again after failed connects or logins.
///
/// PgBouncer waits a fixed `server_login_retry` after every failure. pgmux keeps that delay for
/// the first `failuresBeforeBackoff` consecutive failures (a restarting server is found again as
/// fast as with PgBouncer), then doubles it with each further failure, up to `maxDelay` seconds
/// (or `server_login_retry` itself when that is longer): a server that keeps refusing logins or
/// breaking the protocol is not hammered every few seconds forever. A successful login resets it.
///
/// 57P03 ("the database system is starting up") is transient: it waits the base delay and does
/// not push the backoff further.
public struct LoginBackoff: Sendable {
    public static let failuresBeforeBackoff = 3
    public static let maxDelay = 60.0

    /// Failed attempts since the last successful login.
    public private(set) var consecutiveFailures = 0
    /// When the last failure was recorded, and how long to wait after it.
    public private(set) var lastFailure: Double = 0
    public private(set) var delay: Double = 0

    public init() {}

    /// The delay after `failures` consecutive failures with `server_login_retry = base`.
    public static func delay(base: Double, failures: Int) -> Double {
        guard base > 0, failures > 0 else { return 0 }
        let doublings = min(max(0, failures - failuresBeforeBackoff), 30)
        return min(base * Double(1 << doublings), max(base, maxDelay))
    }

    /// Records a failure at `now` of an attempt started at `attemptStarted`. An attempt that was
    /// already in flight when the previous failure was recorded does not count again, so a burst
    /// of connects failing together is one repetition, not a jump to the longest delay.
    public mutating func failed(at now: Double, attemptStarted: Double, transient: Bool, base: Double) {
        if consecutiveFailures == 0 || attemptStarted >= lastFailure { consecutiveFailures += 1 }
        lastFailure = now
        let level = transient ? min(consecutiveFailures, LoginBackoff.failuresBeforeBackoff) : consecutiveFailures
        delay = LoginBackoff.delay(base: base, failures: level)
    }

    /// True while backing off beyond PgBouncer's fixed server_login_retry.
    public var isBackingOff: Bool { consecutiveFailures > LoginBackoff.failuresBeforeBackoff }

    public func mayAttempt(at now: Double) -> Bool { now - lastFailure >= delay }

    public mutating func reset() { self = LoginBackoff() }
}
