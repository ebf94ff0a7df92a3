import Foundation
import Glibc
import XCTest
import PgmuxCore

/// The admin console (`pgbouncer` pseudo-database) driven through libpq against live pools.
final class AdminConsoleTests: XCTestCase {
    private func pgmux(_ settings: [String: String] = [:]) throws -> PgmuxProcess {
        var s = ["admin_users": "admin", "stats_users": "watcher", "default_pool_size": "2"]
        for (k, v) in settings { s[k] = v }
        return try PgmuxProcess(settings: s, userlist: [PostgresCluster.scramUser, ("admin", "adminpw"), ("watcher", "watchpw")])
    }

    private func console(_ p: PgmuxProcess, user: String = "admin", password: String = "adminpw") throws -> PQConnection {
        try PQConnection(p.conninfo(user: user, password: password, database: "pgbouncer"))
    }

    /// Rows of a SHOW as dictionaries keyed by column name.
    private func show(_ c: PQConnection, _ what: String) throws -> [[String: String]] {
        let res = try c.queryWithColumns("SHOW \(what)")
        return res.rows.map { row in Dictionary(uniqueKeysWithValues: zip(res.columns, row.map { $0 ?? "NULL" })) }
    }

    func testShowPoolsClientsServersStatsUnderLoad() throws {
        let p = try pgmux()
        let admin = try console(p)
        let cols = try admin.queryWithColumns("SHOW POOLS").columns
        XCTAssertEqual(Array(cols.prefix(4)), ["database", "user", "cl_active", "cl_waiting"])
        let holders = try (0..<2).map { _ in try PQConnection(p.conninfo()) }
        for h in holders { try h.query("BEGIN"); try h.query("SELECT 1") }
        let waiter = try PQConnection(p.conninfo())
        let done = Flag()
        let t = Thread { _ = try? waiter.query("SELECT 1"); done.set() }
        t.start()
        usleep(300_000)
        let pool = try XCTUnwrap(try show(admin, "POOLS").first { $0["database"] == PostgresCluster.database })
        XCTAssertEqual(pool["sv_active"], "2")
        XCTAssertEqual(pool["cl_waiting"], "1")
        XCTAssertEqual(pool["pool_mode"], "transaction")
        let servers = try show(admin, "SERVERS")
        XCTAssertEqual(servers.filter { $0["state"] == "active" }.count, 2)
        XCTAssertEqual(try show(admin, "CLIENTS").filter { $0["state"] == "waiting" }.count, 1)
        for h in holders { try h.query("COMMIT") }
        XCTAssertTrue(waitFor(done))
        // Transaction counts follow pgbench's.
        let before = Int(try show(admin, "STATS").first { $0["database"] == PostgresCluster.database }?["total_xact_count"] ?? "0") ?? 0
        let r = try Pgbench.run(port: p.port, clients: 4, seconds: 2)
        let after = Int(try show(admin, "STATS").first { $0["database"] == PostgresCluster.database }?["total_xact_count"] ?? "0") ?? 0
        XCTAssertGreaterThanOrEqual(after - before, r.transactions)
        XCTAssertLessThanOrEqual(after - before, r.transactions + 20)
    }

