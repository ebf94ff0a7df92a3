import PgmuxCore

/// Running totals for the statistics views and the periodic `stats:` log line. Plain counters,
/// updated on the relay path without allocation.
public final class Stats {
    public var transactions: UInt64 = 0
    public var queries: UInt64 = 0
    /// Microseconds.
    public var queryTime: UInt64 = 0
    public var waitTime: UInt64 = 0
    public var waits: UInt64 = 0

    public init() {}

    @inline(__always)
    func queryDone(client: ClientConnection, now: Double) {
        queries &+= 1
        if client.queryStart > 0 {
            queryTime &+= UInt64(max(0, (now - client.queryStart) * 1_000_000))
            client.queryStart = 0
        }
    }

    @inline(__always) func transactionDone() { transactions &+= 1 }

    @inline(__always)
    func waited(_ seconds: Double) {
        waits &+= 1
        waitTime &+= UInt64(max(0, seconds * 1_000_000))
    }
}
