import CLibEV

/// ev_io watchers carved out of larger blocks. malloc would give each 48-byte watcher a 64-byte
/// chunk, and every idle client has one: a slab saves a quarter of that. Free watchers are
/// chained through their `data` field. Blocks stay for the loop's lifetime (a later burst reuses
/// them); what they hold after a burst is 48 bytes per peak connection.
final class WatcherSlab {
    private let perBlock: Int
    private var blocks: [UnsafeMutablePointer<ev_io>] = []
    private var freeList: UnsafeMutablePointer<ev_io>?
    /// Watchers handed out and not returned (SHOW MEM's `watcher` row).
    private(set) var inUse = 0
    /// Watchers the blocks hold in all.
    var capacity: Int { blocks.count * perBlock }

    init(perBlock: Int = 256) { self.perBlock = perBlock }

    deinit {
        for b in blocks { b.deallocate() }
    }

    /// A zeroed watcher.
    func take() -> UnsafeMutablePointer<ev_io> {
        if freeList == nil { grow() }
        let w = freeList!
        freeList = w.pointee.data?.assumingMemoryBound(to: ev_io.self)
        w.pointee = ev_io()
        inUse += 1
        return w
    }

    /// Returns a watcher that libev no longer holds (stopped).
    func give(_ w: UnsafeMutablePointer<ev_io>) {
        w.pointee = ev_io()
        w.pointee.data = UnsafeMutableRawPointer(freeList)
        freeList = w
        inUse -= 1
    }

    private func grow() {
        let block = UnsafeMutablePointer<ev_io>.allocate(capacity: perBlock)
        block.initialize(repeating: ev_io(), count: perBlock)
        blocks.append(block)
        for i in (0..<perBlock).reversed() {
            block[i].data = UnsafeMutableRawPointer(freeList)
            freeList = block + i
        }
    }
}
