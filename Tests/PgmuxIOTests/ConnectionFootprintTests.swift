import XCTest
import Glibc
import CLibEV
@testable import PgmuxIO
import PgmuxCore

/// An idle client costs its object, its read watcher and its map entries: thousands of them
/// are the pooler's memory. These bounds are malloc's usable sizes (a size class each), so a
/// field added without thought fails here, not in a benchmark weeks later.
final class ConnectionFootprintTests: XCTestCase {
    func testIdleClientFitsItsSizeClasses() throws {
        let loop = try EventLoop(config: Config(path: ""), log: Log())
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds), 0)
        defer { close(fds[1]) }
        let client = ClientConnection(loop: loop, fd: fds[0], remote: Socket.Address())
        let object = malloc_usable_size(Unmanaged.passUnretained(client).toOpaque())
        print("client object \(object) B (usable size), read watcher \(MemoryLayout<ev_io>.stride) B in a slab")
        XCTAssertLessThanOrEqual(object, 248)
        XCTAssertEqual(loop.watchers.inUse, 1)
        client.closeSocket()
    }

    func testWatcherSlabReusesReturnedWatchers() {
        let slab = WatcherSlab(perBlock: 4)
        let taken = (0..<6).map { _ in slab.take() }
        XCTAssertEqual(Set(taken).count, 6)
        XCTAssertEqual(slab.inUse, 6)
        slab.give(taken[2])
        let again = slab.take()
        XCTAssertEqual(again, taken[2])
        XCTAssertEqual(again.pointee.data, nil, "a watcher comes back zeroed")
        taken.forEach { if $0 != again { slab.give($0) } }
        slab.give(again)
        XCTAssertEqual(slab.inUse, 0)
    }
}
