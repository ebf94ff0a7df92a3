import XCTest
@testable import PgmuxCore

final class CommandTagTests: XCTestCase {
    private func drops(_ bytes: [UInt8]) -> Bool { bytes.withUnsafeBytes { CommandTag.dropsPreparedStatements($0) } }

    func testOnlyTheTwoTagsWithTheirTerminator() {
        XCTAssertTrue(drops(Array("DISCARD ALL\0".utf8)))
        XCTAssertTrue(drops(Array("DEALLOCATE ALL\0".utf8)))
        XCTAssertFalse(drops(Array("DISCARD ALL".utf8)), "no terminator")
        XCTAssertFalse(drops(Array("DISCARD PLANS".utf8) + [0]))
        XCTAssertFalse(drops(Array("DEALLOCATE\0".utf8)))
        XCTAssertFalse(drops([]))
    }
}
