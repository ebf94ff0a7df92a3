/// A fixed-bucket latency histogram (Prometheus `le` buckets, seconds). A class over a raw buffer
/// that also holds the count and the sum: observing is a few comparisons and three stores through
/// one pointer, with no copy-on-write or exclusivity check (stored properties of a class cost a
/// runtime access check each), cheap enough for every query on the relay path.
public final class LatencyHistogram: @unchecked Sendable {
    public static let bounds: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    /// Buckets 0...14 (the last is +Inf), then the count, then the sum's bit pattern.
    @usableFromInline let slots: UnsafeMutablePointer<UInt64>
    @usableFromInline static let countSlot = 15, sumSlot = 16

    public init() {
        slots = .allocate(capacity: LatencyHistogram.sumSlot + 1)
        slots.initialize(repeating: 0, count: LatencyHistogram.sumSlot + 1)
    }

    deinit { slots.deallocate() }

    public var count: UInt64 { slots[LatencyHistogram.countSlot] }
    public var sum: Double { Double(bitPattern: slots[LatencyHistogram.sumSlot]) }

    /// Bucket index by comparisons against literal bounds (no array access on the hot path).
    @inlinable @inline(__always)
    static func bucket(_ s: Double) -> Int {
        if s <= 0.005 { return s <= 0.0005 ? 0 : s <= 0.001 ? 1 : s <= 0.0025 ? 2 : 3 }
        if s <= 0.1 { return s <= 0.01 ? 4 : s <= 0.025 ? 5 : s <= 0.05 ? 6 : 7 }
        if s <= 1 { return s <= 0.25 ? 8 : s <= 0.5 ? 9 : 10 }
        return s <= 2.5 ? 11 : s <= 5 ? 12 : s <= 10 ? 13 : 14
    }

    @inlinable
    public func observe(_ seconds: Double) {
        slots[LatencyHistogram.bucket(seconds)] &+= 1
        slots[LatencyHistogram.countSlot] &+= 1
        slots[LatencyHistogram.sumSlot] = (Double(bitPattern: slots[LatencyHistogram.sumSlot]) + seconds).bitPattern
    }

    /// A new histogram holding this one's observations and `other`'s (one pool's histograms of
    /// several event loops).
    public func merged(with other: LatencyHistogram) -> LatencyHistogram {
        let m = LatencyHistogram()
        for i in 0..<LatencyHistogram.sumSlot { m.slots[i] = slots[i] &+ other.slots[i] }
        m.slots[LatencyHistogram.sumSlot] = (sum + other.sum).bitPattern
        return m
    }

    /// Non-cumulative counts per bucket; the last slot is +Inf.
    public var counts: [UInt64] { Array(UnsafeBufferPointer(start: slots, count: LatencyHistogram.bounds.count + 1)) }

    /// Cumulative counts per `le` bound, +Inf last.
    public var cumulative: [UInt64] {
        var total: UInt64 = 0
        return counts.map { total &+= $0; return total }
    }
}
