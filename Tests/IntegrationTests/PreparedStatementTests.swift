import Foundation
import XCTest

/// Protocol-level prepared statements under transaction pooling, with fewer servers than clients.
final class PreparedStatementTests: XCTestCase {
    func testPgbenchPreparedAndExtendedWithFewerServersThanClients() throws {
        let pgmux = try PgmuxProcess(settings: ["pool_mode": "transaction", "default_pool_size": "3"])
        for mode in ["prepared", "extended"] {
            let select = try Pgbench.run(port: pgmux.port, clients: 12, seconds: 3, args: ["-S", "-M", mode])
            XCTAssertGreaterThan(select.transactions, 300, mode)
            // TPC-B-like, one client per thread (-j 1 is tested below).
            let tpcb = try Pgbench.run(port: pgmux.port, clients: 6, seconds: 3, args: ["-M", mode, "-j", "6"])
            XCTAssertGreaterThan(tpcb.transactions, 50, mode)
        }
    }

    /// Issue 12, bug 1: pgbench's PQprepare blocks its whole thread. With `-j 1` and more clients
    /// than servers, a prepare queued for a server while the thread's other clients held every
    /// server inside their transactions deadlocked (the second run of the same pgbench usually
    /// never finished). Parses of statements a server already accepted are now answered without
    /// a server.
    func testPgbenchPreparedWithOneThreadAndMoreClientsThanServers() throws {
        let pgmux = try PgmuxProcess(settings: ["default_pool_size": "3", "max_prepared_statements": "100"])
        for (args, clients) in [(["-N"], 4), (["-N"], 4), (["-N"], 12), (["-S"], 12), ([], 8), (["-N"], 30)] {
            let r = try Pgbench.run(port: pgmux.port, clients: clients, seconds: 2,
                                    args: args + ["-M", "prepared", "-j", "1"], timeout: 25)
            XCTAssertGreaterThan(r.transactions, 0, "\(args) -c \(clients)")
        }
    }

    /// Issue 16, item 2: after `ALTER TABLE`, a statement pgmux keeps prepared on a server answers
    /// "cached plan must not change result type". The client sees that error once; the server
    /// (and the pool's others) are replaced, so preparing the statement again works, for this
    /// client and for the next one. Before, every later prepare of the same text was answered
    /// from the stale server-side statement, and the error came back until RECONNECT.
    func testStalePlanReplacesThePoolsServers() throws {
        let db = PostgresCluster.database
        let user = PostgresCluster.scramUser.0
        try PostgresCluster.shared.psql("DROP TABLE IF EXISTS stale_plan; CREATE TABLE stale_plan (a int); INSERT INTO stale_plan VALUES (1);"
                                        + "GRANT ALL ON stale_plan TO PUBLIC", db: db)
        let pgmux = try PgmuxProcess(settings: ["default_pool_size": "2"])
        let a = try PQConnection(pgmux.conninfo())
        let b = try PQConnection(pgmux.conninfo())
        // Both servers get the statement: two transactions at once.
        _ = try a.query("BEGIN")
        _ = try b.query("BEGIN")
        try a.prepare("s", "SELECT * FROM stale_plan")
        try b.prepare("s", "SELECT * FROM stale_plan")
        XCTAssertEqual(try a.execPrepared("s").first?.count, 1)
        XCTAssertEqual(try b.execPrepared("s").first?.count, 1)
        _ = try a.query("COMMIT")
        _ = try b.query("COMMIT")
        XCTAssertEqual(try PostgresCluster.shared.backendCount(user: user), 2)
        try PostgresCluster.shared.psql("ALTER TABLE stale_plan ADD COLUMN b int", db: db)
        // Outside a transaction the statement is prepared again and executed again: no error.
        XCTAssertEqual(try a.execPrepared("s").first?.count, 2, "executed again transparently")
        XCTAssertTrue(pgmux.log.contains("cached plan must not change result type: prepared again, executed again"), pgmux.log)
        // Both servers go, the idle one at once, the one that reported it when released.
        XCTAssertTrue(try waitUntil(3) { try PostgresCluster.shared.backendCount(user: user) == 0 },
                      "servers with the stale statement are replaced")
        for client in [a, b] {
            for _ in 0..<3 { XCTAssertEqual(try client.execPrepared("s").first?.count, 2, "prepared again on a new server") }
        }
        let c = try PQConnection(pgmux.conninfo())
        try c.prepare("s", "SELECT * FROM stale_plan")
        XCTAssertEqual(try c.execPrepared("s").first?.count, 2, "a new client, same statement text")
        XCTAssertTrue(pgmux.log.contains("cached plan must not change result type: replacing the servers"), pgmux.log)
    }

