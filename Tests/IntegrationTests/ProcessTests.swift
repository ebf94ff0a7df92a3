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
