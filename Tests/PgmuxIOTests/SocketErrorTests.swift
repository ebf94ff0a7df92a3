import XCTest
@testable import PgmuxIO

/// Issue 13, item 15: a resolver error is logged as PgBouncer does, without errno's text.
final class SocketErrorTests: XCTestCase {
    func testResolverErrorHasNoTrailingSuccess() {
        XCTAssertThrowsError(try Socket.Address.resolve(host: "no-such-host.invalid", port: 5432)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.hasPrefix("could not resolve no-such-host.invalid: "), text)
            XCTAssertFalse(text.hasSuffix(": Success"), text)
        }
        XCTAssertEqual("\(SocketError("connect", ECONNREFUSED))", "connect: Connection refused")
    }
}
