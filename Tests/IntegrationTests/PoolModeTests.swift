import Foundation
import XCTest

/// The three pool modes against a real PostgreSQL under pgbench load, with more clients than servers.
final class PoolModeTests: XCTestCase {
    /// Samples PostgreSQL's backend count for `user` while `work` runs; returns the maximum seen.
    private func maxBackends(user: String, during work: @escaping @Sendable () throws -> Void) throws -> Int {
        let done = Flag()
        let errorBox = ErrorBox()
        let t = Thread { do { try work() } catch { errorBox.error = error }; done.set() }
        t.start()
        var peak = 0
        while !done.isSet {
            peak = max(peak, try PostgresCluster.shared.backendCount(user: user))
            usleep(100_000)
        }
        if let e = errorBox.error { throw e }
        return peak
    }

    /// Issue 12, bug 7: max_db_connections is full with idle servers of another user's pool of the
    /// same database; the waiting client's pool closes one of them (PgBouncer's eviction)
    /// instead of leaving the client queued forever.
    func testFullMaxDbConnectionsEvictsAnIdleServerOfAnotherPool() throws {
        let pgmux = try PgmuxProcess(settings: ["max_db_connections": "2", "default_pool_size": "2",
                                                "query_wait_timeout": "5", "log_disconnections": "1"])
        let a1 = try PQConnection(pgmux.conninfo()), a2 = try PQConnection(pgmux.conninfo())
        _ = try a1.query("BEGIN"); _ = try a2.query("BEGIN")
        _ = try a1.query("COMMIT"); _ = try a2.query("COMMIT")  // two idle servers of the scram pool
        let b = try PQConnection(pgmux.conninfo(user: PostgresCluster.md5User.0, password: PostgresCluster.md5User.1))
        let started = Date()
        XCTAssertEqual(try b.scalar("SELECT current_user"), PostgresCluster.md5User.0)
        XCTAssertLessThan(Date().timeIntervalSince(started), 3)
        XCTAssertEqual(try a1.scalar("SELECT 'the other pool still works'"), "the other pool still works")
        XCTAssertTrue(try String(contentsOfFile: pgmux.logPath, encoding: .utf8).contains("closing because: evicted"))
    }

    func testTransactionModeUnderLoadStaysWithinPoolSize() throws {
        let pgmux = try PgmuxProcess(settings: ["pool_mode": "transaction", "default_pool_size": "4"])
        let port = pgmux.port
        let peak = try maxBackends(user: PostgresCluster.scramUser.0) {
            let r = try Pgbench.run(port: port, clients: 20, seconds: 4)
            XCTAssertGreaterThan(r.transactions, 1000)
        }
        XCTAssertGreaterThan(peak, 0)
        XCTAssertLessThanOrEqual(peak, 4, "PostgreSQL saw more backends than pool_size")
        XCTAssertTrue(pgmux.isRunning)
    }

    func testTransactionModeTPCBUnderLoad() throws {
        let pgmux = try PgmuxProcess(settings: ["pool_mode": "transaction", "default_pool_size": "5"])
        let r = try Pgbench.run(port: pgmux.port, clients: 16, seconds: 3, args: [])
        XCTAssertGreaterThan(r.transactions, 100)
    }

    func testSessionModeUnderLoadStaysWithinPoolSize() throws {
        // Session mode: each client holds a server until it disconnects, so pgbench -C (reconnect
        // per transaction) with more clients than servers must queue and reuse.
        let pgmux = try PgmuxProcess(settings: ["pool_mode": "session", "default_pool_size": "3"])
        let port = pgmux.port
        let peak = try maxBackends(user: PostgresCluster.scramUser.0) {
            let r = try Pgbench.run(port: port, clients: 10, seconds: 3, args: ["-S", "-C"])
            XCTAssertGreaterThan(r.transactions, 50)
        }
        XCTAssertLessThanOrEqual(peak, 3)
    }

    func testStatementModeUnderLoad() throws {
        let pgmux = try PgmuxProcess(settings: ["pool_mode": "statement", "default_pool_size": "3"])
        let port = pgmux.port
        let peak = try maxBackends(user: PostgresCluster.scramUser.0) {
            let r = try Pgbench.run(port: port, clients: 12, seconds: 3)
            XCTAssertGreaterThan(r.transactions, 500)
        }
        XCTAssertLessThanOrEqual(peak, 3)
    }

