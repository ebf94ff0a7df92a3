import Foundation
import Glibc
import XCTest

/// `pgmux -R`: a new process takes the listening sockets and the idle clients of a running one,
/// which finishes what it still holds and exits.
final class OnlineRestartTests: XCTestCase {
    private static let admin = ("admin", "adminpw")

    private func start(_ settings: [String: String] = [:]) throws -> PgmuxProcess {
        // Plain server connections: TLS ones (server_tls_sslmode=prefer finds TLS on the test
        // cluster) cannot be handed over.
        var s = ["admin_users": "admin", "server_tls_sslmode": "disable"]
        for (k, v) in settings { s[k] = v }
        return try PgmuxProcess(settings: s, userlist: [PostgresCluster.scramUser, Self.admin])
    }

    /// `pgmux -R config`, logging to its own file in the old process's directory.
    private func restart(_ old: PgmuxProcess, config: String? = nil, log: String = "pgmux-new.log") throws -> Child {
        let args = (geteuid() == 0 ? ["-u", "postgres"] : []) + ["-R", config ?? old.configPath]
        return try Child(PgmuxProcess.binary, args, outputPath: old.dir + "/" + log)
    }

    private func console(_ p: PgmuxProcess) throws -> PQConnection {
        try PQConnection(p.conninfo(user: Self.admin.0, password: Self.admin.1, database: "pgbouncer"))
    }

    /// SHOW CLIENTS rows of `user` with this application_name.
    private func clients(_ admin: PQConnection, application: String) throws -> Int {
        let (columns, rows) = try admin.queryWithColumns("SHOW CLIENTS")
        let user = columns.firstIndex(of: "user")!, app = columns.firstIndex(of: "application_name")!
        return rows.filter { $0[user] == PostgresCluster.scramUser.0 && $0[app] == application }.count
    }

    private func state(_ admin: PQConnection) throws -> [String: String] {
        var d: [String: String] = [:]
        for r in try admin.query("SHOW STATE") { d[r[0] ?? ""] = r[1] ?? "" }
        return d
    }

    /// Runs `body` on a thread of its own; `wait` returns its result.
    private final class Background<T>: @unchecked Sendable {
        private var result: Result<T, Error>?
        private let done = DispatchSemaphore(value: 0)
        init(_ body: @escaping @Sendable () throws -> T) {
            Thread.detachNewThread { [self] in
                result = Result { try body() }
                done.signal()
            }
        }
        func wait() throws -> T {
            done.wait()
            return try result!.get()
        }
    }

    /// Connects, runs one query, disconnects, again and again: every failure is a refused (or
    /// broken) connection during the restart.
    private final class Prober: @unchecked Sendable {
        private let lock = NSLock()
        private var stopped = false
        private(set) var ok = 0, failed: [String] = []
        private let done = DispatchSemaphore(value: 0)

        init(_ conninfo: String) {
            Thread.detachNewThread { [self] in
                while !lock.withLock({ stopped }) {
                    do {
                        let v = try PQConnection(conninfo).scalar("SELECT 1")
                        lock.withLock { if v == "1" { ok += 1 } else { failed.append("answer \(v ?? "nil")") } }
                    } catch { lock.withLock { failed.append("\(error)") } }
                    usleep(5_000)
                }
                done.signal()
            }
        }

        func stop() -> (ok: Int, failed: [String]) {
            lock.withLock { stopped = true }
            done.wait()
            return lock.withLock { (ok, failed) }
        }
    }

