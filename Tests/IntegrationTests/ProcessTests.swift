import Foundation
import XCTest

/// Command line, config errors and signals.
final class ProcessTests: XCTestCase {
    private func runPgmux(_ args: [String]) throws -> (Int32, String) {
        try Shell.runStatus(PgmuxProcess.binary, args, timeout: 10)
    }

    func testConfigErrorNamesFileLineAndKey() throws {
        let dir = PostgresCluster.shared.dir
        let path = dir + "/bad.ini"
        try "[pgmux]\nlisten_port = 6432\npool_mode = sometimes\n".write(toFile: path, atomically: false, encoding: .utf8)
        let (status, output) = try runPgmux(geteuid() == 0 ? ["-u", "postgres", path] : [path])
        XCTAssertEqual(status, 1)
        XCTAssertTrue(output.contains("\(path):3: pool_mode"), output)
        XCTAssertTrue(output.contains("session, transaction or statement"), output)
    }

    func testUnknownKeyIsAWarningWithFileAndLine() throws {
        let pgmux = try PgmuxProcess(settings: ["no_such_setting": "1"])
        XCTAssertTrue(pgmux.log.contains("no_such_setting"), pgmux.log)
        XCTAssertTrue(pgmux.log.contains("pgmux.ini:"), pgmux.log)
    }

    func testRefusesRootWithoutUserSwitch() throws {
        try XCTSkipIf(geteuid() != 0, "only meaningful as root")
        let pgmux = try PgmuxProcess()
        let (status, output) = try runPgmux([pgmux.configPath])
        XCTAssertEqual(status, 1)
        XCTAssertTrue(output.contains("should not run as root"), output)
    }

    func testVersionAndHelp() throws {
        let (s1, v) = try runPgmux(["-V"])
        XCTAssertEqual(s1, 0)
        XCTAssertTrue(v.hasPrefix("pgmux "), v)
        let (s2, h) = try runPgmux(["-h"])
        XCTAssertEqual(s2, 0)
        XCTAssertTrue(h.contains("-u, --user"), h)
        let (s3, _) = try runPgmux([])
        XCTAssertEqual(s3, 1)
    }

    func testSighupReloadsPoolSize() throws {
        let pgmux = try PgmuxProcess(settings: ["default_pool_size": "1", "pool_mode": "session"])
        let a = try PQConnection(pgmux.conninfo())
        XCTAssertEqual(try a.scalar("SELECT 1"), "1")
        let text = try String(contentsOfFile: pgmux.configPath, encoding: .utf8)
            .replacingOccurrences(of: "default_pool_size = 1", with: "default_pool_size = 2")
        try text.write(toFile: pgmux.configPath, atomically: false, encoding: .utf8)
        pgmux.signal(SIGHUP)
        usleep(300_000)
        // With the new size a second session gets its own server instead of waiting forever.
        let b = try PQConnection(pgmux.conninfo())
        XCTAssertEqual(try b.scalar("SELECT 2"), "2")
        XCTAssertTrue(pgmux.log.contains("got SIGHUP, re-reading config"), pgmux.log)
    }

