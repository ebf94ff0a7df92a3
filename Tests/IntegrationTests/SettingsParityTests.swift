import Foundation
import Glibc
import XCTest

/// Settings PgBouncer users set and expect to act: disable_pqexec, application_name_add_host,
/// server_round_robin, unix_socket_group.
final class SettingsParityTests: XCTestCase {
    func testDisablePqexecRefusesSimpleQueryOnly() throws {
        let pgmux = try PgmuxProcess(settings: ["disable_pqexec": "1"])
        let extended = try PQConnection(pgmux.conninfo())
        XCTAssertEqual(try extended.queryParams("SELECT $1::int + 1", ["41"]).first?.first, "42")
        let simple = try PQConnection(pgmux.conninfo())
        XCTAssertThrowsError(try simple.query("SELECT 1")) { XCTAssertTrue("\($0)".contains("PQexec disallowed"), "\($0)") }
        XCTAssertTrue(pgmux.log.contains("client used \"Query\" packet type"), pgmux.log)
        XCTAssertEqual(try extended.queryParams("SELECT 'others unaffected'", []).first?.first, "others unaffected")
    }

    func testApplicationNameAddHost() throws {
        let pgmux = try PgmuxProcess(settings: ["application_name_add_host": "1"])
        let named = try PQConnection(pgmux.conninfo(extra: "application_name=billing"))
        let value = try XCTUnwrap(try named.scalar("SHOW application_name"))
        XCTAssertTrue(value.hasPrefix("billing - 127.0.0.1:"), value)
        let anonymous = try PQConnection(pgmux.conninfo())
        XCTAssertTrue(try XCTUnwrap(try anonymous.scalar("SHOW application_name")).hasPrefix("app - 127.0.0.1:"))
    }

    /// LIFO reuse gives the most recently used server every time; server_round_robin goes round.
    func testServerRoundRobin() throws {
        for roundRobin in [false, true] {
            // One loop: server_round_robin rotates among the idle servers of the client's loop.
            let pgmux = try PgmuxProcess(settings: ["default_pool_size": "2", "server_round_robin": roundRobin ? "1" : "0",
                                                    "workers": "1"])
            let a = try PQConnection(pgmux.conninfo()), b = try PQConnection(pgmux.conninfo())
            _ = try a.query("BEGIN"); _ = try b.query("BEGIN")
            _ = try a.query("COMMIT"); _ = try b.query("COMMIT")  // two idle servers
            let pids = try (0..<4).map { _ in try a.scalar("SELECT pg_backend_pid()") ?? "" }
            XCTAssertEqual(Set(pids).count, roundRobin ? 2 : 1, "round robin \(roundRobin): \(pids)")
        }
    }

    func testUnixSocketGroup() throws {
        guard let group = getgrnam("postgres") else { throw XCTSkip("no postgres group") }
        let gid = group.pointee.gr_gid
        let pgmux = try PgmuxProcess(settings: ["unix_socket_group": "postgres", "unix_socket_mode": "0770"])
        var st = stat()
        // The TCP listener answers first (the kernel completes connections once listen() ran):
        // the Unix socket may still be on its way.
        _ = waitUntil(3) { stat("\(pgmux.dir)/.s.PGSQL.\(pgmux.port)", &st) == 0 && st.st_mode & 0o777 == 0o770 }
        XCTAssertEqual(stat("\(pgmux.dir)/.s.PGSQL.\(pgmux.port)", &st), 0)
        XCTAssertEqual(st.st_gid, gid)
        XCTAssertEqual(st.st_mode & 0o777, 0o770)
    }

    /// tcp_defer_accept (on by default, as PgBouncer on Linux): a connection that has sent nothing
    /// stays in the kernel (SYN-RECV on the listener's side) instead of costing pgmux a client;
    /// off, it is established at once. Logins work either way.
    func testTCPDeferAccept() throws {
        func silentConnectionState(_ pgmux: PgmuxProcess) throws -> String {
            guard let fd = loopbackConnect(port: pgmux.port) else { XCTFail("connect"); return "" }
            defer { close(fd) }
            var state = ""
            _ = waitUntil(2) {
                let ss = Process()
                ss.executableURL = URL(fileURLWithPath: "/usr/bin/ss")
                ss.arguments = ["-Htan", "sport", "= :\(pgmux.port)"]
                let out = Pipe()
                ss.standardOutput = out
                try? ss.run()
                ss.waitUntilExit()
                let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                state = text.split(separator: "\n").map { String($0.split(separator: " ").first ?? "") }
                    .first { $0 != "LISTEN" } ?? ""
                return !state.isEmpty
            }
            return state
        }
        let deferred = try PgmuxProcess(settings: [:])
        XCTAssertEqual(try silentConnectionState(deferred), "SYN-RECV")
        XCTAssertEqual(try PQConnection(deferred.conninfo()).scalar("SELECT 1"), "1")
        let immediate = try PgmuxProcess(settings: ["tcp_defer_accept": "0"])
        XCTAssertEqual(try silentConnectionState(immediate), "ESTAB")
        XCTAssertEqual(try PQConnection(immediate.conninfo()).scalar("SELECT 1"), "1")
    }

    /// tcp_keepalive / tcp_keepidle reach client connections through the listener (accepted
    /// sockets inherit its options), and a RELOAD changes them for connections accepted after it.
    func testClientKeepaliveFromTheListenerAndReload() throws {
        /// The keepalive timer of each client connection ("none" without one), once no
        /// retransmit timer hides it (a reply the client's kernel has not acknowledged yet).
        func keepaliveTimers(_ pgmux: PgmuxProcess) throws -> [String] {
            var lines: [Substring] = []
            _ = try waitUntil(2) {
                let r = try Shell.runStatus("/usr/bin/ss", ["-Htno", "state", "established", "sport", "= :\(pgmux.port)"])
                lines = r.output.split(separator: "\n")
                return !lines.contains { $0.contains("timer:(on,") }
            }
            return lines.map { line in
                line.range(of: "timer:(keepalive,").map { String(line[$0.upperBound...].prefix { $0 != "," }) } ?? "none"
            }
        }
        let pgmux = try PgmuxProcess(settings: ["tcp_keepalive": "1", "tcp_keepidle": "77"])
        let first = try PQConnection(pgmux.conninfo())
        XCTAssertEqual(try first.scalar("SELECT 1"), "1")
        // 77 s counts down from 1min17sec: the timer shows 1min16sec or 1min17sec.
        let before = try keepaliveTimers(pgmux)
        XCTAssertTrue(!before.isEmpty && before.allSatisfy { $0.hasPrefix("1min1") }, before.description)
        let text = try String(contentsOfFile: pgmux.configPath, encoding: .utf8)
            .replacingOccurrences(of: "tcp_keepalive = 1", with: "tcp_keepalive = 0")
        try text.write(toFile: pgmux.configPath, atomically: false, encoding: .utf8)
        pgmux.signal(SIGHUP)
        usleep(300_000)
        let second = try PQConnection(pgmux.conninfo())
        XCTAssertEqual(try second.scalar("SELECT 1"), "1")
        let timers = try keepaliveTimers(pgmux)
        XCTAssertEqual(timers.count, 2, timers.description)
        XCTAssertEqual(timers.filter { $0 == "none" }.count, 1, "the connection accepted after RELOAD has no keepalive: \(timers)")
    }
}