    private func restartUnderPgbench(mode: String, settings: [String: String] = [:]) throws {
        let old = try start(settings)
        let bench = Background { [port = old.port] in
            try Pgbench.run(port: port, clients: 8, seconds: 10, args: ["-S", "-M", mode])
        }
        let prober = Prober(old.conninfo(extra: "application_name=prober"))
        let oldConsole = try console(old)
        XCTAssertTrue(try waitUntil(5) { try clients(oldConsole, application: "pgbench") == 8 })
        sleep(2)
        let new = try restart(old)
        defer { new.signal(SIGQUIT); new.wait(timeout: 10) }
        XCTAssertTrue(waitUntil(15) { !old.isRunning }, "the old process exits: \(old.log)")
        let newConsole = try console(old)  // the same port: the new process now
        XCTAssertEqual(try state(newConsole)["restart"], nil, "the restart is over")
        XCTAssertEqual(try clients(newConsole, application: "pgbench"), 8, "pgbench kept its connections")
        let (columns, pools) = try newConsole.queryWithColumns("SHOW POOLS")
        let db = columns.firstIndex(of: "database")!, active = columns.firstIndex(of: "cl_active")!,
            waiting = columns.firstIndex(of: "cl_waiting")!
        let pool = pools.first { $0[db] == PostgresCluster.database }
        XCTAssertGreaterThanOrEqual((Int(pool?[active] ?? "") ?? 0) + (Int(pool?[waiting] ?? "") ?? 0), 8, "\(pools)")
        let result = try bench.wait()  // throws on any error, aborted client or failed transaction
        let probes = prober.stop()
        print("online restart under pgbench -M \(mode): \(result.transactions) transactions, 0 failed; " +
              "probe connections: \(probes.ok) ok, \(probes.failed.count) failed")
        XCTAssertEqual(probes.failed, [], "no connection refused or broken during the restart")
        XCTAssertGreaterThan(probes.ok, 10)
        XCTAssertTrue(old.log.contains("takeover: every client handed over"), old.log)
        let newLog = (try? String(contentsOfFile: old.dir + "/pgmux-new.log", encoding: .utf8)) ?? ""
        // How many servers move under load depends on timing (a server is lent again as soon as it
        // is released while clients wait); the idle and session tests check that they move.
        print(newLog.split(separator: "\n").first { $0.contains("old process killed, resuming work") } ?? "")
    }

    func testRestartUnderPgbenchSimpleProtocol() throws { try restartUnderPgbench(mode: "simple") }

    func testRestartUnderPgbenchPreparedStatements() throws { try restartUnderPgbench(mode: "prepared") }

    func testRestartUnderPgbenchSessionPooling() throws {
        try restartUnderPgbench(mode: "prepared", settings: ["pool_mode": "session", "default_pool_size": "12"])
    }

    /// Session pooling: a client moves with its server, session state (a temporary table) and all;
    /// the new process knows the session needs a reset when the client leaves.
    func testSessionClientMovesWithItsServer() throws {
        let old = try start(["pool_mode": "session", "default_pool_size": "1"])
        let c = try PQConnection(old.conninfo())
        _ = try c.query("CREATE TEMP TABLE kept (x int)")
        _ = try c.query("INSERT INTO kept VALUES (42)")
        let backend = try c.scalar("SELECT pg_backend_pid()")
        let new = try restart(old)
        defer { new.signal(SIGQUIT); new.wait(timeout: 10) }
        XCTAssertTrue(waitUntil(10) { !old.isRunning }, old.log)
        XCTAssertEqual(try c.scalar("SELECT x FROM kept"), "42")
        XCTAssertEqual(try c.scalar("SELECT pg_backend_pid()"), backend)
        _ = try c.query("BEGIN")
        _ = try c.query("INSERT INTO kept VALUES (43)")
        _ = try c.query("COMMIT")
        XCTAssertEqual(try c.scalar("SELECT count(*) FROM kept"), "2")
        let (columns, pools) = try console(old).queryWithColumns("SHOW POOLS")
        let db = columns.firstIndex(of: "database")!, active = columns.firstIndex(of: "sv_active")!
        XCTAssertEqual(pools.first { $0[db] == PostgresCluster.database }?[active], "1", "\(pools)")
        let newLog = (try? String(contentsOfFile: old.dir + "/pgmux-new.log", encoding: .utf8)) ?? ""
        XCTAssertTrue(newLog.contains("old process killed, resuming work (1 clients, 1 servers taken over)"), newLog)
        c.finish()
        let next = try PQConnection(old.conninfo())
        XCTAssertEqual(try next.scalar("SELECT pg_backend_pid()"), backend, "the only server")
        XCTAssertEqual(try next.scalar("SELECT count(*) FROM pg_tables WHERE tablename = 'kept'"), "0", "reset before reuse")
    }

