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
        let watcher = malloc_usable_size(client.readWatcher)
        print("client object \(object) B, read watcher \(watcher) B (usable sizes)")
        XCTAssertLessThanOrEqual(object, 248)
        XCTAssertLessThanOrEqual(watcher, 56)
        client.closeSocket()
    }
}
