import XCTest
import Glibc
@testable import PgmuxIO

/// The compact client address must give back what the socket address held: hba rules match on
/// its bytes, and SHOW CLIENTS and the log show its text.
final class PeerAddressTests: XCTestCase {
    private func address(_ host: String, port: UInt16) -> Socket.Address {
        var a = Socket.Address()
        withUnsafeMutableBytes(of: &a.storage) { raw in
            if host.contains(":") {
                var sin6 = sockaddr_in6()
                sin6.sin6_family = sa_family_t(AF_INET6)
                sin6.sin6_port = port.bigEndian
                XCTAssertEqual(inet_pton(AF_INET6, host, &sin6.sin6_addr), 1)
                raw.storeBytes(of: sin6, as: sockaddr_in6.self)
                a.length = socklen_t(MemoryLayout<sockaddr_in6>.size)
            } else {
                var sin = sockaddr_in()
                sin.sin_family = sa_family_t(AF_INET)
                sin.sin_port = port.bigEndian
                XCTAssertEqual(inet_pton(AF_INET, host, &sin.sin_addr), 1)
                raw.storeBytes(of: sin, as: sockaddr_in.self)
                a.length = socklen_t(MemoryLayout<sockaddr_in>.size)
            }
        }
        return a
    }

    func testIPv4() {
        let p = PeerAddress(address("192.168.10.7", port: 54321))
        XCTAssertFalse(p.isUnix)
        XCTAssertEqual(p.port, 54321)
        XCTAssertEqual(p.bytes, [192, 168, 10, 7])
        XCTAssertEqual(p.hostText, "192.168.10.7")
        XCTAssertEqual(p.description, "192.168.10.7:54321")
    }

    func testIPv6() {
        let p = PeerAddress(address("2001:db8::a:1", port: 6432))
        XCTAssertEqual(p.bytes, [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0, 1])
        XCTAssertEqual(p.hostText, "2001:db8::a:1")
        XCTAssertEqual(p.description, "[2001:db8::a:1]:6432")
    }

    func testUnixSocket() {
        var a = Socket.Address()
        a.storage.ss_family = sa_family_t(AF_UNIX)
        let p = PeerAddress(a)
        XCTAssertTrue(p.isUnix)
        XCTAssertNil(p.bytes)
        XCTAssertEqual(p.description, "unix")
    }
}