    /// Transaction pooling: a client pinned by a temporary table moves with its server.
    func testPinnedClientMovesWithItsServer() throws {
        let old = try start()
        let c = try PQConnection(old.conninfo())
        _ = try c.query("CREATE TEMP TABLE pinned_here (x int)")
        _ = try c.query("INSERT INTO pinned_here VALUES (1)")
        let backend = try c.scalar("SELECT pg_backend_pid()")
        let new = try restart(old)
        defer { new.signal(SIGQUIT); new.wait(timeout: 10) }
        XCTAssertTrue(waitUntil(10) { !old.isRunning }, old.log)
        XCTAssertEqual(try c.scalar("SELECT count(*) FROM pinned_here"), "1")
        XCTAssertEqual(try c.scalar("SELECT pg_backend_pid()"), backend)
        let (columns, rows) = try console(old).queryWithColumns("SHOW CLIENTS")
        let pinned = columns.firstIndex(of: "pinned")!, user = columns.firstIndex(of: "user")!
        XCTAssertEqual(rows.filter { $0[user] == PostgresCluster.scramUser.0 }.map { $0[pinned] }, ["1"], "\(rows)")
        _ = try c.query("DROP TABLE pinned_here")
        XCTAssertEqual(try c.scalar("SELECT 1"), "1")
    }

    /// An idle libpq client moves with its prepared statement, its tracked parameters and its
    /// session settings; the idle server moves too (the same backend answers), with the statement
    /// it has prepared and the settings it has; the metrics socket goes along.
    func testIdleClientKeepsPreparedStatementAndParameters() throws {
        let metricsPort = PostgresCluster.freePort()
        let old = try start(["default_pool_size": "1", "metrics_port": "\(metricsPort)"])
        let c = try PQConnection(old.conninfo())
        try c.prepare("plus_one", "SELECT $1::int + 1")
        XCTAssertEqual(try c.execPrepared("plus_one", ["41"]).first?.first, "42")
        _ = try c.query("SET application_name = 'kept_across'")
        _ = try c.query("SET work_mem = '7MB'")
        let defaultWorkMem = try XCTUnwrap(try PQConnection(old.conninfo(extra: "application_name=other"))
            .scalar("SELECT current_setting('work_mem')"))
        XCTAssertNotEqual(defaultWorkMem, "7MB")
        let backend = try c.scalar("SELECT pg_backend_pid()")
        let new = try restart(old)
        defer { new.signal(SIGQUIT); new.wait(timeout: 10) }
        XCTAssertTrue(waitUntil(10) { !old.isRunning }, old.log)
        // The same (only) server, first for another client: the work_mem it has from c is reset.
        let other = try PQConnection(old.conninfo(extra: "application_name=other"))
        XCTAssertEqual(try other.scalar("SELECT current_setting('work_mem') || ' ' || pg_backend_pid()"),
                       "\(defaultWorkMem) \(backend ?? "")", "the server connection was handed over, with its settings")
        XCTAssertEqual(try c.scalar("SHOW work_mem"), "7MB", "c's settings follow it")
        XCTAssertEqual(try c.execPrepared("plus_one", ["1"]).first?.first, "2")
        XCTAssertEqual(try c.scalar("SHOW application_name"), "kept_across")
        XCTAssertEqual(try c.scalar("SELECT pg_backend_pid()"), backend)
        let newConsole = try console(old)
        let (columns, servers) = try newConsole.queryWithColumns("SHOW SERVERS")
        let prepared = columns.firstIndex(of: "prepared_statements")!
        XCTAssertEqual(servers.map { $0[prepared] }, ["1"], "the server's statement is known: no second Parse")
        XCTAssertEqual(try clients(newConsole, application: "kept_across"), 1)
        let metrics = rawExchange(port: metricsPort, send: Array("GET /metrics HTTP/1.0\r\n\r\n".utf8))
        XCTAssertTrue(String(decoding: metrics, as: UTF8.self).contains("pgbouncer_up 1"), "metrics served by the new process")
        let newLog = (try? String(contentsOfFile: old.dir + "/pgmux-new.log", encoding: .utf8)) ?? ""
        XCTAssertTrue(newLog.contains("old process killed, resuming work (1 clients, 1 servers taken over)"), newLog + old.log)
    }

