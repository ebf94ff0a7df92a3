import Foundation
import Glibc
import XCTest

/// High availability without HAProxy (issue 15): host lists with target_session_attrs in front
/// of a real primary and streaming standby; a switchover under write load, with and without
/// failover buffering; the old primary back as a standby.
final class FailoverTests: XCTestCase {
    private func pgmux(_ pair: ReplicaPair, failoverTimeout: String, extra: [String: String] = [:]) throws -> PgmuxProcess {
        var settings = ["auth_type": "trust", "admin_users": "postgres", "failover_timeout": failoverTimeout,
                        "default_pool_size": "2", "server_login_retry": "2", "query_wait_timeout": "60"]
        for (k, v) in extra { settings[k] = v }
        return try PgmuxProcess(settings: settings, databases: [
            "rw": pair.databaseLine("target_session_attrs=read-write"),
            "ro": pair.databaseLine("target_session_attrs=read-only load_balance_hosts=disable"),
            "ps": pair.databaseLine("target_session_attrs=prefer-standby"),
            "single": "host=127.0.0.1 port=\(pair.ports[0]) dbname=postgres",
        ], userlist: [("postgres", "")])
    }

    private func connect(_ p: PgmuxProcess, _ db: String) throws -> PQConnection {
        try PQConnection(p.conninfo(user: "postgres", password: nil, database: db))
    }

    /// The port of the server a new client of `db` gets, and whether it is in recovery.
    private func serverOf(_ p: PgmuxProcess, _ db: String) throws -> String {
        let c = try connect(p, db)
        let row = try c.query("SELECT inet_server_port(), pg_is_in_recovery()")[0]
        return "\(row[0] ?? ""):\(row[1] ?? "")"
    }

    func testTargetSessionAttrsRouteToPrimaryAndStandby() throws {
        let pair = try ReplicaPair()
        let p = try pgmux(pair, failoverTimeout: "1", extra: ["log_disconnections": "1"])
        let primary = "\(pair.ports[0]):f", standby = "\(pair.ports[1]):t"
        for _ in 0..<4 {
            XCTAssertEqual(try serverOf(p, "rw"), primary)
            XCTAssertEqual(try serverOf(p, "ro"), standby)
            XCTAssertEqual(try serverOf(p, "ps"), standby)
        }
        let w = try connect(p, "rw")
        try w.query("INSERT INTO ha_writes (port) SELECT inet_server_port()")
        // A client's own SET default_transaction_read_only retires its server (transaction mode
        // releases it after the SET); other writers never get that session, nor is the host
        // judged read-only for them.
        let setter = try connect(p, "rw")
        try setter.query("SET default_transaction_read_only = on")
        for _ in 0..<6 { try connect(p, "rw").query("INSERT INTO ha_writes (port) SELECT inet_server_port()") }
        XCTAssertTrue(waitUntil(2) { p.log.contains("closing because: server session is read-only (target_session_attrs=read-write)") },
                      p.log)

        let admin = try connect(p, "pgbouncer")
        let dbs = try admin.queryWithColumns("SHOW DATABASES")
        let col = { (name: String) in dbs.columns.firstIndex(of: name)! }
        let rw = try XCTUnwrap(dbs.rows.first { $0[0] == "rw" })
        XCTAssertEqual(rw[col("host")], "127.0.0.1,127.0.0.1")
        XCTAssertEqual(rw[col("port")], "\(pair.ports[0])")
        XCTAssertEqual(rw[col("load_balance_hosts")], "round-robin")
        XCTAssertEqual(try XCTUnwrap(dbs.rows.first { $0[0] == "ro" })[col("load_balance_hosts")], "disable")
        XCTAssertNil(try XCTUnwrap(dbs.rows.first { $0[0] == "single" })[col("load_balance_hosts")])
        let hosts = try admin.queryWithColumns("SHOW HOSTS")
        XCTAssertEqual(hosts.columns, ["database", "host", "port", "target_session_attrs", "role", "state", "failures",
                                       "retry_in", "last_error"])
        let rwHosts = hosts.rows.filter { $0[0] == "rw" }.map { "\($0[2]!) \($0[4]!) \($0[5]!)" }
        XCTAssertEqual(rwHosts, ["\(pair.ports[0]) primary usable", "\(pair.ports[1]) standby wrong role"])

        // The standby stops: prefer-standby falls back to the primary; read-only has nowhere to
        // go and fails after failover_timeout (1 s) with the reason.
        try pair.stop(1)
        XCTAssertTrue(waitUntil(10) { (try? serverOf(p, "ps")) == primary })
        let started = Date()
        XCTAssertThrowsError(try serverOf(p, "ro")) { e in
            let text = "\(e)"
            XCTAssertTrue(text.contains("no server for database \"ro\" user \"postgres\" within failover_timeout"), text)
            XCTAssertTrue(text.contains("127.0.0.1:\(pair.ports[0]): primary"), text)
            XCTAssertTrue(text.contains("(target_session_attrs=read-only)"), text)
        }
        let waited = Date().timeIntervalSince(started)
        XCTAssertGreaterThan(waited, 0.9)
        XCTAssertLessThan(waited, 5)
        XCTAssertEqual(try serverOf(p, "rw"), primary, "other pools unaffected")
        let after = try admin.queryWithColumns("SHOW HOSTS")
        let standbyRow = try XCTUnwrap(after.rows.first { $0[0] == "ro" && $0[2] == "\(pair.ports[1])" })
        XCTAssertEqual(standbyRow[5], "backoff")
        XCTAssertNotEqual(standbyRow[6], "0")
    }

