import Foundation
import Glibc
import XCTest

/// Issue 13, items 5, 8, 9, 13 and 14: client caps, trust with auth_query, configuration errors,
/// `options` with ignore_startup_parameters, and the login log lines, as PgBouncer 1.25.2.
final class ParityLoginTests: XCTestCase {
    override func setUpWithError() throws {
        _ = try? PostgresCluster.shared.psql("CREATE ROLE aq_user LOGIN PASSWORD 'aq_pw'")
        _ = try? PostgresCluster.shared.psql("GRANT ALL ON DATABASE \(PostgresCluster.database) TO aq_user")
    }

    private func show(_ c: PQConnection, _ what: String) throws -> [[String: String]] {
        let res = try c.queryWithColumns("SHOW \(what)")
        return res.rows.map { row in Dictionary(uniqueKeysWithValues: zip(res.columns, row.map { $0 ?? "NULL" })) }
    }

    private func assertRefused(_ conninfo: String, _ text: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try PQConnection(conninfo), file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(text), "\(error)", file: file, line: line)
        }
    }

    /// The databases of the cluster over its Unix socket (trusted by PostgreSQL), so pools of
    /// users pgmux has no password for can still log in.
    private var unixDatabases: [String: String] {
        let c = PostgresCluster.shared
        return [PostgresCluster.database: "host=\(c.dir) port=\(c.port) dbname=\(PostgresCluster.database)",
                "*": "host=\(c.dir) port=\(c.port)"]
    }

    // MARK: item 5

    func testClientCapsPerDatabaseAndUserAreEnforcedAndShown() throws {
        let p = try PgmuxProcess(settings: ["max_db_client_connections": "2", "admin_users": "admin"],
                                 databases: [
                                    PostgresCluster.database: "host=127.0.0.1 port=\(PostgresCluster.shared.port) dbname=\(PostgresCluster.database)",
                                    "other": "host=127.0.0.1 port=\(PostgresCluster.shared.port) dbname=\(PostgresCluster.database) max_db_client_connections=3",
                                 ],
                                 users: [PostgresCluster.md5User.0: "max_user_client_connections=1"],
                                 userlist: [PostgresCluster.scramUser, PostgresCluster.md5User, ("admin", "adminpw")])
        let a = try PQConnection(p.conninfo())
        let b = try PQConnection(p.conninfo(user: PostgresCluster.md5User.0, password: PostgresCluster.md5User.1))
        assertRefused(p.conninfo(), "client connections exceeded (max_db_client_connections)")
        // The per-database value wins over the global one; the per-user one caps md5_user.
        let others = try (0..<2).map { _ in try PQConnection(p.conninfo(database: "other")) }
        assertRefused(p.conninfo(user: PostgresCluster.md5User.0, password: PostgresCluster.md5User.1, database: "other"),
                      "client connections exceeded (max_user_client_connections)")
        XCTAssertEqual(try others[0].scalar("SELECT 1"), "1")
        // admin_users get past a full console; the console counts its clients.
        let consoles = try (0..<3).map { _ in try PQConnection(p.conninfo(user: "admin", password: "adminpw", database: "pgbouncer")) }
        let dbs = try show(consoles[0], "DATABASES")
        let mine = try XCTUnwrap(dbs.first { $0["name"] == PostgresCluster.database })
        XCTAssertEqual(mine["max_client_connections"], "2")
        XCTAssertEqual(mine["current_client_connections"], "2")
        let other = try XCTUnwrap(dbs.first { $0["name"] == "other" })
        XCTAssertEqual(other["max_client_connections"], "3")
        XCTAssertEqual(other["current_client_connections"], "2")
        XCTAssertEqual(dbs.first { $0["name"] == "pgbouncer" }?["current_client_connections"], "3")
        let users = try show(consoles[0], "USERS")
        let md5 = try XCTUnwrap(users.first { $0["name"] == PostgresCluster.md5User.0 })
        XCTAssertEqual(md5["max_user_client_connections"], "1")
        XCTAssertEqual(md5["current_client_connections"], "1")
        XCTAssertEqual(users.first { $0["name"] == PostgresCluster.scramUser.0 }?["current_client_connections"], "3")
        // A client that leaves frees its place at once.
        a.finish()
        b.finish()
        usleep(200_000)
        XCTAssertEqual(try PQConnection(p.conninfo()).scalar("SELECT 1"), "1")
        XCTAssertEqual(try PQConnection(p.conninfo(user: PostgresCluster.md5User.0, password: PostgresCluster.md5User.1)).scalar("SELECT 1"), "1")
    }

    // MARK: item 8

    func testTrustLooksUpUsersMissingFromAuthFileWithAuthQuery() throws {
        let p = try PgmuxProcess(settings: ["auth_type": "trust", "auth_user": PostgresCluster.scramUser.0,
                                            "auth_dbname": PostgresCluster.database],
                                 databases: unixDatabases)
        // aq_user is not in auth_file: found by auth_query, so trust lets it in.
        let c = try PQConnection(p.conninfo(user: "aq_user", password: nil))
        XCTAssertEqual(try c.scalar("SELECT current_user"), "aq_user")
        // A role PostgreSQL does not have is still unknown.
        assertRefused(p.conninfo(user: "no_such_role", password: nil), "\"trust\" authentication failed")
    }

    // MARK: item 9

    func testAuthQueryConfigurationErrorsAnswerBouncerConfigError() throws {
        let c = PostgresCluster.shared
        let p = try PgmuxProcess(settings: ["auth_user": PostgresCluster.scramUser.0, "admin_users": PostgresCluster.scramUser.0,
                                            "auth_query": "SELECT usename, passwd FROM no_such_table WHERE usename = $1",
                                            "log_disconnections": "1"],
                                 databases: [
                                    PostgresCluster.database: "host=127.0.0.1 port=\(c.port) dbname=\(PostgresCluster.database)",
                                    "viaconsole": "host=127.0.0.1 port=\(c.port) dbname=\(PostgresCluster.database) auth_dbname=pgbouncer",
                                    "viadisabled": "host=127.0.0.1 port=\(c.port) dbname=\(PostgresCluster.database) auth_dbname=spare auth_query='SELECT rolname, rolpassword FROM pg_authid WHERE rolname=$1'",
                                    "spare": "host=127.0.0.1 port=\(c.port) dbname=\(PostgresCluster.database)",
                                    "viamissing": "host=127.0.0.1 port=\(c.port) dbname=\(PostgresCluster.database) auth_dbname=no_such_backend_db",
                                    "*": "host=127.0.0.1 port=\(c.port)",
                                 ])
        // A failing auth_query.
        assertRefused(p.conninfo(user: "aq_user", password: "aq_pw"), "bouncer config error")
        XCTAssertTrue(p.log.contains("S: error in auth_query: ERROR: relation \"no_such_table\" does not exist"), p.log)
        XCTAssertTrue(p.log.contains("closing because: error response from auth_query"), p.log)
        // auth_dbname on the console: refused, the reason logged.
        assertRefused(p.conninfo(user: "aq_user", password: "aq_pw", database: "viaconsole"), "bouncer config error")
        XCTAssertTrue(p.log.contains("cannot use the reserved \"pgbouncer\" database as an auth_dbname"), p.log)
        // A disabled auth database: PgBouncer's own text.
        let admin = try PQConnection(p.conninfo(database: "pgbouncer"))
        try admin.query("DISABLE spare")
        assertRefused(p.conninfo(user: "aq_user", password: "aq_pw", database: "viadisabled"),
                      "authentication database \"spare\" is disabled")
        // An auto-database PostgreSQL does not have: its own error reaches the client.
        assertRefused(p.conninfo(user: "aq_user", password: "aq_pw", database: "viamissing"),
                      "database \"no_such_backend_db\" does not exist")
        // Without a `*` entry an auth_dbname that is not configured is a configuration error.
        let strict = try PgmuxProcess(settings: ["auth_user": PostgresCluster.scramUser.0], databases: [
            PostgresCluster.database: "host=127.0.0.1 port=\(c.port) dbname=\(PostgresCluster.database) auth_dbname=nowhere"])
        assertRefused(strict.conninfo(user: "aq_user", password: "aq_pw"), "bouncer config error")
        XCTAssertTrue(strict.log.contains("authentication database \"nowhere\" is not configured."), strict.log)
    }

    func testAuthDbnamePgbouncerIsRefusedAtLoadAndReload() throws {
        XCTAssertThrowsError(try PgmuxProcess(settings: ["auth_dbname": "pgbouncer"])) { error in
            XCTAssertTrue("\(error)".contains("cannot use the reserved \"pgbouncer\" database as an auth_dbname"), "\(error)")
        }
        let p = try PgmuxProcess(settings: ["admin_users": PostgresCluster.scramUser.0])
        var text = try String(contentsOfFile: p.configPath, encoding: .utf8)
        text += "auth_dbname = pgbouncer\n"
        try text.write(toFile: p.configPath, atomically: false, encoding: .utf8)
        let admin = try PQConnection(p.conninfo(database: "pgbouncer"))
        XCTAssertThrowsError(try admin.query("RELOAD"))
        let after = try PQConnection(p.conninfo(database: "pgbouncer"))
        let rows = try after.queryWithColumns("SHOW CONFIG").rows
        XCTAssertEqual(rows.first { $0.first == "auth_dbname" }?[1] ?? nil, nil)
    }

    // MARK: item 13

    func testIgnoredOptionsStillHonourTrackedSettings() throws {
        let p = try PgmuxProcess(settings: ["ignore_startup_parameters": "options"])
        let c = try PQConnection(p.conninfo(extra: "options='-c TimeZone=Asia/Tokyo -c extra_float_digits=2'"))
        XCTAssertEqual(c.parameter("TimeZone"), "Asia/Tokyo")
        XCTAssertEqual(try c.scalar("SHOW TimeZone"), "Asia/Tokyo")
        // Ignoring options does not make malformed text acceptable.
        assertRefused(p.conninfo(extra: "options='-X foo'"),
                      "unsupported options startup parameter: only '-c config=val' and '--config=val' are allowed")
        // Without it an untracked setting is refused, naming the key.
        let strict = try PgmuxProcess()
        assertRefused(strict.conninfo(extra: "options='-c extra_float_digits=2'"),
                      "unsupported startup parameter in options: extra_float_digits")
        XCTAssertTrue(strict.log.contains("unsupported startup parameter in options: extra_float_digits=2"), strict.log)
    }

    // MARK: item 14

    func testRejectedLoginsGetPgBouncersLogLines() throws {
        let p = try PgmuxProcess(settings: ["log_connections": "1", "log_disconnections": "1"],
                                 databases: [PostgresCluster.database: "host=127.0.0.1 port=\(PostgresCluster.shared.port) dbname=\(PostgresCluster.database)"])
        assertRefused(p.conninfo(password: "wrong"), "SASL authentication failed")
        assertRefused(p.conninfo(database: "nope"), "no such database: nope")
        usleep(200_000)  // the error reaches the client before the close is logged
        let log = p.log
        XCTAssertTrue(log.contains("pooler error: SASL authentication failed"), log)
        XCTAssertTrue(log.contains("closing because: SASL authentication failed (age=0s)"), log)
        XCTAssertTrue(log.contains("login failed: db=nope user=\(PostgresCluster.scramUser.0)"), log)
        XCTAssertTrue(log.contains("closing because: no such database: nope (age=0s)"), log)
    }
}
