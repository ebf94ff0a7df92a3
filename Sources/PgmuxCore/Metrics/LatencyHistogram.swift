/// A fixed-bucket latency histogram (Prometheus `le` buckets, seconds). Observing is a handful of
/// comparisons into preallocated counters: cheap enough for every query on the relay path.
public struct LatencyHistogram: Sendable {
    public static let bounds: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    /// Non-cumulative counts per bucket; the last slot is +Inf.
    public var counts: [UInt64]
    public var sum: Double = 0
    public var count: UInt64 = 0

    public init() { counts = [UInt64](repeating: 0, count: LatencyHistogram.bounds.count + 1) }

    @inlinable
    public mutating func observe(_ seconds: Double) {
        var i = 0
        let bounds = LatencyHistogram.bounds
        while i < bounds.count && seconds > bounds[i] { i += 1 }
        counts[i] &+= 1
        sum += seconds
        count &+= 1
    }

    /// Cumulative counts per `le` bound, +Inf last.
    public var cumulative: [UInt64] {
        var total: UInt64 = 0
        return counts.map { total &+= $0; return total }
    }
}