    /// Writes one row per transaction through `rw` on its own thread, reconnecting after errors;
    /// records when each write succeeded and every error.
    private final class WriteProbe: @unchecked Sendable {
        private let lock = NSLock()
        private var stopFlag = false
        private var successList: [Date] = []
        private var errorList: [(Date, String, String?)] = []
        var successes: [Date] { lock.withLock { successList } }
        var errors: [(Date, String, String?)] { lock.withLock { errorList } }
        private let done = DispatchSemaphore(value: 0)

        init(_ conninfo: String) {
            Thread { [self] in
                var c: PQConnection?
                while !lock.withLock({ stopFlag }) {
                    do {
                        if c == nil { c = try PQConnection(conninfo) }
                        try c!.query("INSERT INTO ha_writes (port) SELECT inet_server_port()")
                        lock.withLock { successList.append(Date()) }
                    } catch {
                        let e = error as? PQConnection.Error
                        lock.withLock { errorList.append((Date(), "\(error)", e?.sqlstate)) }
                        c = nil
                        usleep(20_000)
                    }
                }
                done.signal()
            }.start()
        }

        func stop() {
            lock.withLock { stopFlag = true }
            done.wait()
        }

        /// The longest time without a successful write around `from` (the last success before
        /// it to the first after it, or any longer gap later); infinity when none came after.
        func longestGap(after from: Date) -> Double {
            let all = successes
            guard let last = all.last, last > from else { return .infinity }
            let times = (all.last { $0 <= from }.map { [$0] } ?? [from]) + all.filter { $0 > from }
            return zip(times, times.dropFirst()).map { $1.timeIntervalSince($0) }.max() ?? .infinity
        }
    }

