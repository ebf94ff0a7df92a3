/// What the pooler knows about each server host, shared by every pool that uses it: whether
/// connecting to it has been failing (and so when to try again), and the role it last reported.
///
/// A host whose connect or login fails is retried after `firstRetry` seconds, then twice as long
/// after each further failure, up to `server_login_retry`: another host of the list is tried
/// meanwhile, and a host that is down for good costs one attempt per `server_login_retry`.
/// Failures of attempts that were already in flight when the last one was recorded count once,
/// as in `LoginBackoff`. A successful login clears the failures.
public struct HostHealth: Sendable {
    public static let firstRetry = 0.25

    public struct Entry: Equatable, Sendable {
        /// Failed connects or logins since the last successful login.
        public var failures = 0
        public var lastFailure: Double = 0
        /// How long after `lastFailure` the host may be tried again.
        public var delay: Double = 0
        /// Why the last attempt failed.
        public var lastError = ""
        /// The role reported by the last server logged in to it, and when (nil: not known yet).
        public var status: ServerStatus?
        public var statusSeen: Double = 0

        public init() {}

        public func isBackingOff(at now: Double) -> Bool { failures > 0 && now - lastFailure < delay }
        /// Seconds until the host may be tried again (0 when it may now).
        public func retryIn(at now: Double) -> Double { isBackingOff(at: now) ? lastFailure + delay - now : 0 }
    }

    public private(set) var entries: [ServerHost: Entry] = [:]

    public init() {}

    public subscript(host: ServerHost) -> Entry? { entries[host] }

    /// A connect, DNS lookup or login to `host` failed at `now`; `retryLimit` is server_login_retry.
    public mutating func failed(_ host: ServerHost, at now: Double, attemptStarted: Double, reason: String,
                                retryLimit: Double) {
        var e = entries[host] ?? Entry()
        if e.failures == 0 || attemptStarted >= e.lastFailure { e.failures += 1 }
        e.lastFailure = now
        e.lastError = reason
        let factor = Double(1 << min(e.failures - 1, 30))
        e.delay = min(Self.firstRetry * factor, max(retryLimit, Self.firstRetry))
        entries[host] = e
    }

    /// A server of `host` logged in and reported `status` (nil: it did not say).
    public mutating func loggedIn(_ host: ServerHost, status: ServerStatus?, at now: Double) {
        var e = entries[host] ?? Entry()
        e.failures = 0
        e.delay = 0
        e.lastError = ""
        if let status { e.status = status; e.statusSeen = now }
        entries[host] = e
    }

    /// A logged-in server of `host` reported a new role (promotion).
    public mutating func statusReported(_ host: ServerHost, status: ServerStatus, at now: Double) {
        var e = entries[host] ?? Entry()
        e.status = status
        e.statusSeen = now
        entries[host] = e
    }

    /// Forgets hosts no configured database names any more (RELOAD).
    public mutating func keepOnly(_ hosts: Set<ServerHost>) {
        entries = entries.filter { hosts.contains($0.key) }
    }
}
