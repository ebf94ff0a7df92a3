import Foundation
import XCTest

/// Issue 16, item 4: SET/RESET of parameters PostgreSQL does not report follow their client in
/// transaction and statement pooling, and never leak into another client sharing the server.
final class SessionSettingsPoolingTests: XCTestCase {
    func testSettingsFollowTheClientAndDoNotLeak() throws {
        for mode in ["transaction", "statement"] {
            let pgmux = try PgmuxProcess(settings: ["pool_mode": mode, "default_pool_size": "1"])
            let a = try PQConnection(pgmux.conninfo())
            let b = try PQConnection(pgmux.conninfo())
            let defaultPath = try XCTUnwrap(b.scalar("SHOW search_path"))
            _ = try a.query("SET search_path TO pg_catalog, public")
            _ = try a.queryParams("SET statement_timeout = '1234ms'", [])  // extended protocol, unnamed
            for _ in 0..<2 {
                XCTAssertEqual(try b.scalar("SHOW search_path"), defaultPath, mode)
                XCTAssertEqual(try b.scalar("SHOW statement_timeout"), "0", mode)
                XCTAssertEqual(try a.scalar("SHOW search_path"), "pg_catalog, public", mode)
                XCTAssertEqual(try a.scalar("SHOW statement_timeout"), "1234ms", mode)
            }
            // A refused value changes nothing.
            XCTAssertThrowsError(try a.query("SET statement_timeout = 'soon'"))
            XCTAssertEqual(try b.scalar("SHOW statement_timeout"), "0", mode)
            XCTAssertEqual(try a.scalar("SHOW statement_timeout"), "1234ms", mode)
            _ = try a.query("RESET statement_timeout")
            XCTAssertEqual(try b.scalar("SHOW search_path"), defaultPath, mode)
            XCTAssertEqual(try a.scalar("SHOW statement_timeout"), "0", mode)
            XCTAssertEqual(try a.scalar("SHOW search_path"), "pg_catalog, public", mode)
            _ = try a.query("RESET ALL")
            XCTAssertEqual(try a.scalar("SHOW search_path"), defaultPath, mode)
        }
    }

    func testSettingsInsideTransactionBlocksHoldOnlyAfterCommit() throws {
        let pgmux = try PgmuxProcess(settings: ["pool_mode": "transaction", "default_pool_size": "1"])
        let a = try PQConnection(pgmux.conninfo())
        let b = try PQConnection(pgmux.conninfo())
        let defaultMem = try XCTUnwrap(b.scalar("SHOW work_mem"))
        _ = try a.query("BEGIN")
        _ = try a.query("SET work_mem = '7MB'")
        XCTAssertEqual(try a.scalar("SHOW work_mem"), "7MB")
        _ = try a.query("ROLLBACK")
        XCTAssertEqual(try a.scalar("SHOW work_mem"), defaultMem, "rolled back")
        _ = try a.query("BEGIN")
        _ = try a.query("SET work_mem = '8MB'")
        _ = try a.query("SET LOCAL search_path TO pg_catalog")
        _ = try a.query("COMMIT")
        XCTAssertEqual(try b.scalar("SHOW work_mem"), defaultMem)
        XCTAssertEqual(try a.scalar("SHOW work_mem"), "8MB", "committed")
        XCTAssertNotEqual(try a.scalar("SHOW search_path"), "pg_catalog", "SET LOCAL ended with its transaction")
        _ = try a.query("BEGIN")
        _ = try a.query("SET work_mem = '9MB'")
        XCTAssertThrowsError(try a.query("SELECT 1/0"))
        _ = try a.query("COMMIT")  // of a failed transaction: a rollback
        XCTAssertEqual(try a.scalar("SHOW work_mem"), "8MB")
        XCTAssertEqual(try b.scalar("SHOW work_mem"), defaultMem)
    }
}
