import Foundation
import Glibc
import XCTest

/// A listening socket that plays a broken PostgreSQL: it answers every StartupMessage with the
/// bytes `reply` returns (given what the pooler sent so far), counts the connections it gets, and
/// closes each one after its reply (or when the pooler does).
final class FakeServer: @unchecked Sendable {
    let port: Int
    private let fd: Int32
    private let lock = NSLock()
    private var _connections = 0
    private var stopped = false
    /// (bytes received so far on this connection) -> bytes to send now (nil: wait for more;
    /// empty: close the connection).
    typealias Script = @Sendable ([UInt8]) -> [UInt8]?

    init(script: @escaping Script) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0, listen(fd, 128) == 0 else { throw PostgresCluster.Failure(description: "fake server: bind/listen failed") }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        port = Int(UInt16(bigEndian: addr.sin_port))
        self.fd = fd
        Thread { [self] in serve(fd, script) }.start()
    }

    var connections: Int { lock.lock(); defer { lock.unlock() }; return _connections }

    private var isStopped: Bool { lock.lock(); defer { lock.unlock() }; return stopped }

    private func serve(_ listenFD: Int32, _ script: @escaping Script) {
        while !isStopped {
            var p = pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 100) > 0 else { continue }
            let c = accept(listenFD, nil, nil)
            guard c >= 0 else { continue }
            lock.lock(); _connections += 1; lock.unlock()
            Thread { FakeServer.talk(c, script) }.start()
        }
        close(listenFD)
    }

    /// One connection: answer SSLRequest with 'N', then run the script until it has replied,
    /// then wait (at most 2 s) for the pooler to hang up.
    private static func talk(_ c: Int32, _ script: Script) {
        defer { close(c) }
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var received: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(c, &buf, buf.count, 0)
            if n <= 0 { return }
            received += buf[0..<n]
            // SSLRequest: 8 bytes, code 80877103.
            if received.count >= 8 && received[0..<8] == [0, 0, 0, 8, 4, 210, 22, 47] {
                received.removeFirst(8)
                _ = send(c, [UInt8(ascii: "N")], 1, Int32(MSG_NOSIGNAL))
                continue
            }
            if let reply = script(received) {
                if reply.isEmpty { return }
                _ = reply.withUnsafeBytes { send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            }
        }
    }

    func stop() { lock.lock(); stopped = true; lock.unlock() }
    deinit { stop() }
}

/// Big-endian int32.

/// A whole StartupMessage has arrived (length prefix, protocol 3.0).
private func hasStartup(_ r: [UInt8]) -> Bool {
    guard r.count >= 8 else { return false }
    let len = Int(r[0]) << 24 | Int(r[1]) << 16 | Int(r[2]) << 8 | Int(r[3])
    return r.count >= len
}

/// The fields of the first ErrorResponse in a raw reply (code letter -> text).
private func errorFields(_ bytes: [UInt8]) -> [String: String] {
    var i = 0
    while i + 5 <= bytes.count {
        let type = bytes[i]
        let len = Int(bytes[i + 1]) << 24 | Int(bytes[i + 2]) << 16 | Int(bytes[i + 3]) << 8 | Int(bytes[i + 4])
        guard len >= 4, i + 1 + len <= bytes.count else { break }
        if type == UInt8(ascii: "E") {
            var fields: [String: String] = [:]
            var j = i + 5
            while j < i + 1 + len, bytes[j] != 0 {
                let code = String(UnicodeScalar(bytes[j]))
                j += 1
                let start = j
                while j < i + 1 + len, bytes[j] != 0 { j += 1 }
                fields[code] = String(decoding: bytes[start..<j], as: UTF8.self)
                j += 1
            }
            return fields
        }
        i += 1 + len
    }
    return [:]
}