    private func waitFor(_ flag: Flag, _ seconds: Double = 5) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while !flag.isSet && Date() < deadline { usleep(20_000) }
        return flag.isSet
    }

    func testPauseHoldsNewWorkAndResumeReleasesIt() throws {
        let p = try pgmux()
        let admin = try console(p)
        let c = try PQConnection(p.conninfo())
        XCTAssertEqual(try c.scalar("SELECT 1"), "1")
        try admin.query("PAUSE")
        let done = Flag()
        let t = Thread { _ = try? c.query("SELECT 2"); done.set() }
        t.start()
        XCTAssertFalse(waitFor(done, 0.7), "PAUSE holds new work")
        try admin.query("RESUME")
        XCTAssertTrue(waitFor(done), "RESUME releases it")
        XCTAssertThrowsError(try admin.query("RESUME")) { XCTAssertTrue("\($0)".contains("not paused"), "\($0)") }
    }

    func testReloadPicksUpANewDatabaseAndPoolSize() throws {
        let p = try pgmux()
        let admin = try console(p)
        var text = try String(contentsOfFile: p.configPath, encoding: .utf8)
        text = text.replacingOccurrences(of: "[databases]\n",
                                         with: "[databases]\nadded_db = host=127.0.0.1 port=\(PostgresCluster.shared.port) dbname=\(PostgresCluster.database) pool_size=7\n")
        try text.write(toFile: p.configPath, atomically: false, encoding: .utf8)
        try admin.query("RELOAD")
        let dbs = try show(admin, "DATABASES")
        XCTAssertEqual(dbs.first { $0["name"] == "added_db" }?["pool_size"], "7")
        XCTAssertEqual(try PQConnection(p.conninfo(database: "added_db")).scalar("SELECT current_database()"), PostgresCluster.database)
    }

    func testKillDropsClients() throws {
        let p = try pgmux()
        let admin = try console(p)
        let victim = try PQConnection(p.conninfo())
        XCTAssertEqual(try victim.scalar("SELECT 1"), "1")
        try admin.query("KILL \(PostgresCluster.database)")
        XCTAssertThrowsError(try victim.query("SELECT 1"))
        let id = try show(admin, "SERVERS").count
        XCTAssertEqual(id, 0)
    }

    func testKillClientById() throws {
        let p = try pgmux()
        let admin = try console(p)
        let victim = try PQConnection(p.conninfo(extra: "application_name=victim"))
        XCTAssertEqual(try victim.scalar("SELECT 1"), "1")
        let row = try XCTUnwrap(try show(admin, "CLIENTS").first { $0["application_name"] == "victim" })
        try admin.query("KILL_CLIENT \(row["id"]!)")
        XCTAssertThrowsError(try victim.query("SELECT 1")) { XCTAssertTrue("\($0)".contains("admin forced disconnect"), "\($0)") }
    }

    /// Issue 13, item 1: user `pgbouncer` over the Unix socket from pgmux's own OS user is an admin
    /// without a password (`psql -U pgbouncer pgbouncer` in ops scripts); from another uid it is
    /// an ordinary login and fails.
    func testPgbouncerUserOverTheUnixSocketFromTheSameUID() throws {
        let p = try pgmux(["log_connections": "1"])
        let psql = ["/usr/bin/psql", "-X", "-At", "-h", p.dir, "-p", "\(p.port)", "-U", "pgbouncer", "pgbouncer", "-c", "SHOW STATE"]
        let sameUID = geteuid() == 0 ? ["/usr/sbin/runuser", "-u", "postgres", "--"] + psql : psql
        let out = try Shell.run(sameUID[0], Array(sameUID.dropFirst()), env: ["PGPASSWORD": ""], timeout: 10)
        XCTAssertTrue(out.contains("paused|no"), out)
        XCTAssertTrue(p.log.contains("pgbouncer access from unix socket"), p.log)
        if geteuid() == 0 {
            let other = try Shell.runStatus(psql[0], Array(psql.dropFirst()) + ["-w"], timeout: 10)
            XCTAssertNotEqual(other.status, 0, "root is not pgmux's user: \(other.output)")
        }
    }

    /// Issue 13, item 2: console connections are visible (SHOW CLIENTS, SOCKETS, POOLS,
    /// DATABASES) as PgBouncer's `pgbouncer` pool, and KILL_CLIENT works on them.
    func testTheConsoleIsVisible() throws {
        let p = try pgmux(["max_db_client_connections": "50"])
        let admin = try console(p)
        let watcher = try console(p, user: "watcher", password: "watchpw")
        let consoleClients = try show(admin, "CLIENTS").filter { $0["database"] == "pgbouncer" }
        XCTAssertEqual(Set(consoleClients.map { $0["user"]! }), ["admin", "watcher"])
        XCTAssertEqual(try show(admin, "SOCKETS").filter { $0["database"] == "pgbouncer" && $0["type"] == "C" }.count, 2)
        let pool = try XCTUnwrap(try show(admin, "POOLS").first { $0["database"] == "pgbouncer" })
        XCTAssertEqual(pool["user"], "pgbouncer")
        XCTAssertEqual(pool["cl_active"], "2")
        XCTAssertEqual(pool["pool_mode"], "statement")
        let db = try XCTUnwrap(try show(admin, "DATABASES").first { $0["name"] == "pgbouncer" })
        XCTAssertEqual(db["force_user"], "pgbouncer")
        XCTAssertEqual(db["pool_size"], "2")
        XCTAssertEqual(db["port"], "\(p.port)")
        XCTAssertEqual(db["current_client_connections"], "2")
        XCTAssertEqual(db["max_client_connections"], "50")
        let watcherID = try XCTUnwrap(consoleClients.first { $0["user"] == "watcher" }?["id"])
        try admin.query("KILL_CLIENT \(watcherID)")
        XCTAssertThrowsError(try watcher.query("SHOW POOLS")) { XCTAssertTrue("\($0)".contains("admin forced disconnect"), "\($0)") }
    }

    /// Issue 13, item 3: SHOW USERS lists every user pgmux knows, not only `[users]` entries.
    func testShowUsersListsEveryKnownUser() throws {
        let p = try PgmuxProcess(settings: ["admin_users": "admin", "max_user_client_connections": "7"],
                                 users: ["configured": "pool_size=3"],
                                 userlist: [PostgresCluster.scramUser, ("admin", "adminpw"), ("fileonly", "x")])
        let client = try PQConnection(p.conninfo())
        XCTAssertEqual(try client.scalar("SELECT 1"), "1")
        let admin = try console(p)
        let users = Dictionary(uniqueKeysWithValues: try show(admin, "USERS").map { ($0["name"]!, $0) })
        for name in ["configured", "fileonly", "admin", "pgbouncer", PostgresCluster.scramUser.0] {
            XCTAssertNotNil(users[name], "\(name) missing from \(users.keys.sorted())")
        }
        XCTAssertEqual(users["configured"]?["pool_size"], "        3")
        XCTAssertEqual(users["fileonly"]?["pool_size"], "")
        XCTAssertEqual(users[PostgresCluster.scramUser.0]?["current_client_connections"], "1")
        XCTAssertEqual(users[PostgresCluster.scramUser.0]?["current_connections"], "1")
        XCTAssertEqual(users["fileonly"]?["max_user_client_connections"], "7")
    }

    /// Issue 13, item 4: a console SET acts at once, as in PgBouncer: a larger default_pool_size
    /// serves a waiting client now, a smaller one closes idle servers, max_prepared_statements
    /// applies to existing servers' caches.
    func testConsoleSetTakesEffectAtOnce() throws {
        let p = try pgmux(["default_pool_size": "1", "max_prepared_statements": "100", "query_wait_timeout": "20"])
        let admin = try console(p)
        let holder = try PQConnection(p.conninfo())
        _ = try holder.query("BEGIN")
        let waiter = try PQConnection(p.conninfo())
        let served = DispatchSemaphore(value: 0)
        Thread { _ = try? waiter.query("SELECT 1"); served.signal() }.start()
        usleep(300_000)
        try admin.query("SET default_pool_size = 2")
        XCTAssertEqual(served.wait(timeout: .now() + 3), .success, "the pool grew for the waiting client")
        _ = try holder.query("COMMIT")
        XCTAssertEqual(try show(admin, "SERVERS").count, 2)
        try admin.query("SET default_pool_size = 1")
        let ok = try waitUntil(3) { try self.show(admin, "SERVERS").count == 1 }
        let left = try show(admin, "SERVERS").count
        XCTAssertTrue(ok, "idle servers beyond the new size close: \(left)")
        try admin.query("SET max_prepared_statements = 2")
        for i in 0..<5 { try holder.prepare("s\(i)", "SELECT \(i) + $1::int") }
        for i in 0..<5 { XCTAssertEqual(try holder.execPrepared("s\(i)", ["1"]).first?.first, "\(i + 1)") }
        let onServer = try holder.scalar("SELECT count(*) FROM pg_prepared_statements")
        XCTAssertLessThanOrEqual(Int(onServer ?? "99") ?? 99, 2, "the existing server's cache follows the new limit")
    }

    func testAccessRules() throws {
        let p = try pgmux()
        XCTAssertThrowsError(try console(p, user: PostgresCluster.scramUser.0, password: PostgresCluster.scramUser.1)) {
            XCTAssertTrue("\($0)".contains("not allowed"), "\($0)")
        }
        let watcher = try console(p, user: "watcher", password: "watchpw")
        XCTAssertNoThrow(try show(watcher, "POOLS"))
        XCTAssertThrowsError(try watcher.query("PAUSE")) { XCTAssertTrue("\($0)".contains("admin access needed"), "\($0)") }
        XCTAssertThrowsError(try watcher.query("SHOW FDS")) { XCTAssertTrue("\($0)".contains("admin access needed"), "\($0)") }
        let admin = try console(p)
        XCTAssertThrowsError(try admin.query("SHOW NONSENSE")) { XCTAssertTrue("\($0)".contains("invalid command"), "\($0)") }
        XCTAssertEqual(try admin.query("SHOW CONFIG").isEmpty, false)
    }

    func testShutdownWaitForClientsWaits() throws {
        let p = try pgmux()
        let admin = try console(p)
        let c = try PQConnection(p.conninfo())
        try admin.query("SHUTDOWN WAIT_FOR_CLIENTS")
        usleep(500_000)
        XCTAssertTrue(p.isRunning, "a client is still connected")
        XCTAssertEqual(try c.scalar("SELECT 'still served'"), "still served")
        _ = consume c
        admin.finish()
        let deadline = Date().addingTimeInterval(5)
        while p.isRunning && Date() < deadline { usleep(50_000) }
        XCTAssertFalse(p.isRunning, "exits once the last client has gone")
        XCTAssertTrue(p.log.contains("client connections dropped, exiting"), p.log)
    }

    /// A burst's relay buffers go back once they sit unused for a whole second (8 stay pooled).
    func testBuffersOfABurstAreFreedAfterwards() throws {
        let p = try pgmux()
        let admin = try console(p)
        var fds: [Int32] = []
        for _ in 0..<20 {
            let fd = try XCTUnwrap(loopbackConnect(port: p.port))
            fds.append(fd)
            let partial: [UInt8] = [0, 0, 0, 40, 0, 3]  // a startup packet cut short: held in a buffer
            _ = partial.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }
        func iobuf() throws -> (used: Int, free: Int) {
            let row = try XCTUnwrap(try show(admin, "MEM").first { $0["name"] == "iobuf" })
            return (Int(row["used"] ?? "") ?? -1, Int(row["free"] ?? "") ?? -1)
        }
        let deadline = Date().addingTimeInterval(3)
        while try iobuf().used < 20 && Date() < deadline { usleep(20_000) }
        XCTAssertGreaterThanOrEqual(try iobuf().used, 20)
        fds.forEach { close($0) }
        usleep(300_000)
        XCTAssertGreaterThanOrEqual(try iobuf().free, 19, "given back to the pool first")
        let later = Date().addingTimeInterval(4)
        while try iobuf().free > 8 && Date() < later { usleep(100_000) }
        XCTAssertLessThanOrEqual(try iobuf().free, 8)
    }

    /// Logins waiting for the client's SCRAM answer hold no relay buffer (SHOW MEM's iobuf row):
    /// a login storm must not pin a buffer per client in flight.
    func testLoginsMidAuthenticationHoldNoBuffer() throws {
        let p = try pgmux(["auth_type": "scram-sha-256"])
        let admin = try console(p)
        var m = MessageBuilder()
        m.startupMessage([("user", PostgresCluster.scramUser.0), ("database", PostgresCluster.database)])
        var fds: [Int32] = []
        defer { fds.forEach { close($0) } }
        for _ in 0..<6 {
            let fd = try XCTUnwrap(loopbackConnect(port: p.port))
            fds.append(fd)
            _ = m.bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            var reply = [UInt8](repeating: 0, count: 256)
            XCTAssertGreaterThan(recv(fd, &reply, reply.count, 0), 0)
            XCTAssertEqual(reply[0], UInt8(ascii: "R"), "AuthenticationSASL")
        }
        let rows = try show(admin, "MEM")
        let mem = try XCTUnwrap(rows.first { $0["name"] == "iobuf" })
        // At most the console's own request is in a buffer while it is answered.
        XCTAssertLessThanOrEqual(Int(mem["used"] ?? "") ?? 99, 1, "\(mem)")
        // Six logins, the console and a server hold a read watcher each (write watchers are lazy).
        let watchers = try XCTUnwrap(rows.first { $0["name"] == "watcher" })
        XCTAssertGreaterThanOrEqual(Int(watchers["used"] ?? "") ?? 0, 7, "\(watchers)")
        let clients = try show(admin, "CLIENTS")
        XCTAssertEqual(clients.filter { $0["user"] == PostgresCluster.scramUser.0 }.count, 0, "not logged in yet")
    }

    /// SHOW FDS lists the listeners, then each pool's clients and servers, with the links,
    /// cancel keys and parameters an online restart would need; the fds are this process's sockets.
    func testShowFdsListsSocketsWithTheirLinks() throws {
        // TLS sockets are left out (as PgBouncer: their session cannot be handed over).
        let p = try pgmux(["server_tls_sslmode": "disable"])
        let admin = try console(p)
        let holder = try PQConnection(p.conninfo())
        try holder.query("BEGIN")
        try holder.query("SELECT 1")
        let idle = try PQConnection(p.conninfo())
        XCTAssertEqual(try idle.scalar("SELECT 1"), "1")
        let res = try admin.queryWithColumns("SHOW FDS")
        XCTAssertEqual(res.columns, ["fd", "task", "user", "database", "addr", "port", "cancel", "link", "client_encoding",
                                     "std_strings", "datestyle", "timezone", "password", "scram_client_key", "scram_server_key"])
        let rows = try show(admin, "FDS")
        XCTAssertEqual(rows.map { $0["task"]! }.filter { $0 == "pooler" }.count, 2)
        XCTAssertEqual(Array(rows.prefix(2).map { $0["task"]! }), ["pooler", "pooler"], "listeners first")
        XCTAssertEqual(Set(rows.prefix(2).map { "\($0["addr"]!):\($0["port"]!)" }), ["127.0.0.1:\(p.port)", "unix:\(p.port)"])
        let clients = rows.filter { $0["task"] == "client" }
        let servers = rows.filter { $0["task"] == "server" }
        XCTAssertEqual(clients.count, 2, "the console's own client is not listed: \(rows)")
        let linked = try XCTUnwrap(clients.first { $0["link"] != "0" })
        let server = try XCTUnwrap(servers.first { $0["fd"] == linked["link"] })
        XCTAssertEqual(server["link"], linked["fd"])
        XCTAssertEqual(linked["user"], PostgresCluster.scramUser.0)
        XCTAssertEqual(linked["database"], PostgresCluster.database)
        XCTAssertEqual(linked["addr"], "127.0.0.1")
        XCTAssertEqual(server["port"], "\(PostgresCluster.shared.port)")
        XCTAssertEqual(server["client_encoding"], "UTF8")
        XCTAssertEqual(server["password"], "NULL")
        XCTAssertNotEqual(linked["cancel"], "0")
        XCTAssertEqual(clients.filter { $0["link"] == "0" }.count, 1, "the idle client holds no server")
        for row in rows {
            let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(p.pid)/fd/\(row["fd"]!)")) ?? ""
            XCTAssertTrue(target.hasPrefix("socket:"), "\(row): \(target)")
        }
    }
}

