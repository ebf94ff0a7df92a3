import Foundation
import Glibc
import XCTest

/// Faults and hostile input against the real cluster: the damage stays with the one connection
/// concerned, everyone else is served, nothing leaks.
final class FaultTests: XCTestCase {
    private func idleInTransaction() throws -> Int {
        Int(try PostgresCluster.shared.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = '\(PostgresCluster.scramUser.0)' AND state LIKE 'idle in transaction%'")
            .trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }

    /// A raw protocol client logging in with auth_type=trust (no libpq), for misbehaving on purpose.
    private func rawLogin(port: Int) -> Int32 {
        let fd = loopbackConnect(port: port) ?? -1
        var body: [UInt8] = [0, 3, 0, 0] + Array("user\0\(PostgresCluster.scramUser.0)\0database\0\(PostgresCluster.database)\0\0".utf8)
        let n = UInt32(body.count + 4)
        body = [UInt8(n >> 24), UInt8(truncatingIfNeeded: n >> 16), UInt8(truncatingIfNeeded: n >> 8), UInt8(truncatingIfNeeded: n)] + body
        _ = body.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var buf = [UInt8](repeating: 0, count: 4096)
        var tv = timeval(tv_sec: 3, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var got: [UInt8] = []
        while !(got.count >= 6 && got[got.count - 6] == UInt8(ascii: "Z")) {
            let r = recv(fd, &buf, buf.count, 0)
            if r <= 0 { break }
            got += buf[0..<r]
        }
        return fd
    }

    private func sendQuery(_ fd: Int32, _ sql: String) {
        var m: [UInt8] = [UInt8(ascii: "Q")]
        let n = UInt32(sql.utf8.count + 5)
        m += [UInt8(n >> 24), UInt8(truncatingIfNeeded: n >> 16), UInt8(truncatingIfNeeded: n >> 8), UInt8(truncatingIfNeeded: n)]
        m += Array(sql.utf8) + [0]
        _ = m.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    func testSlowReaderDoesNotMakePgmuxBuffer() throws {
        let pgmux = try PgmuxProcess(settings: ["auth_type": "trust"])
        let fd = rawLogin(port: pgmux.port)
        defer { close(fd) }
        let before = pgmux.rssKB
        // ~200 MB of result that the client never reads.
        sendQuery(fd, "SELECT repeat('x', 1000) FROM generate_series(1, 200000)")
        sleep(2)
        let after = pgmux.rssKB
        XCTAssertLessThan(after - before, 16 * 1024, "RSS grew \(after - before) kB: back-pressure must hold the server")
        XCTAssertEqual(try PQConnection(pgmux.conninfo()).scalar("SELECT 'others fine'"), "others fine")
    }

    func testClientsVanishingMidTransactionAndMidCopyLeaveNoDirtyServer() throws {
        let pgmux = try PgmuxProcess(settings: ["auth_type": "trust", "default_pool_size": "2"])
        try PostgresCluster.shared.psql("CREATE TABLE IF NOT EXISTS vanish (x int)", db: PostgresCluster.database)
        let baselineFDs = pgmux.openFDs
        for i in 0..<10 {
            let fd = rawLogin(port: pgmux.port)
            switch i % 3 {
            case 0: sendQuery(fd, "BEGIN; INSERT INTO vanish VALUES (1)")
            case 1: sendQuery(fd, "COPY vanish FROM STDIN")
            default: sendQuery(fd, "SELECT pg_sleep(0.2)")
            }
            usleep(100_000)
            close(fd)  // gone without Terminate
        }
        usleep(700_000)
        XCTAssertEqual(try idleInTransaction(), 0)
        let c = try PQConnection(pgmux.conninfo())
        XCTAssertEqual(try c.scalar("SELECT count(*) FROM vanish"), "0", "nothing a client did not commit is committed")
        XCTAssertLessThanOrEqual(pgmux.openFDs, baselineFDs + 3, "client and dropped-server fds are closed")
    }

    func testBackendTerminatedUnderLoadOnlyHurtsItsClient() throws {
        let pgmux = try PgmuxProcess(settings: ["default_pool_size": "4"])
        let port = pgmux.port
        let result = ErrorBox()
        let output = DataBox()
        let t = Thread {
            do {
                output.data = Data(try Shell.runStatus("/usr/bin/pgbench", ["-n", "-S", "-c", "8", "-j", "2", "-T", "4",
                    "-h", "127.0.0.1", "-p", "\(port)", "-U", PostgresCluster.scramUser.0, PostgresCluster.database],
                    env: ["PGPASSWORD": PostgresCluster.scramUser.1]).output.utf8)
            } catch { result.error = error }
        }
        t.start()
        sleep(1)
        try PostgresCluster.shared.psql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '\(PostgresCluster.scramUser.0)' AND pid <> pg_backend_pid() LIMIT 1")
        while t.isExecuting || !t.isFinished { usleep(100_000) }
        let text = String(decoding: output.data, as: UTF8.self)
        // At most the clients linked to the killed backend abort; the run as a whole goes on.
        let processed = text.split(separator: "\n").first { $0.hasPrefix("number of transactions actually processed") } ?? ""
        XCTAssertFalse(processed.isEmpty, text)
        XCTAssertTrue(pgmux.isRunning)
        XCTAssertEqual(try PQConnection(pgmux.conninfo()).scalar("SELECT 1"), "1")
        XCTAssertEqual(try idleInTransaction(), 0)
    }

    func testPostgresRestartIsSurvived() throws {
        let pgmux = try PgmuxProcess(settings: ["query_wait_timeout": "3", "server_login_retry": "1",
                                                "default_pool_size": "2"])
        let c = try PQConnection(pgmux.conninfo())
        XCTAssertEqual(try c.scalar("SELECT 1"), "1")
        let cluster = PostgresCluster.shared
        try cluster.asPostgres("\(cluster.binDir)/pg_ctl", ["-D", "\(cluster.dir)/data", "-m", "fast", "-w", "stop"])
        // Down: an error, not a hang.
        let started = Date()
        XCTAssertThrowsError(try c.query("SELECT 2"))
        XCTAssertLessThan(Date().timeIntervalSince(started), 8)
        try cluster.asPostgres("\(cluster.binDir)/pg_ctl", ["-D", "\(cluster.dir)/data", "-l", "\(cluster.dir)/postgres.log", "-w", "start"])
        // Back: service returns by itself for new clients.
        var ok = false
        for _ in 0..<30 {
            if let d = try? PQConnection(pgmux.conninfo()), (try? d.scalar("SELECT 3")) == "3" { ok = true; break }
            usleep(300_000)
        }
        XCTAssertTrue(ok, pgmux.log)
        XCTAssertTrue(pgmux.isRunning)
    }

    func testFileDescriptorExhaustionRefusesNewClientsOnly() throws {
        let pgmux = try PgmuxProcess(settings: ["auth_type": "trust", "max_client_conn": "1000"],
                                     launcher: ["/usr/bin/prlimit", "--nofile=40:40", "--"])
        XCTAssertTrue(pgmux.log.contains("file descriptor limit 40"), "a clear log line when the limit cannot be raised: \(pgmux.log)")
        var held: [PQConnection] = []
        for _ in 0..<60 {
            guard let c = try? PQConnection(pgmux.conninfo(extra: "connect_timeout=2")) else { break }
            held.append(c)
        }
        XCTAssertLessThan(held.count, 40, "the fd limit bounds the clients")
        XCTAssertGreaterThan(held.count, 10)
        XCTAssertEqual(try held[0].scalar("SELECT 'existing ok'"), "existing ok")
        XCTAssertTrue(pgmux.log.contains("accept() failed"), pgmux.log)
        for c in held.suffix(10) { c.finish() }
        held.removeLast(10)
        usleep(800_000)
        XCTAssertEqual(try PQConnection(pgmux.conninfo()).scalar("SELECT 'accepting again'"), "accepting again")
        XCTAssertTrue(pgmux.isRunning)
    }

    func testHostileStartupPackets() throws {
        let pgmux = try PgmuxProcess()
        var many: [UInt8] = [0, 3, 0, 0]
        for i in 0..<1000 { many += Array("k\(i)\0v\0".utf8) }
        many.append(0)
        func packet(_ body: [UInt8]) -> [UInt8] {
            let n = UInt32(body.count + 4)
            return [UInt8(n >> 24), UInt8(truncatingIfNeeded: n >> 16), UInt8(truncatingIfNeeded: n >> 8), UInt8(truncatingIfNeeded: n)] + body
        }
        let cases: [[UInt8]] = [
            packet(many),                                                   // thousands of parameters
            packet([0, 3, 0, 0] + Array("database\0x\0\0".utf8)),           // no user
            packet([0, 3, 0, 0, 0xff, 0xfe, 0, 0x80, 0, 0]),                // non-UTF-8 name
            packet([0, 2, 0, 0] + Array("user\0x\0\0".utf8)),               // protocol 2
            [0, 0, 0, 3],                                                   // length below minimum
        ]
        for c in cases {
            let reply = rawExchange(port: pgmux.port, send: c)
            XCTAssertEqual(reply.first, UInt8(ascii: "E"), "an ErrorResponse for \(c.prefix(12))")
            XCTAssertTrue(String(decoding: reply, as: UTF8.self).contains("08P01"))
        }
        XCTAssertEqual(try PQConnection(pgmux.conninfo()).scalar("SELECT 1"), "1")
        XCTAssertTrue(pgmux.isRunning)
    }

    func testGarbageAfterAValidLogin() throws {
        let pgmux = try PgmuxProcess(settings: ["auth_type": "trust"])
        let fd = rawLogin(port: pgmux.port)
        defer { close(fd) }
        // A message whose length field is absurd, right after login.
        let junk: [UInt8] = [UInt8(ascii: "Q"), 0x7f, 0xff, 0xff, 0xff, 1, 2, 3]
        _ = junk.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var buf = [UInt8](repeating: 0, count: 1024)
        var reply: [UInt8] = []
        while true { let n = recv(fd, &buf, buf.count, 0); if n <= 0 { break }; reply += buf[0..<n] }
        XCTAssertEqual(reply.first, UInt8(ascii: "E"))
        XCTAssertTrue(String(decoding: reply, as: UTF8.self).contains("08P01"))
        XCTAssertEqual(try PQConnection(pgmux.conninfo()).scalar("SELECT 1"), "1")
    }
}

final class DataBox: @unchecked Sendable { var data = Data() }

/// Several faults at once under pgbench load; afterwards the pooler serves, holds no dirty
/// server, and its file descriptors and memory are back near their baseline.
final class FaultStormTests: XCTestCase {
    func testStormUnderLoad() throws {
        let pgmux = try PgmuxProcess(settings: ["auth_type": "trust", "default_pool_size": "4", "query_timeout": "3",
                                                "query_wait_timeout": "10", "server_login_retry": "1"])
        let port = pgmux.port
        _ = try Pgbench.run(port: port, clients: 8, seconds: 1)  // warm up: pools, buffers
        usleep(300_000)
        let baseFDs = pgmux.openFDs, baseRSS = pgmux.rssKB
        let output = DataBox()
        let load = Thread {
            let r = try? Shell.runStatus("/usr/bin/pgbench", ["-n", "-S", "-c", "8", "-j", "2", "-T", "5", "-h", "127.0.0.1",
                                                              "-p", "\(port)", "-U", PostgresCluster.scramUser.0, PostgresCluster.database])
            output.data = Data((r?.output ?? "").utf8)
        }
        load.start()
        usleep(500_000)
        let cluster = PostgresCluster.shared
        // 1. A backend killed mid-query.
        _ = try? cluster.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '\(PostgresCluster.scramUser.0)' AND pid <> pg_backend_pid() LIMIT 1")
        // 2. Garbage and vanishing clients.
        for i in 0..<20 {
            if let fd = loopbackConnect(port: port) {
                let junk: [UInt8] = i % 2 == 0 ? Array("GET / HTTP/1.0\r\n\r\n".utf8) : [0, 0, 0, 8, 0, 3]
                _ = junk.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                close(fd)
            }
        }
        // 3. A client that leaves mid-transaction, and one that stops reading a large result.
        if let c = try? PQConnection(pgmux.conninfo()) { _ = try? c.query("BEGIN"); _ = try? c.query("SELECT 1") }
        let slow = loopbackConnect(port: port)
        while load.isExecuting { usleep(100_000) }
        if let slow { close(slow) }
        usleep(1_500_000)
        XCTAssertEqual(try PQConnection(pgmux.conninfo()).scalar("SELECT 'after the storm'"), "after the storm")
        let idleInTx = try cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = '\(PostgresCluster.scramUser.0)' AND state LIKE 'idle in transaction%'")
        XCTAssertEqual(idleInTx.trimmingCharacters(in: .whitespacesAndNewlines), "0")
        XCTAssertLessThanOrEqual(pgmux.openFDs, baseFDs + 5, "fds back near baseline")
        XCTAssertLessThanOrEqual(pgmux.rssKB, baseRSS + 8 * 1024, "memory back near baseline")
        let text = String(decoding: output.data, as: UTF8.self)
        XCTAssertTrue(text.contains("number of transactions actually processed"), text)
        XCTAssertTrue(pgmux.isRunning)
    }
}
