/// Admission of cancel requests forwarded to one peer (PgBouncer's peer pool): at most
/// `poolSize` forwards in flight, the rest wait in arrival order, and a waiting request older
/// than cancel_wait_timeout is given up, so that a peer that does not answer holds back only
/// its own requests, and only for a bounded time.
public struct PeerPoolQueue<Request> {
    /// The peer's `pool_size`, or `default_pool_size` (re-read at each submit: RELOAD may change it).
    public var poolSize: Int
    /// Forwards in flight (connecting or sent, waiting for the peer to close).
    public private(set) var active = 0
    private var waiting = FIFOQueue<(request: Request, since: Double)>()

    public init(poolSize: Int) { self.poolSize = poolSize }

    public var waitingCount: Int { waiting.count }
    public var waitingRequests: [Request] { waiting.elements.map(\.request) }

    /// A new request: returned when it may be forwarded now (counted active), else queued.
    public mutating func submit(_ request: Request, now: Double) -> Request? {
        if active < poolSize && waiting.isEmpty {
            active += 1
            return request
        }
        waiting.append((request, now))
        return nil
    }

    /// A forward ended: the next waiting request to forward, if the pool has room for it.
    public mutating func finished() -> Request? {
        if active > 0 { active -= 1 }
        return next()
    }

    /// The next waiting request, counted active, if there is room (after `poolSize` grew).
    public mutating func next() -> Request? {
        guard active < poolSize, let w = waiting.popFirst() else { return nil }
        active += 1
        return w.request
    }

    /// Waiting requests older than `timeout` seconds (0 = no limit), removed from the queue.
    public mutating func expire(now: Double, timeout: Double) -> [Request] {
        guard timeout > 0 else { return [] }
        var expired: [Request] = []
        while let w = waiting.first, now - w.since > timeout {
            _ = waiting.popFirst()
            expired.append(w.request)
        }
        return expired
    }

    /// Drops a waiting request whose requester went away.
    public mutating func remove(where matching: (Request) -> Bool) {
        waiting.remove { matching($0.request) }
    }
}