/// The console over the extended protocol (what JDBC, asyncpg and pgx speak).
final class AdminExtendedProtocolTests: XCTestCase {
    func testShowOverTheExtendedProtocol() throws {
        let p = try PgmuxProcess(settings: ["admin_users": "admin"], userlist: [PostgresCluster.scramUser, ("admin", "adminpw")])
        let app = try PQConnection(p.conninfo())
        XCTAssertEqual(try app.scalar("SELECT 1"), "1")
        let admin = try PQConnection(p.conninfo(user: "admin", password: "adminpw", database: "pgbouncer"))
        let rows = try admin.queryParams("SHOW POOLS", [])
        XCTAssertTrue(rows.contains { $0.first == PostgresCluster.database }, "\(rows)")
        try admin.prepare("v", "SHOW VERSION")
        XCTAssertEqual(try admin.execPrepared("v").first?.first??.hasPrefix("pgmux"), true)
        XCTAssertThrowsError(try admin.queryParams("SHOW NONSENSE", [])) { XCTAssertTrue("\($0)".contains("invalid command"), "\($0)") }
        XCTAssertEqual(try admin.scalar("SHOW VERSION")?.hasPrefix("pgmux"), true, "simple protocol still fine after")
    }
}

final class AdminSuspendTests: XCTestCase {
    func testSuspendStopsAllTrafficUntilResume() throws {
        let p = try PgmuxProcess(settings: ["admin_users": "admin"], userlist: [PostgresCluster.scramUser, ("admin", "adminpw")])
        let admin = try PQConnection(p.conninfo(user: "admin", password: "adminpw", database: "pgbouncer"))
        let app = try PQConnection(p.conninfo())
        XCTAssertEqual(try app.scalar("SELECT 1"), "1")
        try admin.query("SUSPEND")
        let done = Flag()
        let t = Thread { _ = try? app.query("SELECT 2"); done.set() }
        t.start()
        let newcomer = Flag()
        let info = p.conninfo(extra: "connect_timeout=5")
        let t2 = Thread { if (try? PQConnection(info)) != nil { newcomer.set() } }
        t2.start()
        usleep(700_000)
        XCTAssertFalse(done.isSet, "no socket is read while suspended")
        XCTAssertFalse(newcomer.isSet, "no login while suspended")
        XCTAssertThrowsError(try admin.query("SUSPEND"))  // already suspended
        try admin.query("RESUME")
        let deadline = Date().addingTimeInterval(5)
        while !(done.isSet && newcomer.isSet) && Date() < deadline { usleep(20_000) }
        XCTAssertTrue(done.isSet && newcomer.isSet)
    }