    /// pgbench -N through `rw` (8 clients, pool of 2, transaction mode) and a write probe while
    /// the primary is stopped and the standby promoted. Returns what was seen.
    private func switchover(failoverTimeout: String) throws -> (pair: ReplicaPair, pgmux: PgmuxProcess, window: Double,
                                                                afterPromotion: Double, processed: Int, aborted: Int,
                                                                output: String, probe: WriteProbe) {
        let pair = try ReplicaPair()
        let p = try pgmux(pair, failoverTimeout: failoverTimeout)
        XCTAssertEqual(try serverOf(p, "rw"), "\(pair.ports[0]):f")
        let probe = WriteProbe(p.conninfo(user: "postgres", password: nil, database: "rw"))
        let out = pair.dir + "/pgbench.out"
        let bench = try Child("/usr/bin/pgbench", ["-n", "-N", "-c", "8", "-j", "2", "-T", "9", "-h", "127.0.0.1",
                                                  "-p", "\(p.port)", "-U", "postgres", "rw"], outputPath: out)
        sleep(3)
        let stopAt = Date()
        try pair.stop(0)
        let stopped = Date()
        try pair.promote(1)
        let promoted = Date()
        let status = bench.wait(timeout: 40)
        // pgbench ends early when all its clients aborted: the probe still measures the window.
        _ = waitUntil(15) { probe.successes.contains { $0 > stopped } }
        probe.stop()
        let output = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        var processed = 0
        for line in output.split(separator: "\n") where line.hasPrefix("number of transactions actually processed: ") {
            processed = Int(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces).split(separator: "/")[0]) ?? 0
        }
        let aborted = output.components(separatedBy: "aborted in command").count - 1
        XCTAssertTrue(status == 0 || status == 2, "pgbench ran (2: some clients aborted): \(output)")
        XCTAssertFalse(probe.errors.contains { $0.2 == "25006" }, "no write reached a read-only server")
        XCTAssertFalse(output.contains("read-only transaction"), output)
        let firstWrite = probe.successes.first { $0 > promoted }?.timeIntervalSince(promoted) ?? .infinity
        return (pair, p, probe.longestGap(after: stopAt), firstWrite, processed, aborted, output, probe)
    }

    func testSwitchoverWithFailoverBuffering() throws {
        let r = try switchover(failoverTimeout: "10")
        print("failover_timeout=10: writes unavailable for \(String(format: "%.2f", r.window)) s (first write "
              + "\(String(format: "%.2f", r.afterPromotion)) s after pg_ctl promote returned); pgbench processed "
              + "\(r.processed) transactions, \(r.aborted) of 8 clients aborted (in flight at the stop); probe errors: "
              + "\(r.probe.errors.count)")
        XCTAssertLessThanOrEqual(r.aborted, 2, "only transactions on the dead primary fail (pool of 2): \(r.output)")
        XCTAssertFalse(r.output.contains("failover_timeout"), r.output)
        XCTAssertLessThan(r.window, 8)
        XCTAssertLessThanOrEqual(r.probe.errors.count, 1, "\(r.probe.errors)")
        // Writes went on on the new primary.
        let newPrimary = r.pair.ports[1]
        let after = Int(try r.pair.psql(1, "SELECT count(*) FROM ha_writes WHERE port = \(newPrimary)")) ?? 0
        XCTAssertGreaterThan(after, 0)

        // The old primary comes back as a standby: never used for writes, read-only reads go to it.
        try r.pair.restartAsStandby(0, following: 1)
        XCTAssertTrue(waitUntil(15) { (try? serverOf(r.pgmux, "ro")) == "\(r.pair.ports[0]):t" })
        for _ in 0..<6 { XCTAssertEqual(try serverOf(r.pgmux, "rw"), "\(newPrimary):f") }
        let admin = try connect(r.pgmux, "pgbouncer")
        let hosts = try admin.queryWithColumns("SHOW HOSTS").rows.filter { $0[0] == "rw" }.map { "\($0[2]!) \($0[4]!)" }
        XCTAssertEqual(hosts, ["\(r.pair.ports[0]) standby", "\(newPrimary) primary"])
        XCTAssertTrue(r.pgmux.log.contains("is now standby (was primary)"), r.pgmux.log)
    }

    func testSwitchoverWithoutFailoverBuffering() throws {
        let r = try switchover(failoverTimeout: "0")
        print("failover_timeout=0: writes unavailable for \(String(format: "%.2f", r.window)) s (first write "
              + "\(String(format: "%.2f", r.afterPromotion)) s after pg_ctl promote returned); pgbench processed "
              + "\(r.processed) transactions, \(r.aborted) of 8 clients aborted; probe errors: \(r.probe.errors.count)")

        XCTAssertTrue(r.output.contains("within failover_timeout"), "waiting clients were failed: \(r.output)")
        XCTAssertGreaterThan(r.aborted, 2)
        XCTAssertLessThan(r.window, 8)
    }
}
