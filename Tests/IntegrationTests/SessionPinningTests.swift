import Foundation
import XCTest

/// Issue 16, item 5: session advisory locks, temporary tables and WITH HOLD cursors keep their
/// client on its server in transaction pooling until released, instead of passing to the next
/// client; statement pooling refuses them.
final class SessionPinningTests: XCTestCase {
    private func show(_ c: PQConnection, _ what: String) throws -> [[String: String]] {
        let res = try c.queryWithColumns("SHOW \(what)")
        return res.rows.map { row in Dictionary(uniqueKeysWithValues: zip(res.columns, row.map { $0 ?? "NULL" })) }
    }

    /// The `pinned` column of the test database's clients, sorted.
    private func pinned(_ admin: PQConnection) throws -> [String] {
        try show(admin, "CLIENTS").filter { $0["database"] == PostgresCluster.database }.map { $0["pinned"]! }.sorted()
    }

    private func advisoryLocks(_ c: PQConnection) throws -> String? {
        try c.scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
    }

    func testLocksTemporaryTablesAndHoldableCursorsPinTheirClient() throws {
        let user = PostgresCluster.scramUser.0
        let pgmux = try PgmuxProcess(settings: ["default_pool_size": "2", "admin_users": user])
        let admin = try PQConnection(pgmux.conninfo(database: "pgbouncer"))
        let a = try PQConnection(pgmux.conninfo())
        let b = try PQConnection(pgmux.conninfo())
        func pinned() throws -> [String] { try self.pinned(admin) }

        // A session advisory lock: a keeps its backend, b never sees the lock.
        _ = try a.query("SELECT pg_advisory_lock(4242)")
        let pid = try a.scalar("SELECT pg_backend_pid()")
        XCTAssertEqual(try pinned(), ["0", "1"])
        XCTAssertEqual(try show(admin, "POOLS").first { $0["database"] == PostgresCluster.database }?["cl_pinned"], "1")
        for _ in 0..<3 {
            XCTAssertEqual(try b.scalar("SELECT pg_try_advisory_lock(4242)::text"), "false", "the lock is a's")
            XCTAssertEqual(try advisoryLocks(b), "0", "b's session holds no lock")
            XCTAssertEqual(try a.scalar("SELECT pg_backend_pid()"), pid, "a keeps its server")
        }
        _ = try a.query("SELECT pg_advisory_unlock(4242)")
        XCTAssertEqual(try pinned(), ["0", "0"])

        // A temporary table lives as long as its client needs it, across transactions.
        _ = try a.query("CREATE TEMP TABLE pin_t (x int)")
        _ = try a.query("INSERT INTO pin_t VALUES (1)")
        for _ in 0..<3 {
            XCTAssertEqual(try a.scalar("SELECT count(*) FROM pin_t"), "1")
            XCTAssertThrowsError(try b.query("SELECT * FROM pin_t"), "another client's temporary table")
        }
        _ = try a.query("DROP TABLE pin_t")
        XCTAssertEqual(try pinned(), ["0", "0"])

        // A cursor WITH HOLD outlives its transaction.
        _ = try a.query("BEGIN")
        _ = try a.query("DECLARE pin_c CURSOR WITH HOLD FOR SELECT generate_series(1, 3)")
        _ = try a.query("COMMIT")
        XCTAssertEqual(try b.scalar("SELECT 1"), "1")
        XCTAssertEqual(try a.scalar("FETCH 1 FROM pin_c"), "1")
        XCTAssertEqual(try a.scalar("FETCH 1 FROM pin_c"), "2")
        _ = try a.query("CLOSE pin_c")
        XCTAssertEqual(try pinned(), ["0", "0"])

        // A pinned client that leaves takes its server along: its lock ends with it.
        _ = try a.query("SELECT pg_advisory_lock(4243)")
        a.finish()
        XCTAssertTrue(try waitUntil(3) { try b.scalar("SELECT pg_try_advisory_lock(4243)::text") == "true" })
        _ = try b.query("SELECT pg_advisory_unlock_all()")
    }

    func testStatementPoolingRefusesAndPinTimeoutBounds() throws {
        let statement = try PgmuxProcess(settings: ["pool_mode": "statement", "default_pool_size": "1"])
        let s = try PQConnection(statement.conninfo())
        XCTAssertThrowsError(try s.query("SELECT pg_advisory_lock(7)")) { error in
            XCTAssertTrue("\(error)".contains("not allowed in statement pooling mode"), "\(error)")
        }
        let next = try PQConnection(statement.conninfo())
        XCTAssertEqual(try next.scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"), "0",
                       "the refused lock went with its server")

        let pgmux = try PgmuxProcess(settings: ["default_pool_size": "1", "pin_timeout": "1"])
        let a = try PQConnection(pgmux.conninfo())
        _ = try a.query("SELECT pg_advisory_lock(8)")
        usleep(2_500_000)
        XCTAssertThrowsError(try a.query("SELECT 1")) { XCTAssertTrue("\($0)".contains("pin timeout"), "\($0)") }
        let b = try PQConnection(pgmux.conninfo())
        XCTAssertEqual(try b.scalar("SELECT pg_try_advisory_lock(8)::text"), "true")
    }

    /// A LISTEN the listener connection does not serve (inside a transaction block) runs on the
    /// client's server: the client is pinned to it until it UNLISTENs. DISCARD ALL ends the
    /// subscriptions the listener connection serves.
    func testListenOnItsOwnServerPinsUntilUnlisten() throws {
        let user = PostgresCluster.scramUser.0
        let pgmux = try PgmuxProcess(settings: ["default_pool_size": "2", "admin_users": user])
        let admin = try PQConnection(pgmux.conninfo(database: "pgbouncer"))
        let a = try PQConnection(pgmux.conninfo())
        let b = try PQConnection(pgmux.conninfo())
        _ = try a.query("BEGIN")
        _ = try a.query("LISTEN in_tx")
        _ = try a.query("COMMIT")
        XCTAssertEqual(try pinned(admin), ["0", "1"])
        _ = try b.query("NOTIFY in_tx, 'for a'")
        XCTAssertEqual(try a.scalar("SELECT 1"), "1")
        XCTAssertEqual(a.waitForNotification(timeout: 3)?.1, "for a")
        XCTAssertNil(b.waitForNotification(timeout: 0.3), "never another client's")
        _ = try a.query("UNLISTEN in_tx")
        XCTAssertEqual(try pinned(admin), ["0", "0"])

        _ = try a.query("LISTEN hub")  // between transactions: served by the listener connection
        _ = try b.query("NOTIFY hub, 'one'")
        XCTAssertEqual(a.waitForNotification(timeout: 3)?.1, "one")
        _ = try a.query("DISCARD ALL")
        _ = try b.query("NOTIFY hub, 'two'")
        XCTAssertEqual(try a.scalar("SELECT 1"), "1")
        XCTAssertNil(a.waitForNotification(timeout: 0.5), "DISCARD ALL ended the subscription")
    }
}