    /// Inside a transaction block the stale plan error reaches the client (its transaction is
    /// aborted anyway, nothing can be repeated), and the next transaction works.
    func testStalePlanInsideATransactionReachesTheClient() throws {
        let db = PostgresCluster.database
        try PostgresCluster.shared.psql("DROP TABLE IF EXISTS stale_tx; CREATE TABLE stale_tx (a int); INSERT INTO stale_tx VALUES (1);"
                                        + "GRANT ALL ON stale_tx TO PUBLIC", db: db)
        let pgmux = try PgmuxProcess(settings: ["default_pool_size": "1"])
        let a = try PQConnection(pgmux.conninfo())
        try a.prepare("s", "SELECT * FROM stale_tx")
        XCTAssertEqual(try a.execPrepared("s").first?.count, 1)
        _ = try a.query("BEGIN")
        _ = try a.query("SELECT 1")  // holds the server, not the table: ALTER TABLE does not wait
        try PostgresCluster.shared.psql("ALTER TABLE stale_tx ADD COLUMN b int", db: db)
        XCTAssertThrowsError(try a.execPrepared("s")) { error in
            XCTAssertTrue("\(error)".contains("cached plan must not change result type"), "\(error)")
        }
        _ = try a.query("ROLLBACK")
        XCTAssertEqual(try a.execPrepared("s").first?.count, 2, "the next transaction works")
    }

    /// The mechanism behind the fix, deterministically: the only server is held inside a
    /// transaction, and another client's prepare of a statement it already knows returns at once.
    func testPrepareOfAStatementAServerAcceptedNeedsNoServer() throws {
        let pgmux = try PgmuxProcess(settings: ["default_pool_size": "1", "query_wait_timeout": "20"])
        let a = try PQConnection(pgmux.conninfo())
        let b = try PQConnection(pgmux.conninfo())
        try a.prepare("s", "SELECT 40 + $1::int")
        _ = try a.query("BEGIN")
        let start = Date()
        try b.prepare("mine", "SELECT 40 + $1::int")
        XCTAssertLessThan(Date().timeIntervalSince(start), 2, "the prepare must not wait for the busy server")
        _ = try a.query("COMMIT")
        XCTAssertEqual(try b.execPrepared("mine", ["2"]).first?.first, "42")
        XCTAssertEqual(try a.execPrepared("s", ["1"]).first?.first, "41")
        // A statement no server accepted is never answered by pgmux: the error comes from PostgreSQL.
        XCTAssertThrowsError(try b.prepare("bad", "SELEKT 1"))
        XCTAssertThrowsError(try b.prepare("bad", "SELEKT 1"))
    }

    /// Issue 13, item 12: a named Parse larger than the relay buffer (a long generated IN list) is
    /// gathered whole and tracked, not refused; on another server it is prepared again.
    func testNamedParseLargerThanTheRelayBuffer() throws {
        let pgmux = try PgmuxProcess(settings: ["default_pool_size": "2"])
        let list = (1...30_000).map(String.init).joined(separator: ",")  // ~170 kB of text
        let sql = "SELECT count(*) FROM generate_series(1, 40000) g WHERE g IN (\(list)) AND g > $1::int"
        let a = try PQConnection(pgmux.conninfo()), b = try PQConnection(pgmux.conninfo())
        try a.prepare("big", sql)
        _ = try b.query("BEGIN")  // holds a server, so that a's next transaction may land elsewhere
        XCTAssertEqual(try a.execPrepared("big", ["100"]).first?.first, "29900")
        try b.prepare("big_too", sql)
        XCTAssertEqual(try b.execPrepared("big_too", ["29990"]).first?.first, "10")
        _ = try b.query("COMMIT")
        for i in 0..<4 { XCTAssertEqual(try a.execPrepared("big", ["\(i)"]).first?.first, "\(30_000 - i)") }
        XCTAssertEqual(try a.scalar("SELECT 'relay still in step'"), "relay still in step")
    }