    /// A client in a long query stays in the old process; a cancel request, which now reaches the
    /// new process, is passed to the old one and cancels it; then the client moves.
    func testCancelReachesClientStillInOldProcess() throws {
        let old = try start()
        let c = try PQConnection(old.conninfo())
        let sleeping = Background { try c.scalar("SELECT pg_sleep(20)") }
        let oldConsole = try console(old)
        XCTAssertTrue(try waitUntil(5) {
            try oldConsole.query("SHOW SERVERS").contains { $0.contains("active") }
        })
        let new = try restart(old)
        defer { new.signal(SIGQUIT); new.wait(timeout: 10) }
        XCTAssertTrue(try waitUntil(10) { try state(oldConsole)["restart"] == "handing over" }, old.log)
        let started = Date()
        XCTAssertTrue(c.cancel())
        XCTAssertThrowsError(try sleeping.wait()) { error in
            XCTAssertTrue("\(error)".contains("canceling statement due to user request"), "\(error)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 5)
        XCTAssertTrue(waitUntil(10) { !old.isRunning }, old.log)
        XCTAssertEqual(try c.scalar("SELECT 7"), "7")
    }

    /// SIGURG: the running process starts `pgmux -R` itself; the pid file follows; the new
    /// process can be restarted the same way.
    func testRestartSignalStartsTheNewProcessTwice() throws {
        let pidfile = NSTemporaryDirectory() + "pgmux-restart-\(getpid()).pid"
        defer { unlink(pidfile) }
        func pid() -> Int32? {
            Int32(((try? String(contentsOfFile: pidfile, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines))
        }
        let old = try start(["pidfile": pidfile])
        XCTAssertEqual(pid(), old.pid)
        let c = try PQConnection(old.conninfo())
        XCTAssertEqual(try c.scalar("SELECT 1"), "1")
        var current = old.pid
        defer { if current != old.pid { kill(current, SIGQUIT) } }
        for round in 1...2 {
            let before = current
            kill(before, SIGURG)
            XCTAssertTrue(waitUntil(10) { kill(before, 0) != 0 || (before == old.pid && !old.isRunning) }, "round \(round): \(old.log)")
            XCTAssertTrue(waitUntil(5) { pid().map { $0 != before && kill($0, 0) == 0 } ?? false }, "round \(round): \(old.log)")
            current = pid() ?? 0
            XCTAssertEqual(try c.scalar("SELECT \(round)"), "\(round)", "round \(round)")
            XCTAssertEqual(try PQConnection(old.conninfo()).scalar("SELECT 1"), "1")
        }
        XCTAssertTrue(old.log.contains("got SIGURG, starting the new process for an online restart"), old.log)
    }

    /// A TLS session cannot move: that client stays on the old process, which exits when it leaves.
    func testTLSClientStaysUntilItDisconnects() throws {
        let t = PostgresCluster.shared.tlsDir
        let old = try start(["client_tls_sslmode": "allow", "client_tls_cert_file": t + "/server.crt",
                             "client_tls_key_file": t + "/server.key"])
        let tls = try PQConnection(old.conninfo(extra: "sslmode=require"))
        let plain = try PQConnection(old.conninfo(extra: "sslmode=disable"))
        let oldConsole = try PQConnection(old.conninfo(user: Self.admin.0, password: Self.admin.1, database: "pgbouncer",
                                                       extra: "sslmode=disable"))
        let new = try restart(old)
        defer { new.signal(SIGQUIT); new.wait(timeout: 10) }
        XCTAssertTrue(try waitUntil(10) { try state(oldConsole)["restart_clients"] == "1" }, old.log)
        XCTAssertEqual(try state(oldConsole)["restart"], "handing over")
        XCTAssertEqual(try plain.scalar("SELECT 2"), "2")
        XCTAssertEqual(try tls.scalar("SELECT 3"), "3", "the TLS client is still served by the old process")
        sleep(1)
        XCTAssertTrue(old.isRunning, "the old process waits for its TLS client")
        tls.finish()
        XCTAssertTrue(waitUntil(10) { !old.isRunning }, old.log)
        XCTAssertEqual(try plain.scalar("SELECT 4"), "4")
    }

    /// A new process that fails (bad config, or after it received the sockets) or a peer that
    /// sends garbage leaves the old one serving; a later restart still works.
    func testFailedRestartLeavesOldProcessServing() throws {
        let old = try start()
        let c = try PQConnection(old.conninfo())
        let bad = old.dir + "/bad.ini"
        try "[pgmux]\nlisten_port = nonsense\n".write(toFile: bad, atomically: false, encoding: .utf8)
        XCTAssertNotEqual(try restart(old, config: bad, log: "bad.log").wait(timeout: 10), 0)
        // This one takes the sockets, then cannot load its TLS key and exits before it accepts.
        let broken = old.dir + "/broken.ini"
        let text = try String(contentsOfFile: old.configPath, encoding: .utf8)
        try text.replacingOccurrences(of: "[pgmux]\n", with: "[pgmux]\nclient_tls_sslmode = allow\n" +
                                      "client_tls_cert_file = /nonexistent.crt\nclient_tls_key_file = /nonexistent.key\n")
            .write(toFile: broken, atomically: false, encoding: .utf8)
        let prober = Prober(old.conninfo(extra: "application_name=prober"))
        XCTAssertNotEqual(try restart(old, config: broken, log: "broken.log").wait(timeout: 10), 0)
        // Garbage on the takeover socket.
        let fd = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0)
        var sun = sockaddr_un()
        sun.sun_family = sa_family_t(AF_UNIX)
        let path = Array("\(old.dir)/.s.PGSQL.\(old.port).takeover".utf8)
        withUnsafeMutableBytes(of: &sun.sun_path) { p in for (i, b) in path.enumerated() { p[i] = b } }
        let rc = withUnsafePointer(to: &sun) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(rc, 0)
        XCTAssertEqual(send(fd, [0x5a, 1, 2], 3, 0), 3)
        var byte: UInt8 = 0
        var limit = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        let n = recv(fd, &byte, 1, 0), e = errno
        XCTAssertTrue(n == 0 || (n < 0 && e == ECONNRESET), "the old process hangs up on garbage: \(n), \(e)")
        close(fd)
        let probes = prober.stop()
        XCTAssertEqual(probes.failed, [])
        XCTAssertTrue(old.isRunning)
        XCTAssertEqual(try c.scalar("SELECT 5"), "5")
        XCTAssertTrue(old.log.contains("takeover: new process failed before taking over"), old.log)
        let new = try restart(old)
        defer { new.signal(SIGQUIT); new.wait(timeout: 10) }
        XCTAssertTrue(waitUntil(10) { !old.isRunning }, old.log)
        XCTAssertEqual(try c.scalar("SELECT 6"), "6")
    }
}
