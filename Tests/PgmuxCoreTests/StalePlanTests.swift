import XCTest
@testable import PgmuxCore

final class StalePlanTests: XCTestCase {
    private func body(_ fields: [(Character, String)]) -> [UInt8] {
        var b: [UInt8] = []
        for (code, value) in fields { b.append(UInt8(ascii: code.unicodeScalars.first!)); b += value.utf8; b.append(0) }
        b.append(0)
        return b
    }
    private func reported(_ b: [UInt8]) -> Bool { b.withUnsafeBytes { StalePlan.isReported($0) } }

    func testPostgreSQLsErrorIsRecognisedByRoutineOrEnglishMessage() {
        // As PostgreSQL 15 sends it.
        XCTAssertTrue(reported(body([("S", "ERROR"), ("V", "ERROR"), ("C", "0A000"),
                                     ("M", "cached plan must not change result type"),
                                     ("F", "plancache.c"), ("L", "735"), ("R", "RevalidateCachedQuery")])))
        // lc_messages translated the message: the routine still says it.
        XCTAssertTrue(reported(body([("C", "0A000"), ("M", "le plan en cache ne doit pas modifier le type de résultat"),
                                     ("R", "RevalidateCachedQuery")])))
        XCTAssertTrue(reported(body([("C", "0A000"), ("M", "cached plan must not change result type")])))
    }

    func testOtherErrorsAreNot() {
        XCTAssertFalse(reported(body([("C", "0A000"), ("M", "something else is not supported"), ("R", "other")])))
        XCTAssertFalse(reported(body([("C", "42P01"), ("M", "cached plan must not change result type"),
                                      ("R", "RevalidateCachedQuery")])))
        XCTAssertFalse(reported(body([("M", "cached plan must not change result type")])))
    }

    func testTruncatedOrEmptyBodiesAreNot() {
        let full = body([("C", "0A000"), ("R", "RevalidateCachedQuery")])
        for n in 0..<full.count - 1 { XCTAssertFalse(reported(Array(full.prefix(n))), "prefix \(n)") }
        XCTAssertFalse(reported([]))
    }
}