    func testSameNameDifferentTextInTwoClients() throws {
        let pgmux = try PgmuxProcess(settings: ["default_pool_size": "1"])
        let a = try PQConnection(pgmux.conninfo())
        let b = try PQConnection(pgmux.conninfo())
        try a.prepare("stmt", "SELECT 'from a' || $1::text")
        try b.prepare("stmt", "SELECT 'from b' || $1::text")
        for i in 0..<5 {
            XCTAssertEqual(try a.execPrepared("stmt", ["\(i)"]).first?.first, "from a\(i)")
            XCTAssertEqual(try b.execPrepared("stmt", ["\(i)"]).first?.first, "from b\(i)")
        }
    }

    func testEvictionWithASmallCache() throws {
        let pgmux = try PgmuxProcess(settings: ["default_pool_size": "1", "max_prepared_statements": "2"])
        let c = try PQConnection(pgmux.conninfo())
        for i in 0..<6 { try c.prepare("s\(i)", "SELECT \(i) + $1::int") }
        for round in 0..<3 {
            for i in 0..<6 { XCTAssertEqual(try c.execPrepared("s\(i)", ["\(round)"]).first?.first, "\(i + round)") }
        }
        let onServer = try c.scalar("SELECT count(*) FROM pg_prepared_statements")
        XCTAssertLessThanOrEqual(Int(onServer ?? "99") ?? 99, 2, "the server's cache stays within max_prepared_statements")
    }

    func testStatementThatFailsToParseIsNotCached() throws {
        let pgmux = try PgmuxProcess(settings: ["default_pool_size": "1"])
        let c = try PQConnection(pgmux.conninfo())
        XCTAssertThrowsError(try c.prepare("bad", "SELEKT 1"))
        try c.prepare("bad", "SELECT 'fixed'")
        XCTAssertEqual(try c.execPrepared("bad").first?.first, "fixed")
    }

    func testDescribeStatement() throws {
        let pgmux = try PgmuxProcess(settings: ["default_pool_size": "1"])
        let c = try PQConnection(pgmux.conninfo())
        try c.prepare("d", "SELECT $1::int AS a, $2::text AS b, 3 AS c")
        let other = try PQConnection(pgmux.conninfo())
        try other.prepare("x", "SELECT 1")  // moves the server around
        let shape = try c.describePrepared("d")
        XCTAssertEqual(shape.params, 2)
        XCTAssertEqual(shape.columns, 3)
    }

    func testServerKilledBetweenTwoUses() throws {
        let pgmux = try PgmuxProcess(settings: ["default_pool_size": "2"])
        let c = try PQConnection(pgmux.conninfo())
        try c.prepare("k", "SELECT $1::int * 2")
        XCTAssertEqual(try c.execPrepared("k", ["21"]).first?.first, "42")
        try PostgresCluster.shared.psql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '\(PostgresCluster.scramUser.0)' AND pid <> pg_backend_pid()")
        usleep(300_000)
        XCTAssertEqual(try c.execPrepared("k", ["5"]).first?.first, "10", "re-prepared on a new server")
    }

    func testDiscardAllForgetsTheClientsStatements() throws {
        let pgmux = try PgmuxProcess(settings: ["default_pool_size": "1"])
        let c = try PQConnection(pgmux.conninfo())
        try c.prepare("g", "SELECT 'before'")
        XCTAssertEqual(try c.execPrepared("g").first?.first, "before")
        try c.query("DISCARD ALL")
        XCTAssertThrowsError(try c.execPrepared("g"))
        try c.prepare("g", "SELECT 'after'")
        XCTAssertEqual(try c.execPrepared("g").first?.first, "after")
    }

