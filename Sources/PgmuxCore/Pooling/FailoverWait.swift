/// failover_timeout for one pool that follows its hosts: whether a waiting client has waited
/// long enough in vain.
///
/// The pool is "without host" from the first attempt that fails (connect, DNS, login, or a
/// server of the wrong role) or finds no host to try, while it has no server left, until a
/// server logs in. Only then are waiting clients failed, once they have waited
/// `failover_timeout`: a pool whose servers are merely busy, or which is opening a server
/// without failure yet, keeps its clients waiting under the ordinary queue timeouts.
public struct FailoverWait: Sendable, Equatable {
    public private(set) var withoutHostSince: Double?

    public init() {}

    /// An attempt failed or no host could be tried at `now`; `poolHasServers`: idle or lent
    /// servers remain (then clients still have servers to wait for).
    public mutating func noHost(now: Double, poolHasServers: Bool) {
        if withoutHostSince == nil && !poolHasServers { withoutHostSince = now }
    }

    /// A server of the pool logged in and was accepted.
    public mutating func serverLoggedIn() { withoutHostSince = nil }

    /// Whether a client waiting since `since` is to be failed at `now`.
    public func expired(waitingSince since: Double, now: Double, timeout: Double, poolHasServers: Bool) -> Bool {
        withoutHostSince != nil && !poolHasServers && now - since >= timeout
    }
}
