import XCTest
@testable import PgmuxCore

final class DirectTLSTests: XCTestCase {
    func select(_ list: [UInt8]) -> DirectTLS.Selection { list.withUnsafeBytes { DirectTLS.select($0) } }

    func entry(_ name: String) -> [UInt8] { [UInt8(name.utf8.count)] + Array(name.utf8) }

    func testFirstByteOfAClientHelloStartsTLS() {
        XCTAssertTrue(DirectTLS.startsTLS(0x16))
        // A startup packet's length, an SSLRequest's, a CancelRequest's: all begin with 0.
        XCTAssertFalse(DirectTLS.startsTLS(0))
    }

    func testALPNSelectsPostgresqlWherever()  {
        XCTAssertEqual(select(entry("postgresql")), .postgresql(offset: 1))
        XCTAssertEqual(select(entry("h2") + entry("postgresql")), .postgresql(offset: 4))
    }

    func testALPNRefusesOtherProtocolsAndMalformedLists() {
        XCTAssertEqual(select(entry("h2") + entry("http/1.1")), .refuse)
        XCTAssertEqual(select(entry("postgres")), .refuse)
        XCTAssertEqual(select(entry("postgresqlx")), .refuse)
        XCTAssertEqual(select([]), .refuse)
        XCTAssertEqual(select([0] + entry("postgresql")), .refuse, "an empty entry is malformed")
        XCTAssertEqual(select([11] + Array("postgresql".utf8)), .refuse, "a length past the end")
    }
}
