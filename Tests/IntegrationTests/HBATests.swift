import Foundation
import Glibc
import XCTest

/// auth_type = hba: pg_hba-style rules decide who gets in, and how.
final class HBAIntegrationTests: XCTestCase {
    private func pgmux(_ rules: String, extra: [String: String] = [:]) throws -> PgmuxProcess {
        let path = PostgresCluster.shared.dir + "/hba-\(UInt32.random(in: 0...UInt32.max)).conf"
        try rules.write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, 0o644)
        var s = ["auth_type": "hba", "auth_hba_file": path]
        for (k, v) in extra { s[k] = v }
        return try PgmuxProcess(settings: s)
    }

    func testRulesAllowRejectAndChooseTheMethod() throws {
        let db = PostgresCluster.database
        let p = try pgmux("""
            # database   user          address         method
            host  postgres  all          127.0.0.1/32    reject
            host  \(db)     \(PostgresCluster.md5User.0)  127.0.0.1/32  md5
            host  all       all          127.0.0.0/8     scram-sha-256
            local all       all                          trust
            """)
        XCTAssertEqual(try PQConnection(p.conninfo()).scalar("SELECT current_user"), PostgresCluster.scramUser.0)
        XCTAssertEqual(try PQConnection(p.conninfo(user: PostgresCluster.md5User.0, password: PostgresCluster.md5User.1)).scalar("SELECT 1"), "1")
        XCTAssertThrowsError(try PQConnection(p.conninfo(database: "postgres"))) { error in
            XCTAssertTrue("\(error)".contains("login rejected"), "\(error)")
        }
        XCTAssertThrowsError(try PQConnection(p.conninfo(password: "wrong")))
        // Unix socket: trust, no password asked.
        let local = try PQConnection("host=\(p.dir) port=\(p.port) user=\(PostgresCluster.scramUser.0) dbname=\(db)")
        XCTAssertEqual(try local.scalar("SELECT 1"), "1")
    }

    func testNoMatchingRuleMeansNoEntry() throws {
        let p = try pgmux("host all nobody 127.0.0.1/32 trust\n")
        XCTAssertThrowsError(try PQConnection(p.conninfo())) { error in
            XCTAssertTrue("\(error)".contains("login rejected"), "\(error)")
        }
    }

    func testHostsslRequiresTLS() throws {
        let t = PostgresCluster.shared.tlsDir
        let p = try pgmux("hostssl all all 127.0.0.1/32 scram-sha-256\n", extra: [
            "client_tls_sslmode": "prefer", "client_tls_cert_file": t + "/server.crt", "client_tls_key_file": t + "/server.key",
        ])
        XCTAssertThrowsError(try PQConnection(p.conninfo(extra: "sslmode=disable")))
        XCTAssertEqual(try PQConnection(p.conninfo(extra: "sslmode=require")).scalar("SELECT 1"), "1")
    }

    func testPeerAuthOnTheUnixSocket() throws {
        // peer: the OS user at the other end of the Unix socket must be the login name. The
        // database forces the PostgreSQL login, so the OS user needs no role of its own.
        let me = String(cString: getpwuid(geteuid())!.pointee.pw_name)
        let path = PostgresCluster.shared.dir + "/peer-hba.conf"
        try "local all \(me) peer\nlocal all all peer\n".write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, 0o644)
        let cluster = PostgresCluster.shared
        let p = try PgmuxProcess(settings: ["auth_type": "hba", "auth_hba_file": path], databases: [
            "peerdb": "host=127.0.0.1 port=\(cluster.port) dbname=\(PostgresCluster.database) user=\(PostgresCluster.scramUser.0) password=\(PostgresCluster.scramUser.1)",
        ])
        let ok = try PQConnection("host=\(p.dir) port=\(p.port) user=\(me) dbname=peerdb")
        XCTAssertEqual(try ok.scalar("SELECT current_user"), PostgresCluster.scramUser.0)
        XCTAssertThrowsError(try PQConnection("host=\(p.dir) port=\(p.port) user=someone_else dbname=peerdb")) { error in
            XCTAssertTrue("\(error)".contains("unix socket login rejected"), "\(error)")
        }
    }

    func testBadRuleFileRefusesToStartWithFileAndLine() throws {
        let path = PostgresCluster.shared.dir + "/bad-hba.conf"
        try "host all all 127.0.0.1/32 trust\nhost all all not-an-address md5\n".write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, 0o644)
        XCTAssertThrowsError(try PgmuxProcess(settings: ["auth_type": "hba", "auth_hba_file": path])) { error in
            XCTAssertTrue("\(error)".contains("bad-hba.conf:2"), "\(error)")
        }
    }
}
