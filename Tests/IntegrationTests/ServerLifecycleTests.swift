import Foundation
import Glibc
import XCTest

/// Server-side lifecycle: health checks, min_pool_size, idle timeout, an unreachable server,
/// LISTEN/NOTIFY in session mode, daemon mode.
final class ServerLifecycleTests: XCTestCase {
    func testServerCheckQueryRunsOnReuseAfterDelay() throws {
        let cluster = PostgresCluster.shared
        try cluster.psql("CREATE TABLE IF NOT EXISTS health_checks (at timestamptz DEFAULT now())", db: PostgresCluster.database)
        try cluster.psql("TRUNCATE health_checks", db: PostgresCluster.database)
        let pgmux = try PgmuxProcess(settings: [
            "server_check_delay": "0", "server_check_query": "INSERT INTO health_checks DEFAULT VALUES",
            "default_pool_size": "1",
        ])
        let c = try PQConnection(pgmux.conninfo())
        for _ in 0..<3 { XCTAssertEqual(try c.scalar("SELECT 1"), "1") }
        let checks = Int(try cluster.psql("SELECT count(*) FROM health_checks", db: PostgresCluster.database)
            .trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        XCTAssertGreaterThanOrEqual(checks, 2, "each reuse after the delay runs the check")
    }

    func testMinPoolSizeIsKeptWarm() throws {
        let user = PostgresCluster.md5User
        let pgmux = try PgmuxProcess(settings: ["min_pool_size": "3", "default_pool_size": "5", "auth_type": "md5"])
        let c = try PQConnection(pgmux.conninfo(user: user.0, password: user.1))
        XCTAssertEqual(try c.scalar("SELECT 1"), "1")
        XCTAssertTrue(try waitUntil(5) { try PostgresCluster.shared.backendCount(user: user.0) >= 3 })
    }

    /// Issue 13, item 7: a forced-user database fills min_pool_size before any client connects,
    /// and a session-mode pool counts each transaction in SHOW STATS.
    func testMinPoolSizeOfAForcedUserDatabaseAndSessionModeStats() throws {
        let user = PostgresCluster.md5User
        let cluster = PostgresCluster.shared
        let pgmux = try PgmuxProcess(settings: ["auth_type": "trust", "admin_users": "admin", "pool_mode": "session"],
                                     databases: ["forced": "host=127.0.0.1 port=\(cluster.port) dbname=\(PostgresCluster.database) user=\(user.0) password=\(user.1) min_pool_size=2",
                                                 PostgresCluster.database: "host=127.0.0.1 port=\(cluster.port) dbname=\(PostgresCluster.database)"],
                                     userlist: [PostgresCluster.scramUser, ("admin", "")])
        XCTAssertTrue(try waitUntil(5) { try cluster.backendCount(user: user.0) >= 2 }, "filled without any client")
        let c = try PQConnection(pgmux.conninfo(password: nil, database: "forced"))
        for _ in 0..<5 { _ = try c.query("BEGIN"); _ = try c.query("SELECT 1"); _ = try c.query("COMMIT") }
        for _ in 0..<3 { _ = try c.query("SELECT 2") }
        let admin = try PQConnection(pgmux.conninfo(user: "admin", password: nil, database: "pgbouncer"))
        let res = try admin.queryWithColumns("SHOW STATS")
        let row = try XCTUnwrap(res.rows.first { $0[0] == "forced" })
        let xacts = Int(row[res.columns.firstIndex(of: "total_xact_count")!] ?? "0") ?? 0
        XCTAssertGreaterThanOrEqual(xacts, 8, "each transaction of the session counts")
    }

    /// Issue 13, item 6: connect_query runs once on each new server connection (its error is
    /// logged, not fatal), and server_fast_close closes a session-mode server marked by
    /// RECONNECT between transactions instead of when its client leaves.
    func testConnectQueryAndServerFastClose() throws {
        let cluster = PostgresCluster.shared
        try cluster.psql("DROP TABLE IF EXISTS connect_log; CREATE TABLE connect_log (pid int); GRANT ALL ON connect_log TO PUBLIC",
                         db: PostgresCluster.database)
        let base = "host=127.0.0.1 port=\(cluster.port) dbname=\(PostgresCluster.database)"
        let pgmux = try PgmuxProcess(settings: ["auth_type": "trust", "admin_users": "admin", "pool_mode": "session",
                                                "server_fast_close": "1"],
                                     databases: ["logged": base + " connect_query='INSERT INTO connect_log VALUES (pg_backend_pid())'",
                                                 "broken": base + " connect_query='SELECT no_such_column'"],
                                     userlist: [PostgresCluster.scramUser, ("admin", "")])
        let a = try PQConnection(pgmux.conninfo(password: nil, database: "logged"))
        let b = try PQConnection(pgmux.conninfo(password: nil, database: "logged"))
        let pids = Set([try a.scalar("SELECT pg_backend_pid()"), try b.scalar("SELECT pg_backend_pid()")])
        let logged = Set(try cluster.psql("SELECT pid FROM connect_log", db: PostgresCluster.database)
            .split(separator: "\n").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
        XCTAssertEqual(Set(pids.compactMap { $0 }), logged, "one connect_query per server, on that server")
        let c = try PQConnection(pgmux.conninfo(password: nil, database: "broken"))
        XCTAssertEqual(try c.scalar("SELECT 'a failing connect_query does not fail the login'"),
                       "a failing connect_query does not fail the login")
        XCTAssertTrue(pgmux.log.contains("S: error while executing exec_on_query: ERROR: column \"no_such_column\" does not exist"), pgmux.log)
        _ = try a.query("BEGIN")
        let admin = try PQConnection(pgmux.conninfo(user: "admin", password: nil, database: "pgbouncer"))
        try admin.query("RECONNECT logged")
        usleep(800_000)
        XCTAssertEqual(try a.scalar("SELECT 'inside the transaction'"), "inside the transaction")
        _ = try a.query("COMMIT")
        XCTAssertThrowsError(try b.query("SELECT 1"), "the idle session's server was closed at once") {
            XCTAssertTrue("\($0)".contains("database configuration changed"), "\($0)")
        }
        XCTAssertTrue(waitUntil(3) { (try? a.scalar("SELECT 1")) == nil }, "closed once its transaction ended")
    }

    func testIdleServersAreClosedAfterServerIdleTimeout() throws {
        let user = PostgresCluster.md5User
        let pgmux = try PgmuxProcess(settings: ["server_idle_timeout": "1", "auth_type": "md5"])
        do {
            let c = try PQConnection(pgmux.conninfo(user: user.0, password: user.1))
            XCTAssertEqual(try c.scalar("SELECT 1"), "1")
        }
        XCTAssertTrue(try waitUntil(6) { try PostgresCluster.shared.backendCount(user: user.0) == 0 })
    }

    func testUnreachableServerGivesAnErrorNotAHang() throws {
        let closedPort = PostgresCluster.freePort()
        let pgmux = try PgmuxProcess(settings: ["client_login_timeout": "1"],
                                     databases: ["down": "host=127.0.0.1 port=\(closedPort) dbname=postgres"])
        let started = Date()
        XCTAssertThrowsError(try PQConnection(pgmux.conninfo(database: "down"))) { error in
            XCTAssertTrue("\(error)".contains("client_login_timeout (server down)"), "\(error)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 8)
        XCTAssertTrue(pgmux.isRunning)
    }

    func testServerLoginErrorReachesTheClient() throws {
        // The database entry forces a wrong password: PostgreSQL's own message comes back.
        let cluster = PostgresCluster.shared
        let pgmux = try PgmuxProcess(databases: [
            "badpw": "host=127.0.0.1 port=\(cluster.port) dbname=\(PostgresCluster.database) user=\(PostgresCluster.scramUser.0) password=wrong",
        ])
        XCTAssertThrowsError(try PQConnection(pgmux.conninfo(database: "badpw"))) { error in
            XCTAssertTrue("\(error)".contains("password authentication failed"), "\(error)")
        }
        // Within server_login_retry the cached error is returned at once.
        XCTAssertThrowsError(try PQConnection(pgmux.conninfo(database: "badpw"))) { error in
            XCTAssertTrue("\(error)".contains("server login has been failing"), "\(error)")
        }
    }

    func testListenNotifyInSessionMode() throws {
        let pgmux = try PgmuxProcess(settings: ["pool_mode": "session"])
        let listener = try PQConnection(pgmux.conninfo())
        try listener.query("LISTEN pgmux_channel")
        try PostgresCluster.shared.psql("NOTIFY pgmux_channel, 'hello'", db: PostgresCluster.database)
        let n = listener.waitForNotification(timeout: 5)
        XCTAssertEqual(n?.0, "pgmux_channel")
        XCTAssertEqual(n?.1, "hello")
    }

    func testDaemonModeWritesPidfileAndStopsCleanly() throws {
        let dir = PostgresCluster.shared.dir + "/daemon-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        chmod(dir, 0o777)
        let port = PostgresCluster.freePort()
        let ini = """
            [databases]
            * = host=127.0.0.1 port=\(PostgresCluster.shared.port)
            [pgmux]
            listen_addr = 127.0.0.1
            listen_port = \(port)
            unix_socket_dir = \(dir)
            auth_type = trust
            pidfile = \(dir)/pgmux.pid
            logfile = \(dir)/pgmux.log
            """
        try ini.write(toFile: dir + "/pgmux.ini", atomically: false, encoding: .utf8)
        let (status, out) = try Shell.runStatus(PgmuxProcess.binary,
                                                (geteuid() == 0 ? ["-u", "postgres"] : []) + ["-d", dir + "/pgmux.ini"])
        XCTAssertEqual(status, 0, out)
        XCTAssertTrue(waitUntil(5) { FileManager.default.fileExists(atPath: dir + "/pgmux.pid") })
        let pidText = try String(contentsOfFile: dir + "/pgmux.pid", encoding: .utf8)
        let pid = try XCTUnwrap(Int32(pidText.trimmingCharacters(in: .whitespacesAndNewlines)))
        defer { if kill(pid, 0) == 0 { kill(pid, SIGTERM) } }  // never leave a daemon behind, whatever fails below
        XCTAssertEqual(kill(pid, 0), 0)
        XCTAssertTrue(waitUntil(5) { loopbackConnect(port: port).map { close($0); return true } ?? false })
        let c = try PQConnection("host=127.0.0.1 port=\(port) user=postgres dbname=postgres")
        XCTAssertEqual(try c.scalar("SELECT 1"), "1")
        c.finish()  // SIGTERM waits for clients to disconnect
        kill(pid, SIGTERM)
        XCTAssertTrue(waitUntil(5) { kill(pid, 0) != 0 })
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/pgmux.pid"))
        let log = try String(contentsOfFile: dir + "/pgmux.log", encoding: .utf8)
        XCTAssertTrue(log.contains("listening on 127.0.0.1:\(port)"), log)
    }
}

/// PgBouncer's client-side timeouts, each closing the right connection with its message.
final class TimeoutTests: XCTestCase {
    private func assertFails(_ c: PQConnection, _ sql: String, containing text: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try c.query(sql), file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(text), "\(error)", file: file, line: line)
        }
    }

    func testQueryTimeoutCancelsAndClosesTheServer() throws {
        let pgmux = try PgmuxProcess(settings: ["query_timeout": "1"])
        let c = try PQConnection(pgmux.conninfo())
        let started = Date()
        assertFails(c, "SELECT pg_sleep(6)", containing: "query timeout")
        XCTAssertLessThan(Date().timeIntervalSince(started), 4)
        usleep(500_000)
        let sleeping = try PostgresCluster.shared.psql("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(6)' AND state = 'active'")
        XCTAssertEqual(sleeping.trimmingCharacters(in: .whitespacesAndNewlines), "0", "the backend's query was cancelled")
        XCTAssertEqual(try PQConnection(pgmux.conninfo()).scalar("SELECT 1"), "1")
    }

    func testIdleTransactionTimeout() throws {
        let pgmux = try PgmuxProcess(settings: ["idle_transaction_timeout": "1"])
        let c = try PQConnection(pgmux.conninfo())
        try c.query("BEGIN")
        sleep(2)
        assertFails(c, "SELECT 1", containing: "idle transaction timeout")
    }

    func testTransactionTimeout() throws {
        let pgmux = try PgmuxProcess(settings: ["transaction_timeout": "1"])
        let c = try PQConnection(pgmux.conninfo())
        try c.query("BEGIN")
        try c.query("SELECT 1")
        usleep(700_000)
        try c.query("SELECT 2")
        usleep(1_000_000)
        assertFails(c, "SELECT 3", containing: "transaction timeout")
    }

    func testClientIdleTimeout() throws {
        let pgmux = try PgmuxProcess(settings: ["client_idle_timeout": "1"])
        let c = try PQConnection(pgmux.conninfo())
        XCTAssertEqual(try c.scalar("SELECT 1"), "1")
        sleep(2)
        assertFails(c, "SELECT 1", containing: "client_idle_timeout")
    }

    func testQueryWaitTimeout() throws {
        let pgmux = try PgmuxProcess(settings: ["query_wait_timeout": "1", "default_pool_size": "1"])
        let holder = try PQConnection(pgmux.conninfo())
        try holder.query("BEGIN")  // keeps the only server
        let waiter = try PQConnection(pgmux.conninfo())
        assertFails(waiter, "SELECT 1", containing: "query_wait_timeout")
        try holder.query("COMMIT")
    }
}

/// query_wait_notify and autodb_idle_timeout.
final class WaitNoticeAndAutoDatabaseTests: XCTestCase {
    func testQueuedClientIsToldAndAutoDatabaseIsFreed() throws {
        let pgmux = try PgmuxProcess(settings: ["query_wait_notify": "1", "default_pool_size": "1",
                                                "autodb_idle_timeout": "1", "log_connections": "1"])
        let holder = try PQConnection(pgmux.conninfo(database: "postgres"))
        try holder.query("BEGIN")
        let waiter = try PQConnection(pgmux.conninfo(database: "postgres"))
        let notices = NoticeCollector()
        notices.attach(to: waiter)
        let done = Flag()
        let t = Thread { _ = try? waiter.query("SELECT 1"); done.set() }
        t.start()
        sleep(2)
        try holder.query("COMMIT")
        let deadline = Date().addingTimeInterval(5)
        while !done.isSet && Date() < deadline { usleep(20_000) }
        XCTAssertTrue(notices.messages.contains { $0.contains("client being queued") }, "\(notices.messages)")
        // `postgres` comes from the `*` entry: once unused it is freed.
        holder.finish(); waiter.finish()
        let freeDeadline = Date().addingTimeInterval(6)
        while !pgmux.log.contains("freed auto-database: postgres") && Date() < freeDeadline { usleep(100_000) }
        XCTAssertTrue(pgmux.log.contains("registered new auto-database: postgres"), pgmux.log)
        XCTAssertTrue(pgmux.log.contains("freed auto-database: postgres"), pgmux.log)
    }
}
