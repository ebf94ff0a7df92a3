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

/// Issue 16, item 4: session pooling resets (server_reset_query) only servers whose client may
/// have changed their state, and counts the resets in SHOW STATS.
final class DirtyOnlyResetTests: XCTestCase {
    func testCleanSessionsAreHandedOnWithoutReset() throws {
        let user = PostgresCluster.scramUser.0
        let pgmux = try PgmuxProcess(settings: ["pool_mode": "session", "default_pool_size": "1", "admin_users": user])
        let admin = try PQConnection(pgmux.conninfo(database: "pgbouncer"))
        func resets() throws -> String? {
            let t = try admin.queryWithColumns("SHOW STATS")
            let row = t.rows.first { $0.first == PostgresCluster.database }
            return row?[t.columns.firstIndex(of: "total_server_reset_count")!]
        }
        func session(_ statements: [String]) throws -> String? {
            let c = try PQConnection(pgmux.conninfo())
            for s in statements { _ = try c.query(s) }
            let workMem = try c.scalar("SHOW work_mem")
            c.finish()
            usleep(100_000)
            return workMem
        }
        let defaultMem = try session(["SELECT 1"])
        XCTAssertEqual(try resets(), "0", "read-only sessions leave nothing to reset")
        _ = try session(["SELECT 2", "BEGIN", "SELECT 3", "COMMIT"])
        XCTAssertEqual(try resets(), "0")
        XCTAssertEqual(try session(["SET work_mem = '7MB'"]), "7MB")
        XCTAssertEqual(try resets(), "1")
        XCTAssertEqual(try session([]), defaultMem, "the SET did not reach the next client")
        XCTAssertEqual(try resets(), "1")
        let c = try PQConnection(pgmux.conninfo())
        try c.prepare("named", "SELECT 1")
        c.finish()
        usleep(100_000)
        XCTAssertEqual(try resets(), "2", "a named statement is session state")
        let d = try PQConnection(pgmux.conninfo())
        XCTAssertThrowsError(try d.execPrepared("named"), "reset away")
    }
}
