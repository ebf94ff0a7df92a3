import Foundation
import Glibc
import XCTest

/// Replication connections (`replication=true` / `replication=database`) through pgmux, with
/// PostgreSQL's own tools: each gets a walsender of its own, in session mode whatever pool_mode
/// says, and the replication protocol (CopyBoth) relayed untouched.
final class ReplicationTests: XCTestCase {
    private let cluster = PostgresCluster.shared
    private static let noReplication = ("norepl_user", "norepl_pw")

    private func pgmux() throws -> PgmuxProcess {
        try PgmuxProcess(settings: ["pool_mode": "transaction", "log_connections": "1", "admin_users": "admin"],
                         userlist: [PostgresCluster.scramUser, Self.noReplication, ("admin", "adminpw")])
    }

    private func dsn(_ p: PgmuxProcess, user: (String, String) = PostgresCluster.scramUser) -> String {
        "host=127.0.0.1 port=\(p.port) user=\(user.0) password=\(user.1)"
    }

    private func tool(_ name: String) -> String { "\(cluster.binDir)/\(name)" }

    /// `(type, replication, state)` of SHOW CLIENTS and SHOW SERVERS rows of replication connections.
    private func replicationRows(_ p: PgmuxProcess) throws -> [String] {
        let admin = try PQConnection(p.conninfo(user: "admin", password: "adminpw", database: "pgbouncer"))
        var out: [String] = []
        for what in ["CLIENTS", "SERVERS"] {
            let res = try admin.queryWithColumns("SHOW \(what)")
            let t = res.columns.firstIndex(of: "type")!, r = res.columns.firstIndex(of: "replication")!
            let s = res.columns.firstIndex(of: "state")!
            XCTAssertEqual(Array(res.columns[0...4]), ["type", "user", "database", "replication", "state"])
            for row in res.rows where row[r] != "none" { out.append("\(row[t]!) \(row[r]!) \(row[s]!)") }
        }
        return out.sorted()
    }

    func testBaseBackupStreamsThroughPgmux() throws {
        let p = try pgmux()
        let target = cluster.dir + "/basebackup-\(p.port)"
        defer { try? FileManager.default.removeItem(atPath: target) }
        let out = try Shell.run(tool("pg_basebackup"), ["-d", dsn(p), "-D", target, "-X", "stream", "-c", "fast", "--no-sync"],
                                timeout: 60)
        XCTAssertTrue(FileManager.default.fileExists(atPath: target + "/PG_VERSION"), out)
        let wal = (try? FileManager.default.contentsOfDirectory(atPath: target + "/pg_wal")) ?? []
        XCTAssertTrue(wal.contains { $0.count == 24 }, "WAL streamed alongside: \(wal)")
        XCTAssertTrue(p.log.contains("replication=yes"), "login attempts logged as replication")
        // Both walsenders were closed when pg_basebackup left, not kept for reuse.
        XCTAssertTrue(waitUntil(5) { (try? self.replicationRows(p)) == [] }, "\((try? replicationRows(p)) ?? [])")
        // Normal clients of the same database and user are unaffected (transaction mode).
        let c = try PQConnection(p.conninfo())
        XCTAssertEqual(try c.scalar("SELECT 'normal'"), "normal")
    }