    /// As PgBouncer's janitor ("avoid doing anything that may surprise other pgbouncer"), no
    /// server is opened for min_pool_size while suspended; RESUME tops the pool up.
    func testSuspendOpensNoServerForMinPoolSize() throws {
        let user = PostgresCluster.md5User
        let cluster = PostgresCluster.shared
        let p = try PgmuxProcess(settings: ["admin_users": "admin", "auth_type": "md5", "default_pool_size": "5"],
                                 userlist: [user, ("admin", "adminpw")])
        let admin = try PQConnection(p.conninfo(user: "admin", password: "adminpw", database: "pgbouncer"))
        let app = try PQConnection(p.conninfo(user: user.0, password: user.1))
        XCTAssertEqual(try app.scalar("SELECT 1"), "1")
        XCTAssertEqual(try admin.query("SHOW SERVERS").count, 1)
        try admin.query("SUSPEND")
        try admin.query("SET min_pool_size = 3")
        usleep(1_200_000)  // several maintenance rounds
        XCTAssertEqual(try admin.query("SHOW SERVERS").count, 1, "no server opened while suspended")
        try admin.query("RESUME")
        XCTAssertTrue(try waitUntil(5) { try cluster.backendCount(user: user.0) >= 3 }, "RESUME tops the pool up")
    }
}
