import Foundation
import Glibc
import XCTest
import CLibPQ

/// Cancel, COPY, authentication both ways, limits, garbage on the port, config errors.
final class ProtocolTests: XCTestCase {
    func testCancelReachesTheRightBackend() throws {
        let pgmux = try PgmuxProcess(settings: ["pool_mode": "transaction", "default_pool_size": "2"])
        let c = try PQConnection(pgmux.conninfo())
        let other = try PQConnection(pgmux.conninfo())
        let started = Date()
        let canceller = Thread {
            usleep(500_000)
            _ = c.cancel()
        }
        canceller.start()
        XCTAssertThrowsError(try c.query("SELECT pg_sleep(20)")) { error in
            XCTAssertEqual((error as? PQConnection.Error)?.sqlstate, "57014", "\(error)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 10)
        XCTAssertEqual(try c.scalar("SELECT 'still usable'"), "still usable")
        XCTAssertEqual(try other.scalar("SELECT 1"), "1")
    }

    /// Issue 12, bug 6: libpq pipeline mode (psycopg 3's pipeline exit) sends Sync then Flush. The
    /// Flush was counted as a request, so the server stayed pinned after its ReadyForQuery and
    /// was later thrown away. Also a Flush arriving after the release must not take a server.
    func testFlushAfterSyncDoesNotPinTheServer() throws {
        let pgmux = try PgmuxProcess(settings: ["default_pool_size": "1", "query_wait_timeout": "3"])
        let c = try PQConnection(pgmux.conninfo())
        XCTAssertEqual(PQenterPipelineMode(c.conn), 1)
        for flushSeparately in [false, true] {
            XCTAssertEqual(PQsendQueryParams(c.conn, "SELECT 41 + 1", 0, nil, nil, nil, nil, 0), 1)
            XCTAssertEqual(PQpipelineSync(c.conn), 1)
            if !flushSeparately { XCTAssertEqual(PQsendFlushRequest(c.conn), 1) }
            XCTAssertEqual(PQflush(c.conn), 0)
            var answers: [ExecStatusType] = []
            var value: String?
            while answers.last != PGRES_PIPELINE_SYNC {
                guard let res = PQgetResult(c.conn) else { continue }
                answers.append(PQresultStatus(res))
                if PQresultStatus(res) == PGRES_TUPLES_OK { value = String(cString: PQgetvalue(res, 0, 0)) }
                PQclear(res)
            }
            XCTAssertEqual(value, "42")
            if flushSeparately {
                XCTAssertEqual(PQsendFlushRequest(c.conn), 1)
                XCTAssertEqual(PQflush(c.conn), 0)
                usleep(200_000)
            }
            let other = try PQConnection(pgmux.conninfo())
            XCTAssertEqual(try other.scalar("SELECT 'the only server is free'"), "the only server is free",
                           "flush separately: \(flushSeparately)")
        }
        XCTAssertEqual(PQexitPipelineMode(c.conn), 1)
        XCTAssertEqual(try c.scalar("SELECT 'still usable'"), "still usable")
        XCTAssertFalse(try String(contentsOfFile: pgmux.logPath, encoding: .utf8).contains("query in progress"))
    }

    /// Issue 12, bug 5: a client fires many cancels at its own query; the first one ends it, the
    /// server goes back to the pool and is lent to the next client, and the cancels still on
    /// their way to PostgreSQL must not stop that client's query. The server stays out of the
    /// pool until they have landed.
    func testCancelsStillInFlightNeverHitTheNextClient() throws {
        let pgmux = try PgmuxProcess(settings: ["default_pool_size": "1"])
        let a = try PQConnection(pgmux.conninfo())
        let b = try PQConnection(pgmux.conninfo())
        for round in 0..<4 {
            XCTAssertEqual(PQsendQuery(a.conn, "SELECT pg_sleep(10)"), 1)
            usleep(300_000)
            let bDone = DispatchSemaphore(value: 0)
            nonisolated(unsafe) var bError: Error?
            Thread {
                do { _ = try b.query("SELECT pg_sleep(0.5)") } catch { bError = error }
                bDone.signal()
            }.start()
            usleep(200_000)  // b now waits for the only server
            nonisolated(unsafe) let cancel = try XCTUnwrap(PQgetCancel(a.conn))
            let go = DispatchSemaphore(value: 0), sent = DispatchGroup()
            for _ in 0..<24 {
                sent.enter()
                Thread {
                    go.wait()
                    var err = [CChar](repeating: 0, count: 256)
                    _ = PQcancel(cancel, &err, 256)
                    sent.leave()
                }.start()
            }
            for _ in 0..<24 { go.signal() }
            var aState: String?
            while let res = PQgetResult(a.conn) {
                if let s = PQresultErrorField(res, Int32(UInt8(ascii: "C"))) { aState = String(cString: s) }
                PQclear(res)
            }
            XCTAssertEqual(aState, "57014", "round \(round): a's own query is cancelled")
            XCTAssertEqual(bDone.wait(timeout: .now() + 15), .success)
            XCTAssertNil(bError, "round \(round): a cancel aimed at a stopped b's query")
            sent.wait()
            PQfreeCancel(cancel)
        }
    }

    /// The same with Sync and Flush in one packet after the server went back to the pool (what the
    /// torture test caught from psycopg's pipeline exit): the Sync is answered by pgmux, the Flush
    /// must not take the server.
    func testSyncAndFlushInOnePacketBetweenTransactions() throws {
        let pgmux = try PgmuxProcess(settings: ["default_pool_size": "1", "query_wait_timeout": "3", "auth_type": "trust"])
        let fd = try XCTUnwrap(loopbackConnect(port: pgmux.port))
        defer { close(fd) }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        func send(_ bytes: [UInt8]) { _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }
        send(startupMessage(user: PostgresCluster.scramUser.0, database: PostgresCluster.database))
        XCTAssertFalse(readUntilReady(fd).isEmpty)
        send(simpleQuery("SELECT 1"))
        XCTAssertFalse(readUntilReady(fd).isEmpty)
        let sync: [UInt8] = [UInt8(ascii: "S"), 0, 0, 0, 4], flush: [UInt8] = [UInt8(ascii: "H"), 0, 0, 0, 4]
        send(sync + flush)
        XCTAssertEqual(Array(readUntilReady(fd).suffix(6)), [UInt8(ascii: "Z"), 0, 0, 0, 5, UInt8(ascii: "I")])
        let other = try PQConnection(pgmux.conninfo(password: nil))
        XCTAssertEqual(try other.scalar("SELECT 'the only server is free'"), "the only server is free")
        send(simpleQuery("SELECT 2"))
        XCTAssertFalse(readUntilReady(fd).isEmpty, "the raw client still works")
    }

    func testCopyInAndOut() throws {
        let pgmux = try PgmuxProcess(settings: ["pool_mode": "transaction", "default_pool_size": "2"])
        let c = try PQConnection(pgmux.conninfo())
        try c.query("DROP TABLE IF EXISTS copied; CREATE TABLE copied (id int, name text)")
        let lines = (1...5000).map { "\($0)\tname \($0)" }
        try c.copyIn("COPY copied FROM STDIN", lines: lines)
        XCTAssertEqual(try c.scalar("SELECT count(*) FROM copied"), "5000")
        let out = try c.copyOut("COPY (SELECT * FROM copied ORDER BY id) TO STDOUT")
        XCTAssertEqual(out, lines.joined(separator: "\n") + "\n")
        // Big rows pass through a fixed-size relay buffer.
        let big = try c.scalar("SELECT length(repeat('x', 5000000))")
        XCTAssertEqual(big, "5000000")
        let wide = try c.query("SELECT repeat('y', 3000000)")
        XCTAssertEqual(wide.first?.first??.count, 3_000_000)
    }

    func testSCRAMAndMD5OnBothSides() throws {
        // Clients authenticate to pgmux with SCRAM; the md5 user logs in to PostgreSQL with md5,
        // the SCRAM user with SCRAM.
        let scram = try PgmuxProcess(settings: ["auth_type": "scram-sha-256"])
        let a = try PQConnection(scram.conninfo())
        XCTAssertEqual(try a.scalar("SELECT current_user"), PostgresCluster.scramUser.0)
        let b = try PQConnection(scram.conninfo(user: PostgresCluster.md5User.0, password: PostgresCluster.md5User.1))
        XCTAssertEqual(try b.scalar("SELECT current_user"), PostgresCluster.md5User.0)
        // Clients authenticate with md5.
        let md5 = try PgmuxProcess(settings: ["auth_type": "md5"])
        let c = try PQConnection(md5.conninfo(user: PostgresCluster.md5User.0, password: PostgresCluster.md5User.1))
        XCTAssertEqual(try c.scalar("SELECT 1"), "1")
    }

    func testSCRAMPassThroughWithOnlyASecretInAuthFile() throws {
        // auth_file holds the SCRAM verifier from pg_authid, not the password: pgmux logs in to
        // PostgreSQL with the client's proof keys.
        let secret = try PostgresCluster.shared.psql(
            "SELECT rolpassword FROM pg_authid WHERE rolname = '\(PostgresCluster.scramUser.0)'")
            .trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertTrue(secret.hasPrefix("SCRAM-SHA-256$"))
        let pgmux = try PgmuxProcess(userlist: [(PostgresCluster.scramUser.0, secret)])
        let c = try PQConnection(pgmux.conninfo())
        XCTAssertEqual(try c.scalar("SELECT current_user"), PostgresCluster.scramUser.0)
    }

    func testWrongPasswordAndUnknownUserAreRefused() throws {
        let pgmux = try PgmuxProcess(settings: ["auth_type": "scram-sha-256"])
        XCTAssertThrowsError(try PQConnection(pgmux.conninfo(password: "wrong"))) { error in
            XCTAssertTrue("\(error)".contains("authentication failed"), "\(error)")
        }
        XCTAssertThrowsError(try PQConnection(pgmux.conninfo(user: "nobody", password: "x"))) { error in
            XCTAssertTrue("\(error)".contains("authentication failed"), "\(error)")
        }
        let md5 = try PgmuxProcess(settings: ["auth_type": "md5"])
        XCTAssertThrowsError(try PQConnection(md5.conninfo(user: PostgresCluster.md5User.0, password: "wrong")))
        XCTAssertEqual(try PQConnection(pgmux.conninfo()).scalar("SELECT 1"), "1")
    }

    func testUnknownDatabaseIsReported() throws {
        let cluster = PostgresCluster.shared
        let pgmux = try PgmuxProcess(databases: [PostgresCluster.database: "host=127.0.0.1 port=\(cluster.port)"])
        XCTAssertThrowsError(try PQConnection(pgmux.conninfo(database: "nosuchdb"))) { error in
            XCTAssertTrue("\(error)".contains("no such database: nosuchdb"), "\(error)")
        }
    }

    func testMaxClientConnIsEnforced() throws {
        let pgmux = try PgmuxProcess(settings: ["max_client_conn": "3"])
        let held = try (0..<3).map { _ in try PQConnection(pgmux.conninfo()) }
        XCTAssertThrowsError(try PQConnection(pgmux.conninfo())) { error in
            XCTAssertTrue("\(error)".contains("no more connections allowed (max_client_conn)"), "\(error)")
        }
        XCTAssertEqual(try held[0].scalar("SELECT 1"), "1")
        _ = held
    }

    func testGarbageOnThePortIsHarmless() throws {
        let pgmux = try PgmuxProcess()
        let good = try PQConnection(pgmux.conninfo())
        let baseline = pgmux.openFDs
        // An HTTP request, random bytes, an oversized length, a truncated startup.
        let http = rawExchange(port: pgmux.port, send: Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        XCTAssertEqual(http.first, UInt8(ascii: "E"), "an ErrorResponse, then close")
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20 {
            let junk = (0..<Int.random(in: 1...300)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            _ = rawExchange(port: pgmux.port, send: junk, timeout: 1)
        }
        _ = rawExchange(port: pgmux.port, send: [0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0])
        _ = rawExchange(port: pgmux.port, send: [0, 0, 0, 40, 0, 3, 0, 0, 117, 115], timeout: 0.5)
        // A valid login followed by a message with an absurd length.
        XCTAssertEqual(try good.scalar("SELECT 'alive'"), "alive")
        XCTAssertTrue(pgmux.isRunning)
        XCTAssertEqual(try PQConnection(pgmux.conninfo()).scalar("SELECT 1"), "1")
        usleep(300_000)
        XCTAssertLessThanOrEqual(pgmux.openFDs, baseline + 1, "file descriptors leaked")
    }

    func testSSLRequestIsAnsweredNWithoutTLS() throws {
        let pgmux = try PgmuxProcess()
        let c = try PQConnection(pgmux.conninfo(extra: "sslmode=prefer"))
        XCTAssertEqual(try c.scalar("SELECT 1"), "1")
        XCTAssertThrowsError(try PQConnection(pgmux.conninfo(extra: "sslmode=require")))
    }

    func testUnixSocketListener() throws {
        let pgmux = try PgmuxProcess()
        let c = try PQConnection("host=\(pgmux.dir) port=\(pgmux.port) user=\(PostgresCluster.scramUser.0) password=\(PostgresCluster.scramUser.1) dbname=\(PostgresCluster.database)")
        XCTAssertEqual(try c.scalar("SELECT 1"), "1")
    }

    func testBackendKilledMidQueryErrorsOnlyThatClient() throws {
        let pgmux = try PgmuxProcess(settings: ["default_pool_size": "2"])
        let victim = try PQConnection(pgmux.conninfo())
        let bystander = try PQConnection(pgmux.conninfo())
        let killer = Thread {
            usleep(400_000)
            _ = try? PostgresCluster.shared.psql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(15)%' AND pid <> pg_backend_pid()")
        }
        killer.start()
        XCTAssertThrowsError(try victim.query("SELECT pg_sleep(15)"))
        XCTAssertEqual(try bystander.scalar("SELECT 'fine'"), "fine")
        XCTAssertEqual(try PQConnection(pgmux.conninfo()).scalar("SELECT 1"), "1")
        XCTAssertTrue(pgmux.isRunning)
    }
}