    func testReceiveWALThroughPgmux() throws {
        let p = try pgmux()
        let target = cluster.dir + "/receivewal-\(p.port)"
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: target) }
        let receiver = try Child(tool("pg_receivewal"), ["-d", dsn(p), "-D", target, "--no-sync", "--no-loop"],
                                 outputPath: target + ".log")
        defer { receiver.signal(SIGKILL); _ = receiver.wait(timeout: 5) }
        func files() -> [String] { (try? FileManager.default.contentsOfDirectory(atPath: target)) ?? [] }
        XCTAssertTrue(waitUntil(15) { files().contains { $0.hasSuffix(".partial") } },
                      "no partial segment: \((try? String(contentsOfFile: target + ".log", encoding: .utf8)) ?? "")")
        XCTAssertEqual(try replicationRows(p), ["C physical active", "S physical active"])
        // A finished segment arrives once the server switches to the next one.
        try cluster.psql("CREATE TABLE IF NOT EXISTS receivewal_t (x int); INSERT INTO receivewal_t VALUES (1); SELECT pg_switch_wal()")
        XCTAssertTrue(waitUntil(15) { files().contains { $0.count == 24 } }, "\(files())")
        receiver.signal(SIGINT)
        XCTAssertEqual(receiver.wait(timeout: 10), 0)
        XCTAssertTrue(waitUntil(5) { (try? self.replicationRows(p)) == [] }, "\((try? replicationRows(p)) ?? [])")
    }

    func testLogicalSubscriptionThroughPgmux() throws {
        let p = try pgmux()
        let suffix = "\(p.port)"
        try cluster.psql("CREATE TABLE repl_\(suffix) (id int PRIMARY KEY, v text); CREATE PUBLICATION pub_\(suffix) FOR TABLE repl_\(suffix)",
                         db: PostgresCluster.database)
        let subscriber = try ScratchCluster()
        try subscriber.psql("CREATE TABLE repl_\(suffix) (id int PRIMARY KEY, v text)")
        try subscriber.psql("""
            CREATE SUBSCRIPTION sub_\(suffix) CONNECTION '\(dsn(p)) dbname=\(PostgresCluster.database)' PUBLICATION pub_\(suffix)
            """)
        defer {
            _ = try? subscriber.psql("DROP SUBSCRIPTION sub_\(suffix)")
            subscriber.stop()
        }
        // Rows inserted through pgmux by a normal client reach the subscriber.
        let c = try PQConnection(p.conninfo())
        try c.query("INSERT INTO repl_\(suffix) SELECT g, 'row ' || g FROM generate_series(1, 100) g")
        XCTAssertTrue(waitUntil(15) { (try? subscriber.psql("SELECT count(*) FROM repl_\(suffix)"))?.trimmingCharacters(in: .whitespacesAndNewlines) == "100" },
                      subscriber.log)
        try c.query("UPDATE repl_\(suffix) SET v = 'changed' WHERE id = 7")
        XCTAssertTrue(waitUntil(10) { (try? subscriber.psql("SELECT v FROM repl_\(suffix) WHERE id = 7"))?.trimmingCharacters(in: .whitespacesAndNewlines) == "changed" })
        XCTAssertTrue(try replicationRows(p).contains("C logical active"), "\((try? replicationRows(p)) ?? [])")
        // One SHOW POOLS row per (database, user), as in PgBouncer: the walsender's client counts in
        // the normal pool's row, whose mode stays the configured one.
        let admin = try PQConnection(p.conninfo(user: "admin", password: "adminpw", database: "pgbouncer"))
        let pools = try admin.queryWithColumns("SHOW POOLS")
        let db = pools.columns.firstIndex(of: "database")!, user = pools.columns.firstIndex(of: "user")!
        let mine = pools.rows.filter { $0[db] == PostgresCluster.database && $0[user] == PostgresCluster.scramUser.0 }
        XCTAssertEqual(mine.count, 1)
        XCTAssertEqual(mine.first?[pools.columns.firstIndex(of: "pool_mode")!], "transaction")
        XCTAssertGreaterThanOrEqual(Int(mine.first?[pools.columns.firstIndex(of: "cl_active")!] ?? "") ?? 0, 2)
        XCTAssertTrue(p.log.contains("replication=database"))
    }

    func testRecvLogicalDecodesThroughPgmux() throws {
        let p = try pgmux()
        let slot = "recvlogical_\(p.port)", table = "decoded_\(p.port)"
        let out = cluster.dir + "/\(slot).out"
        defer { unlink(out) }
        let conn = "\(dsn(p)) dbname=\(PostgresCluster.database)"
        try cluster.psql("CREATE TABLE \(table) (id int)", db: PostgresCluster.database)
        try Shell.run(tool("pg_recvlogical"), ["-d", conn, "--slot", slot, "--create-slot", "-P", "test_decoding"], timeout: 30)
        defer { _ = try? Shell.run(tool("pg_recvlogical"), ["-d", conn, "--slot", slot, "--drop-slot"], timeout: 30) }
        let receiver = try Child(tool("pg_recvlogical"), ["-d", conn, "--slot", slot, "--start", "-f", out, "-F", "0", "--no-loop"],
                                 outputPath: out + ".log")
        defer { receiver.signal(SIGKILL); _ = receiver.wait(timeout: 5) }
        XCTAssertTrue(waitUntil(10) { (try? self.replicationRows(p)) == ["C logical active", "S logical active"] },
                      "\((try? replicationRows(p)) ?? [])")
        try PQConnection(p.conninfo()).query("INSERT INTO \(table) VALUES (41), (42)")
        func decoded() -> String { (try? String(contentsOfFile: out, encoding: .utf8)) ?? "" }
        XCTAssertTrue(waitUntil(10) { decoded().contains("table public.\(table): INSERT: id[integer]:42") },
                      decoded() + ((try? String(contentsOfFile: out + ".log", encoding: .utf8)) ?? ""))
        receiver.signal(SIGINT)
        XCTAssertEqual(receiver.wait(timeout: 10), 0)
        XCTAssertTrue(waitUntil(5) { (try? self.replicationRows(p)) == [] }, "\((try? replicationRows(p)) ?? [])")
    }

    /// The text after `FATAL:` of a refused login (the first line of it).
    private func fatalText(_ conninfo: String) -> String {
        do {
            _ = try PQConnection(conninfo)
            return "connected"
        } catch {
            let text = "\(error)"
            guard let r = text.range(of: "FATAL:") else { return text }
            // libpq may try twice (TLS, then plain) and report both: the first answer is enough.
            let rest = text[r.upperBound...].trimmingCharacters(in: .whitespaces)
            return String(rest.prefix { $0 != "\n" })
        }
    }

    func testUserWithoutReplicationGetsPostgreSQLsError() throws {
        let (user, password) = Self.noReplication
        try cluster.psql("""
            DO $$ BEGIN
              IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '\(user)') THEN
                CREATE ROLE \(user) LOGIN NOREPLICATION PASSWORD '\(password)';
              END IF;
            END $$
            """)
        let p = try pgmux()
        let direct = "host=127.0.0.1 port=\(cluster.port) user=\(user) password=\(password) dbname=\(PostgresCluster.database)"
        let through = "\(dsn(p, user: Self.noReplication)) dbname=\(PostgresCluster.database)"
        for replication in ["true", "database"] {
            let expected = fatalText("\(direct) replication=\(replication)")
            XCTAssertTrue(expected.contains("replication") || expected.contains("WAL sender"), expected)
            XCTAssertEqual(fatalText("\(through) replication=\(replication)"), expected, "replication=\(replication)")
        }
        // A value PostgreSQL does not take gets its text too.
        XCTAssertEqual(fatalText("\(through) replication=maybe"),
                       fatalText("\(direct) replication=maybe"))
        // The same user without replication logs in normally.
        let c = try PQConnection(through)
        XCTAssertEqual(try c.scalar("SELECT current_user"), user)
    }
}