/// Failed server logins: one logged, cached, retried after server_login_retry (with backoff), and
/// clients told (issue 12, bugs 2 and 3).
final class LoginFailureTests: XCTestCase {
    /// A server answering the login with broken bytes: few attempts, logged, clients get errors.
    private func checkNoStorm(reply: [UInt8], expectLog: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let fake = try FakeServer { received in hasStartup(received) ? reply : nil }
        defer { fake.stop() }
        let pgmux = try PgmuxProcess(settings: ["server_login_retry": "0.2", "query_wait_timeout": "1.5",
                                                "client_login_timeout": "30", "auth_type": "trust"],
                                     databases: ["broken": "host=127.0.0.1 port=\(fake.port) dbname=x",
                                                 PostgresCluster.database: "host=127.0.0.1 port=\(PostgresCluster.shared.port)"])
        // The first client waits for the pool's first login; it must get an error, not hang.
        let started = Date()
        XCTAssertThrowsError(try PQConnection(pgmux.conninfo(database: "broken", extra: "connect_timeout=8")),
                             file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains("query_wait_timeout"), "\(error)", file: file, line: line)
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 4, file: file, line: line)
        // About one attempt per server_login_retry (0.2 s, checked every 1/3 s), then backoff;
        // without a delay this was hundreds per second.
        let attempts = fake.connections
        XCTAssertGreaterThanOrEqual(attempts, 2, file: file, line: line)
        XCTAssertLessThanOrEqual(attempts, 10, "reconnect storm: \(attempts) attempts in 1.5 s", file: file, line: line)
        // A later client is refused at once with the cached reason.
        let again = Date()
        XCTAssertThrowsError(try PQConnection(pgmux.conninfo(database: "broken")), file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains("server login has been failing, cached error: \(expectLog) (server_login_retry)"),
                          "\(error)", file: file, line: line)
        }
        XCTAssertLessThan(Date().timeIntervalSince(again), 1, file: file, line: line)
        XCTAssertTrue(pgmux.log.contains("server login failed: \(expectLog)"), pgmux.log, file: file, line: line)
        // Other pools are unaffected.
        XCTAssertEqual(try PQConnection(pgmux.conninfo(user: "postgres", password: nil)).scalar("SELECT 1"), "1",
                       file: file, line: line)
        XCTAssertTrue(pgmux.isRunning, file: file, line: line)
    }

    func testLengthZeroLoginReplyIsRetriedAfterServerLoginRetry() throws {
        try checkNoStorm(reply: [UInt8(ascii: "R"), 0, 0, 0, 0], expectLog: "server sent invalid packet length 0")
    }

    func testLengthThreeLoginReplyIsRetriedAfterServerLoginRetry() throws {
        try checkNoStorm(reply: [UInt8(ascii: "R"), 0, 0, 0, 3], expectLog: "server sent invalid packet length 3")
    }

    func testHugeParameterStatusIsRetriedAfterServerLoginRetry() throws {
        let size = 1 << 20
        var reply = [UInt8(ascii: "R")] + be32(8) + be32(0)  // AuthenticationOk
        reply += [UInt8(ascii: "S")] + be32(size + 4) + Array(repeating: UInt8(ascii: "a"), count: size)
        try checkNoStorm(reply: reply, expectLog: "server login packet too large: \(size + 4) bytes (limit 16384)")
    }

    func testEOFDuringLoginIsRetriedAfterServerLoginRetry() throws {
        try checkNoStorm(reply: [], expectLog: "server conn crashed?")
    }

    /// Role made NOLOGIN on a warm pool: the client that needs a new server gets the server's
    /// message and SQLSTATE at once, the next client the cached error at once; when the role may
    /// log in again, service returns by itself.
    func testLoginRejectionFailsQueuedClientsAtOnce() throws {
        let cluster = PostgresCluster.shared
        let role = "nologin_\(UInt32.random(in: 0...UInt32.max))"
        try cluster.psql("CREATE ROLE \(role) LOGIN PASSWORD 'pw_\(role)'; GRANT ALL ON DATABASE \(PostgresCluster.database) TO \(role)")
        defer { _ = try? cluster.psql("DROP ROLE IF EXISTS \(role)") }
        let pgmux = try PgmuxProcess(settings: ["server_login_retry": "0.3", "query_wait_timeout": "20", "auth_type": "trust"],
                                     databases: ["nl": "host=127.0.0.1 port=\(cluster.port) dbname=\(PostgresCluster.database) user=\(role) password=pw_\(role)"])
        let a = try PQConnection(pgmux.conninfo(database: "nl"))
        XCTAssertEqual(try a.scalar("SELECT 1"), "1")
        try cluster.psql("ALTER ROLE \(role) NOLOGIN")
        _ = try cluster.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '\(role)'")
        XCTAssertTrue(try waitUntil(5) { try cluster.backendCount(user: role) == 0 })
        usleep(300_000)  // pgmux notices its idle server closed
        // The queued request needs a new server, whose login is refused: the error, with the
        // server's SQLSTATE, comes at once (a raw client, to read the SQLSTATE of a FATAL).
        let started = Date()
        let reply = rawExchange(port: pgmux.port, send: startupMessage(user: "postgres", database: "nl") + simpleQuery("SELECT 2"),
                                timeout: 10)
        XCTAssertLessThan(Date().timeIntervalSince(started), 3)
        let error = errorFields(reply)
        XCTAssertEqual(error["C"], "28000", "\(error)")
        XCTAssertEqual(error["M"], "role \"\(role)\" is not permitted to log in", "\(error)")
        XCTAssertTrue(pgmux.log.contains("server login failed: FATAL role \"\(role)\" is not permitted to log in"), pgmux.log)
        // Clients of the pool are then refused at once with the cached error.
        for c in [a, try PQConnection(pgmux.conninfo(database: "nl"))] {
            let again = Date()
            XCTAssertThrowsError(try c.query("SELECT 3")) { error in
                XCTAssertTrue("\(error)".contains("server login has been failing, cached error: role \"\(role)\" is not permitted to log in (server_login_retry)"),
                              "\(error)")
            }
            XCTAssertLessThan(Date().timeIntervalSince(again), 1)
        }
        // Fixed: a later client gets through (the refusal above also probed again).
        try cluster.psql("ALTER ROLE \(role) LOGIN")
        XCTAssertTrue(waitUntil(5) {
            (try? PQConnection(pgmux.conninfo(database: "nl")).scalar("SELECT 4")) == "4"
        }, pgmux.log)
    }

    /// A server login password fixed in auth_file takes effect at RELOAD (as PgBouncer's user
    /// list), for the pools that already exist, without waiting out the login backoff.
    func testReloadedAuthFilePasswordReachesExistingPools() throws {
        let cluster = PostgresCluster.shared
        let (user, password) = PostgresCluster.scramUser
        // server_login_retry is long: a retry of its own would come too late, the RELOAD must do it.
        let pgmux = try PgmuxProcess(settings: ["auth_type": "trust", "server_login_retry": "30"],
                                     databases: ["forced": "host=127.0.0.1 port=\(cluster.port) dbname=\(PostgresCluster.database) user=\(user)"],
                                     userlist: [(user, "wrong password"), ("postgres", "unused")])
        XCTAssertThrowsError(try PQConnection(pgmux.conninfo(user: "postgres", password: nil, database: "forced")).scalar("SELECT 1"))
        try "\"\(user)\" \"\(password)\"\n\"postgres\" \"unused\"\n".write(toFile: pgmux.dir + "/userlist.txt", atomically: false, encoding: .utf8)
        pgmux.signal(SIGHUP)
        XCTAssertTrue(waitUntil(5) {
            (try? PQConnection(pgmux.conninfo(user: "postgres", password: nil, database: "forced")).scalar("SELECT current_user")) == user
        }, pgmux.log)
    }

    /// Issue 13, item 14: PostgreSQL asks for md5 but auth_file holds only a SCRAM verifier for
    /// the server login: PgBouncer's log line and `server login failed: wrong password type`.
    func testWrongPasswordTypeIsReportedAsPgBouncerDoes() throws {
        let cluster = PostgresCluster.shared
        let verifier = try cluster.psql("SELECT rolpassword FROM pg_authid WHERE rolname = '\(PostgresCluster.scramUser.0)'")
            .trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertTrue(verifier.hasPrefix("SCRAM-SHA-256$"), verifier)
        let pgmux = try PgmuxProcess(settings: ["auth_type": "trust", "server_login_retry": "0.3"],
                                     userlist: [(PostgresCluster.md5User.0, verifier)])
        XCTAssertThrowsError(try PQConnection(pgmux.conninfo(user: PostgresCluster.md5User.0, password: nil)).query("SELECT 1")) {
            XCTAssertTrue("\($0)".contains("server login failed: wrong password type"), "\($0)")
        }
        XCTAssertTrue(pgmux.log.contains("cannot do MD5 authentication: wrong password type"), pgmux.log)
    }

    /// A server that accepts but never answers: a client waiting for the pool's first login is
    /// closed at query_timeout (PgBouncer's janitor applies the queue timeouts to it), long
    /// before server_connect_timeout and client_login_timeout.
    func testClientWaitingForFirstLoginGetsQueryTimeout() throws {
        let fake = try FakeServer { _ in nil }  // silent
        defer { fake.stop() }
        let pgmux = try PgmuxProcess(settings: ["server_connect_timeout": "20", "query_timeout": "1", "query_wait_timeout": "30",
                                                "client_login_timeout": "30", "auth_type": "trust"],
                                     databases: ["silent": "host=127.0.0.1 port=\(fake.port) dbname=x"])
        let started = Date()
        XCTAssertThrowsError(try PQConnection(pgmux.conninfo(database: "silent", extra: "connect_timeout=8"))) { error in
            XCTAssertTrue("\(error)".contains("query_timeout"), "\(error)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 4)
    }

    /// A server asking for SCRAM with 10,000,000 iterations (9 s of PBKDF2): the login fails at
    /// once with a clear message, and other clients are never stalled (issue 12, bug 4).
    func testHugeSCRAMIterationCountFailsFastAndStallsNobody() throws {
        let fake = try FakeServer { received in
            guard hasStartup(received) else { return nil }
            let startupLength = Int(received[0]) << 24 | Int(received[1]) << 16 | Int(received[2]) << 8 | Int(received[3])
            if received.count == startupLength {  // AuthenticationSASL
                let body = be32(10) + Array("SCRAM-SHA-256".utf8) + [0, 0]
                return [UInt8(ascii: "R")] + be32(body.count + 4) + body
            }
            // SASLInitialResponse: answer with the client's nonce and 10 million iterations.
            let text = String(decoding: received[startupLength...], as: UTF8.self)
            guard let r = text.range(of: "r=") else { return nil }
            let nonce = String(text[r.upperBound...].prefix { $0.isLetter || $0.isNumber || "+/=".contains($0) })
            let body = be32(11) + Array("r=\(nonce)fake,s=c2FsdHNhbHRzYWx0c2FsdA==,i=10000000".utf8)
            return [UInt8(ascii: "R")] + be32(body.count + 4) + body
        }
        defer { fake.stop() }
        let cluster = PostgresCluster.shared
        let pgmux = try PgmuxProcess(settings: ["server_login_retry": "0.5", "query_wait_timeout": "20", "auth_type": "trust"],
                                     databases: ["slow": "host=127.0.0.1 port=\(fake.port) dbname=x user=u password=pw",
                                                 PostgresCluster.database: "host=127.0.0.1 port=\(cluster.port)"])
        let other = try PQConnection(pgmux.conninfo(user: "postgres", password: nil))
        XCTAssertEqual(try other.scalar("SELECT 1"), "1")
        let failure = DataBox()
        let started = Date()
        let conninfo = pgmux.conninfo(database: "slow", extra: "connect_timeout=15")
        let victim = Thread {
            do { _ = try PQConnection(conninfo) } catch {
                failure.data = Data("\(error)".utf8)
            }
        }
        victim.start()
        // Meanwhile the loop keeps serving: no query waits behind a derivation.
        var worst = 0.0
        while Date().timeIntervalSince(started) < 1.5 {
            let t = Date()
            XCTAssertEqual(try other.scalar("SELECT 1"), "1")
            worst = max(worst, Date().timeIntervalSince(t))
        }
        XCTAssertLessThan(worst, 0.5, "a query waited \(worst) s")
        while !victim.isFinished && Date().timeIntervalSince(started) < 20 { usleep(50_000) }
        let message = String(decoding: failure.data, as: UTF8.self)
        XCTAssertTrue(message.contains("server asked for 10000000 SCRAM iterations, more than pgmux accepts (100000)"), message)
        XCTAssertLessThan(Date().timeIntervalSince(started), 3)
        XCTAssertTrue(pgmux.log.contains("server login failed: server asked for 10000000 SCRAM iterations"), pgmux.log)
    }
}