    func testExtendedProtocolUnderLoad() throws {
        let pgmux = try PgmuxProcess(settings: ["pool_mode": "transaction", "default_pool_size": "4"])
        let r = try Pgbench.run(port: pgmux.port, clients: 12, seconds: 3, args: ["-S", "-M", "extended"])
        XCTAssertGreaterThan(r.transactions, 500)
    }

    func testSessionStateNeverLeaksToNextClient() throws {
        let pgmux = try PgmuxProcess(settings: ["pool_mode": "session", "default_pool_size": "1"])
        var pid: Int32 = 0
        do {
            let first = try PQConnection(pgmux.conninfo())
            pid = Int32(try first.scalar("SELECT pg_backend_pid()") ?? "") ?? 0
            try first.query("SET search_path = leaked_schema")
            try first.query("CREATE TEMP TABLE leaked_temp (x int)")
            try first.query("PREPARE leaked_stmt AS SELECT 1")
        }
        let s = try PQConnection(pgmux.conninfo())
        XCTAssertEqual(try s.scalar("SELECT pg_backend_pid()"), "\(pid)", "pool_size=1 must reuse the same backend")
        XCTAssertEqual(try s.scalar("SHOW search_path"), "\"$user\", public")
        XCTAssertEqual(try s.scalar("SELECT count(*) FROM pg_class WHERE relname = 'leaked_temp'"), "0")
        XCTAssertEqual(try s.scalar("SELECT count(*) FROM pg_prepared_statements"), "0")
    }

    func testAbandonedTransactionNeverReachesNextClient() throws {
        let pgmux = try PgmuxProcess(settings: ["pool_mode": "transaction", "default_pool_size": "1"])
        try PostgresCluster.shared.psql("CREATE TABLE IF NOT EXISTS abandoned (x int)", db: PostgresCluster.database)
        do {
            let a = try PQConnection(pgmux.conninfo())
            try a.query("BEGIN")
            try a.query("INSERT INTO abandoned VALUES (42)")
            // `a` goes away here, mid-transaction.
        }
        let b = try PQConnection(pgmux.conninfo())
        XCTAssertEqual(try b.scalar("SELECT count(*) FROM abandoned WHERE x = 42"), "0")
        XCTAssertEqual(try b.scalar("SELECT now() = statement_timestamp()"), "t", "b must not be inside a's transaction")
        let idleInTx = try PostgresCluster.shared.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = '\(PostgresCluster.scramUser.0)' AND state LIKE 'idle in transaction%'")
        XCTAssertEqual(idleInTx.trimmingCharacters(in: .whitespacesAndNewlines), "0")
    }

    func testStatementModeRefusesTransactionBlocksAndServesOn() throws {
        let pgmux = try PgmuxProcess(settings: ["pool_mode": "statement", "default_pool_size": "2"])
        let c = try PQConnection(pgmux.conninfo())
        XCTAssertThrowsError(try c.query("BEGIN")) { error in
            XCTAssertTrue("\(error)".contains("transaction blocks not allowed in statement pooling mode"), "\(error)")
        }
        let d = try PQConnection(pgmux.conninfo())
        XCTAssertEqual(try d.scalar("SELECT 1"), "1")
        // A whole transaction inside one statement is fine in statement mode.
        XCTAssertEqual(try d.scalar("SELECT 2"), "2")
        let idleInTx = try PostgresCluster.shared.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = '\(PostgresCluster.scramUser.0)' AND state LIKE 'idle in transaction%'")
        XCTAssertEqual(idleInTx.trimmingCharacters(in: .whitespacesAndNewlines), "0")
    }

    func testParameterStatusStaysConsistentAcrossServers() throws {
        let pgmux = try PgmuxProcess(settings: ["pool_mode": "transaction", "default_pool_size": "2"])
        let a = try PQConnection(pgmux.conninfo(extra: "application_name=client_a options='-c DateStyle=SQL,DMY'"))
        let b = try PQConnection(pgmux.conninfo(extra: "application_name=client_b"))
        for _ in 0..<5 {
            XCTAssertEqual(try a.scalar("SHOW application_name"), "client_a")
            XCTAssertEqual(try b.scalar("SHOW application_name"), "client_b")
            XCTAssertEqual(try a.scalar("SHOW DateStyle"), "SQL, DMY")
            XCTAssertEqual(try b.scalar("SHOW DateStyle"), "ISO, MDY")
        }
        XCTAssertEqual(a.parameter("application_name"), "client_a")
        XCTAssertNotNil(a.parameter("server_version"))
    }
}

final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.lock(); value = true; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
}

final class ErrorBox: @unchecked Sendable { var error: Error? }