    func testPreparedIsFasterThanSimpleThroughPgmux() throws {
        // Not a benchmark (make bench is): a sanity check that prepared statements are not
        // re-parsed per transaction. The statement count on the server stays at one per server.
        let pgmux = try PgmuxProcess(settings: ["default_pool_size": "2"])
        _ = try Pgbench.run(port: pgmux.port, clients: 8, seconds: 2, args: ["-S", "-M", "prepared"])
        let c = try PQConnection(pgmux.conninfo())
        let count = Int(try c.scalar("SELECT count(*) FROM pg_prepared_statements") ?? "0") ?? 0
        XCTAssertGreaterThanOrEqual(count, 1)
        XCTAssertLessThanOrEqual(count, 2, "one shared statement per distinct text, not one per client")
    }
}

/// Statistics of prepared statements and extra tracked parameters.
final class PreparedStatementStatsTests: XCTestCase {
    func testStatsCountParsesAndBinds() throws {
        let pgmux = try PgmuxProcess(settings: ["default_pool_size": "1", "admin_users": PostgresCluster.scramUser.0])
        let c = try PQConnection(pgmux.conninfo())
        try c.prepare("p1", "SELECT 1")
        for _ in 0..<5 { _ = try c.execPrepared("p1") }
        let admin = try PQConnection(pgmux.conninfo(database: "pgbouncer"))
        let stats = try admin.queryWithColumns("SHOW STATS")
        let row = try XCTUnwrap(stats.rows.first { $0.first == PostgresCluster.database })
        func col(_ name: String) -> Int { Int(row[stats.columns.firstIndex(of: name)!] ?? "") ?? -1 }
        XCTAssertEqual(col("total_client_parse_count"), 1)
        XCTAssertEqual(col("total_server_parse_count"), 1)
        XCTAssertEqual(col("total_bind_count"), 5)
        let clients = try admin.queryWithColumns("SHOW CLIENTS")
        let ps = clients.rows.compactMap { $0[clients.columns.firstIndex(of: "prepared_statements")!] }
        XCTAssertTrue(ps.contains("1"), "\(ps)")
    }

    func testTrackExtraParametersFollowTheClient() throws {
        // IntervalStyle is tracked by default (track_extra_parameters); the server reports it.
        let pgmux = try PgmuxProcess(settings: ["default_pool_size": "1"])
        let a = try PQConnection(pgmux.conninfo(extra: "options='-c IntervalStyle=postgres_verbose'"))
        let b = try PQConnection(pgmux.conninfo())
        for _ in 0..<3 {
            XCTAssertEqual(try a.scalar("SHOW IntervalStyle"), "postgres_verbose")
            XCTAssertEqual(try b.scalar("SHOW IntervalStyle"), "postgres")
        }
        try b.query("SET IntervalStyle = 'iso_8601'")
        XCTAssertEqual(try a.scalar("SHOW IntervalStyle"), "postgres_verbose")
        XCTAssertEqual(try b.scalar("SHOW IntervalStyle"), "iso_8601", "a SET of a tracked parameter follows the client")
    }
}