    /// Issue 13, item 10: SIGTERM as PgBouncer 1.23+ (systemd and Kubernetes stop with it): stop
    /// accepting on TCP, let clients finish and disconnect, exit when the last one has gone; a
    /// second SIGTERM exits at once. Item 11: meanwhile the Unix socket still takes console
    /// logins, other logins get `pooler is shutting down`, RESUME answers as PgBouncer.
    func testSigtermWaitsForClientsThenExits() throws {
        let pgmux = try PgmuxProcess(settings: ["pool_mode": "transaction", "admin_users": "admin"],
                                     userlist: [PostgresCluster.scramUser, ("admin", "adminpw")])
        let c = try PQConnection(pgmux.conninfo())
        _ = try c.query("BEGIN")
        pgmux.signal(SIGTERM)
        usleep(400_000)
        XCTAssertTrue(pgmux.isRunning)
        XCTAssertNil(loopbackConnect(port: pgmux.port), "the TCP listener is closed")
        XCTAssertEqual(try c.scalar("SELECT 'the open transaction goes on'"), "the open transaction goes on")
        _ = try c.query("COMMIT")
        XCTAssertEqual(try c.scalar("SELECT 'and later ones'"), "and later ones")
        let viaSocket = "host=\(pgmux.dir) port=\(pgmux.port) dbname=\(PostgresCluster.database) user=\(PostgresCluster.scramUser.0) password=\(PostgresCluster.scramUser.1)"
        XCTAssertThrowsError(try PQConnection(viaSocket)) { XCTAssertTrue("\($0)".contains("pooler is shutting down"), "\($0)") }
        let console = try PQConnection("host=\(pgmux.dir) port=\(pgmux.port) dbname=pgbouncer user=admin password=adminpw")
        XCTAssertNoThrow(try console.query("SHOW POOLS"))
        XCTAssertThrowsError(try console.query("RESUME")) { XCTAssertTrue("\($0)".contains("pooler is shutting down"), "\($0)") }
        c.finish()
        XCTAssertTrue(waitUntil(5) { !pgmux.isRunning }, "exits once the last client has gone (the console does not hold it)")
        XCTAssertTrue(pgmux.log.contains("got SIGTERM, shutting down, waiting for all clients disconnect"), pgmux.log)
        XCTAssertTrue(pgmux.log.contains("client connections dropped, exiting"), pgmux.log)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(pgmux.dir)/.s.PGSQL.\(pgmux.port)"))
    }

    func testSecondSigtermExitsAtOnce() throws {
        let pgmux = try PgmuxProcess(settings: ["pool_mode": "transaction"])
        let c = try PQConnection(pgmux.conninfo())
        XCTAssertEqual(try c.scalar("SELECT 1"), "1")
        pgmux.signal(SIGTERM)
        usleep(300_000)
        XCTAssertTrue(pgmux.isRunning, "a connected client keeps it up")
        pgmux.signal(SIGTERM)
        XCTAssertTrue(waitUntil(5) { !pgmux.isRunning })
        XCTAssertTrue(pgmux.log.contains("got SIGTERM while shutting down, fast exit"), pgmux.log)
    }

    /// SIGINT (WAIT_FOR_SERVERS): a client that asks for a server after it gets `server shutting
    /// down`, as PgBouncer's pause_client.
    func testSigintRefusesNewRequestsWithServerShuttingDown() throws {
        let pgmux = try PgmuxProcess(settings: ["pool_mode": "transaction"])
        let idle = try PQConnection(pgmux.conninfo())
        XCTAssertEqual(try idle.scalar("SELECT 1"), "1")
        let inTransaction = try PQConnection(pgmux.conninfo())
        _ = try inTransaction.query("BEGIN")  // keeps the pooler up until it ends
        pgmux.signal(SIGINT)
        usleep(300_000)
        XCTAssertThrowsError(try idle.query("SELECT 2")) { XCTAssertTrue("\($0)".contains("server shutting down"), "\($0)") }
        XCTAssertEqual(try inTransaction.scalar("SELECT 'finishes'"), "finishes")
        _ = try inTransaction.query("COMMIT")
        XCTAssertTrue(waitUntil(5) { !pgmux.isRunning })
    }

    func testSigintWaitsForRunningQuery() throws {
        let pgmux = try PgmuxProcess(settings: ["pool_mode": "transaction"])
        let c = try PQConnection(pgmux.conninfo())
        let result = ErrorBox()
        let t = Thread {
            do { _ = try c.query("SELECT pg_sleep(1)") } catch { result.error = error }
        }
        t.start()
        usleep(300_000)
        pgmux.signal(SIGINT)
        usleep(1_500_000)
        XCTAssertNil(result.error, "the running query must finish")
        let status = pgmux.stop()
        XCTAssertEqual(status, 0)
        XCTAssertTrue(pgmux.log.contains("got SIGINT"), pgmux.log)
    }
}
