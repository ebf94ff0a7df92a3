import Glibc

/// A fixed-size byte buffer with read/write indices, used for the relay. Storage comes from a
/// `BufferPool` and goes back when the buffer is empty, so an idle connection holds no buffer.
public struct IOBuffer {
    public var base: UnsafeMutableRawPointer?
    /// Bytes before `start` were already forwarded; `[start, end)` is pending.
    public var start = 0
    public var end = 0
    /// `[start, scanned)` has been walked by the relay scanner and may be forwarded.
    public var scanned = 0

    public init() {}

    @inline(__always) public var isEmpty: Bool { start == end }
    @inline(__always) public var pending: Int { end - start }

    /// Moves pending bytes to the front so reads get the largest contiguous space.
    @inline(__always)
    public mutating func compact() {
        guard let base, start > 0 else { return }
        if start < end { memmove(base, base + start, end - start) }
        end -= start
        scanned -= start
        start = 0
    }

    @inline(__always)
    public mutating func clear() { start = 0; end = 0; scanned = 0 }
}

/// Recycles relay buffers (all of one size) so that connections take them only while busy.
/// Buffers that stay unused on the free list for a whole `trim` interval go back to the
/// allocator, so a burst (a login storm, a spike of active clients) does not keep its memory.
public final class BufferPool {
    public let size: Int
    private var free: [UnsafeMutableRawPointer] = []
    /// Number of buffers handed out and not yet returned (for SHOW MEM-like figures).
    public private(set) var inUse = 0
    private let keepFree: Int
    /// Fewest buffers on the free list since the last `trim`: that many were never needed.
    private var fewestFree = 0

    public init(size: Int, keepFree: Int = 256) {
        self.size = size
        self.keepFree = keepFree
    }

    @inline(__always)
    public func take() -> UnsafeMutableRawPointer {
        inUse += 1
        if let p = free.popLast() {
            if free.count < fewestFree { fewestFree = free.count }
            return p
        }
        return UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
    }

    @inline(__always)
    public func give(_ p: UnsafeMutableRawPointer) {
        inUse -= 1
        if free.count < keepFree { free.append(p) } else { p.deallocate() }
    }

    /// Frees the buffers that sat on the free list since the previous call, keeping `floor` of
    /// them (the least recently used go first). Returns how many were freed.
    public func trim(floor: Int) -> Int {
        let surplus = min(fewestFree, free.count) - floor
        if surplus > 0 {
            for p in free[..<surplus] { p.deallocate() }
            free.removeFirst(surplus)
        }
        fewestFree = free.count
        return max(0, surplus)
    }

    public var freeCount: Int { free.count }
}
