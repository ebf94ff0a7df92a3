import XCTest
@testable import PgmuxCore

/// The batch kept to be sent again once after a stale plan.
final class StalePlanRetryTests: XCTestCase {
    private func msg(_ type: Character, _ body: [UInt8] = []) -> [UInt8] {
        let n = body.count + 4
        return [UInt8(ascii: type.unicodeScalars.first!), 0, 0, UInt8(n >> 8), UInt8(n & 0xff)] + body
    }

    func testArmedBatchIsResentAfterCloseAndParse() throws {
        let reg = PreparedStatementRegistry()
        let id = reg.id(for: Array("SELECT * FROM t\0".utf8) + [0, 0])
        var r = StalePlanRetry()
        let bind = msg("B", Array("\0PGMUX_0\0".utf8) + [0, 0, 0, 0, 0, 0])
        r.begin(statement: id, bind: bind)
        XCTAssertTrue(r.isCapturing)
        for m in [msg("D", Array("P\0".utf8)), msg("E", [0, 0, 0, 0, 0]), msg("S")] {
            m.withUnsafeBytes { r.add(m[0], $0) }
        }
        XCTAssertTrue(r.isArmed)
        let again = try XCTUnwrap(r.resend(registry: reg))
        let close = msg("C", Array("SPGMUX_0\0".utf8))
        XCTAssertEqual(Array(again.bytes.prefix(close.count)), close)
        XCTAssertEqual(Array(again.bytes.suffix(bind.count + 7 + 10 + 5).prefix(bind.count)), bind)
        XCTAssertEqual(again.types, Array("CPBDES".utf8))
        XCTAssertEqual(again.expectations, [.close(swallow: true), .parse(id: id, swallow: true), .sync])
        XCTAssertNil(r.resend(registry: reg), "once")
    }

    func testOtherBatchesAreNotKept() {
        let reg = PreparedStatementRegistry()
        var r = StalePlanRetry()
        r.begin(statement: 0, bind: msg("B"))
        let parse = msg("P", Array("\0SELECT 1\0".utf8) + [0, 0])
        parse.withUnsafeBytes { r.add(parse[0], $0) }
        XCTAssertFalse(r.isCapturing)
        XCTAssertNil(r.resend(registry: reg))
        r.begin(statement: 0, bind: msg("B"))
        let huge = msg("E", Array(repeating: 0, count: StalePlanRetry.maxBatch))
        huge.withUnsafeBytes { r.add(huge[0], $0) }
        XCTAssertFalse(r.isArmed)
        r.begin(statement: 0, bind: msg("B"))
        XCTAssertNil(r.resend(registry: reg), "not armed before its Sync")
        // A statement from SQL PREPARE cannot be prepared by a Parse.
        let sql = reg.id(forSQL: " AS SELECT 1")
        r.begin(statement: sql, bind: msg("B"))
        let sync = msg("S")
        sync.withUnsafeBytes { r.add(sync[0], $0) }
        XCTAssertNil(r.resend(registry: reg))
    }
}