/// SQL-level prepared statements under transaction pooling.
final class SQLPreparedStatementTests: XCTestCase {
    /// Issue 16, item 1: SQL-level PREPARE / EXECUTE / DEALLOCATE in transaction pooling. The
    /// client's statements survive the loss of every server (a new server gets them prepared from
    /// the client's SQL), DEALLOCATE frees a name so that it can be prepared again with another
    /// text, inside a transaction too, and a protocol-level statement can be freed by SQL (PHP
    /// PDO's way), which PostgreSQL refused before ("prepared statement does not exist").
    func testSQLLevelPrepareExecuteDeallocate() throws {
        let user = PostgresCluster.scramUser.0
        let pgmux = try PgmuxProcess(settings: ["default_pool_size": "2"])
        let c = try PQConnection(pgmux.conninfo())
        func replaceServers() throws {
            _ = try PostgresCluster.shared.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '\(user)'")
            XCTAssertTrue(try waitUntil(3) { try PostgresCluster.shared.backendCount(user: user) == 0 })
            usleep(200_000)  // pgmux sees its idle servers close
        }
        _ = try c.query("PREPARE a1 (int) AS SELECT $1 + 1")
        XCTAssertEqual(try c.scalar("EXECUTE a1(41)"), "42")
        try replaceServers()
        XCTAssertEqual(try c.scalar("EXECUTE a1 (1)"), "2", "prepared again on the new server")
        XCTAssertThrowsError(try c.query("PREPARE a1 AS SELECT 0")) { XCTAssertTrue("\($0)".contains("already exists"), "\($0)") }
        _ = try c.query("DEALLOCATE a1")
        XCTAssertThrowsError(try c.query("EXECUTE a1(1)")) { XCTAssertTrue("\($0)".contains("does not exist"), "\($0)") }
        _ = try c.query("PREPARE a1 AS SELECT 'other'")
        XCTAssertEqual(try c.scalar("EXECUTE a1"), "other")
        // Inside a transaction: freed, prepared again with another text, executed, committed.
        _ = try c.query("BEGIN")
        XCTAssertEqual(try c.scalar("EXECUTE a1"), "other")
        _ = try c.query("DEALLOCATE PREPARE a1")
        _ = try c.query("PREPARE a1 AS SELECT 'third'")
        XCTAssertEqual(try c.scalar("EXECUTE a1"), "third")
        _ = try c.query("COMMIT")
        try replaceServers()
        XCTAssertEqual(try c.scalar("EXECUTE a1"), "third")

        // Protocol-level statements freed by SQL, then prepared again under the same name.
        try c.prepare("pdo_stmt_00000001", "SELECT $1::int * 2")
        XCTAssertEqual(try c.execPrepared("pdo_stmt_00000001", ["21"]).first?.first, "42")
        _ = try c.query("DEALLOCATE pdo_stmt_00000001")
        try c.prepare("pdo_stmt_00000001", "SELECT $1::int * 3")
        XCTAssertEqual(try c.execPrepared("pdo_stmt_00000001", ["21"]).first?.first, "63")
        _ = try c.query("BEGIN")
        _ = try c.query("DEALLOCATE pdo_stmt_00000001")
        try c.prepare("pdo_stmt_00000001", "SELECT $1::int * 4")
        XCTAssertEqual(try c.execPrepared("pdo_stmt_00000001", ["21"]).first?.first, "84")
        _ = try c.query("COMMIT")
        // An untyped protocol statement can be run by SQL EXECUTE on a server that never saw it.
        try c.prepare("untyped", "SELECT $1 || '!'")
        try replaceServers()
        XCTAssertEqual(try c.scalar("EXECUTE untyped('hi')"), "hi!")
        // In a failed transaction the server refuses DEALLOCATE, and the statement stays.
        _ = try c.query("BEGIN")
        XCTAssertThrowsError(try c.query("SELECT 1/0"))
        XCTAssertThrowsError(try c.query("DEALLOCATE untyped")) { XCTAssertTrue("\($0)".contains("aborted"), "\($0)") }
        _ = try c.query("ROLLBACK")
        XCTAssertEqual(try c.scalar("EXECUTE untyped('again')"), "again!")
        // DEALLOCATE ALL forgets every name.
        _ = try c.query("DEALLOCATE ALL")
        XCTAssertThrowsError(try c.query("EXECUTE untyped('x')"))
        XCTAssertThrowsError(try c.execPrepared("pdo_stmt_00000001", ["1"]))
        // Another client uses the same names for its own statements.
        let d = try PQConnection(pgmux.conninfo())
        _ = try d.query("PREPARE a1 AS SELECT 'd'")
        XCTAssertEqual(try d.scalar("EXECUTE a1"), "d")
        XCTAssertThrowsError(try c.query("EXECUTE a1"), "DEALLOCATE ALL freed it")
    }
}
