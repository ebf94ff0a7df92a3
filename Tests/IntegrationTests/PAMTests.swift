import Foundation
import Glibc
import XCTest

/// auth_type = pam (and pam in the hba file), against a real PAM stack: pam_pwdfile checks the
/// password, pam_exec makes one user's check slow. The service file goes to /etc/pam.d under a
/// name of its own (auth_pam_service), so the tests need root.
final class PAMTests: XCTestCase {
    private var serviceName = ""
    private var dir = ""
    static let slowUser = "pam_slow_user"

    override func setUpWithError() throws {
        guard geteuid() == 0 else { throw XCTSkip("PAM tests write a service file to /etc/pam.d: run as root") }
        let modules = "/lib/x86_64-linux-gnu/security"
        for module in ["pam_pwdfile.so", "pam_exec.so"] where !FileManager.default.fileExists(atPath: "\(modules)/\(module)") {
            throw XCTSkip("\(module) missing (Debian: libpam-pwdfile, libpam-modules; scripts/deps.sh installs them)")
        }
        let cluster = PostgresCluster.shared
        serviceName = "pgmux-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        dir = cluster.dir + "/" + serviceName
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        chmod(dir, 0o755)
        // pgmux runs as postgres: its PAM modules read these files as that user.
        let hash = try Shell.run("/usr/bin/openssl", ["passwd", "-6", PostgresCluster.scramUser.1])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let slowHash = try Shell.run("/usr/bin/openssl", ["passwd", "-6", "slow_pw"]).trimmingCharacters(in: .whitespacesAndNewlines)
        try "\(PostgresCluster.scramUser.0):\(hash)\n\(Self.slowUser):\(slowHash)\n"
            .write(toFile: dir + "/passwd", atomically: false, encoding: .utf8)
        chmod(dir + "/passwd", 0o644)
        try "#!/bin/sh\n[ \"$PAM_USER\" = \"\(Self.slowUser)\" ] && sleep 4\nexit 0\n"
            .write(toFile: dir + "/slow.sh", atomically: false, encoding: .utf8)
        chmod(dir + "/slow.sh", 0o755)
        try """
            auth required pam_exec.so quiet \(dir)/slow.sh
            auth required pam_pwdfile.so pwdfile=\(dir)/passwd
            account required pam_permit.so
            """.write(toFile: "/etc/pam.d/\(serviceName)", atomically: false, encoding: .utf8)
    }

    override func tearDown() {
        if !serviceName.isEmpty { unlink("/etc/pam.d/\(serviceName)") }
    }

    /// auth_file lists only the console user: the server login uses the password PAM accepted.
    private func pgmux(_ settings: [String: String]) throws -> PgmuxProcess {
        try PgmuxProcess(settings: ["auth_pam_service": serviceName].merging(settings) { $1 }, userlist: [("postgres", "unused")])
    }

    func testRightWrongAndUnknown() throws {
        let p = try pgmux(["auth_type": "pam"])
        let c = try PQConnection(p.conninfo())
        XCTAssertEqual(try c.scalar("SELECT current_user"), PostgresCluster.scramUser.0, "server login with the proven password")
        XCTAssertThrowsError(try PQConnection(p.conninfo(password: "wrong"))) { error in
            XCTAssertTrue("\(error)".contains("PAM authentication failed"), "\(error)")
        }
        XCTAssertThrowsError(try PQConnection(p.conninfo(user: "nobody_here", password: "x"))) { error in
            XCTAssertTrue("\(error)".contains("PAM authentication failed"), "\(error)")
        }
        XCTAssertTrue(p.log.contains("pam_authenticate() failed"), p.log)
        XCTAssertEqual(try c.scalar("SELECT 'still here'"), "still here")
        XCTAssertTrue(p.isRunning)
    }

    func testWrongPasswordSQLStateIs28000() throws {
        let p = try pgmux(["auth_type": "pam"])
        XCTAssertEqual(cleartextLoginSQLState(port: p.port, user: PostgresCluster.scramUser.0, database: PostgresCluster.database,
                                              password: "wrong"), "28000", "PostgreSQL's auth_failed for PAM")
    }

    func testSlowModuleStallsNobodyElse() throws {
        let p = try pgmux(["auth_type": "pam"])
        let slowDone = DispatchSemaphore(value: 0)
        let slowConninfo = p.conninfo(user: Self.slowUser, password: "slow_pw")
        Thread.detachNewThread {
            _ = try? PQConnection(slowConninfo)  // PAM accepts after 4 s; the server has no such role
            slowDone.signal()
        }
        usleep(300_000)
        let start = Date()
        XCTAssertEqual(try PQConnection(p.conninfo()).scalar("SELECT 1"), "1")
        XCTAssertLessThan(Date().timeIntervalSince(start), 2.5, "a PAM login beside a slow one")
        XCTAssertEqual(slowDone.wait(timeout: .now() + 1), .timedOut, "the slow check was still running")
        XCTAssertEqual(slowDone.wait(timeout: .now() + 10), .success)
    }

    func testPamInTheHBAFileWithPamservice() throws {
        let path = dir + "/hba.conf"
        try "host all all 127.0.0.1/32 pam pamservice=\(serviceName)\n".write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, 0o644)
        let p = try pgmux(["auth_type": "hba", "auth_hba_file": path, "auth_pam_service": "no-such-service"])
        XCTAssertEqual(try PQConnection(p.conninfo()).scalar("SELECT 1"), "1")
        XCTAssertThrowsError(try PQConnection(p.conninfo(password: "wrong")))
    }
}
