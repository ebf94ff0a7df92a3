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

    private func writeFile(_ name: String, _ text: String) throws -> String {
        let path = PostgresCluster.shared.dir + "/\(name)-\(UInt32.random(in: 0...UInt32.max)).conf"
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, 0o644)
        return path
    }

    /// Issue 13, item 6: `peer map=` applies an auth_ident_file map, as PgBouncer's
    /// login_as_unix_peer: a line of the map must let the OS user in under the login name (the OS
    /// user's own name no longer suffices). Beyond PgBouncer: a `/regex` line with `\1`.
    func testPeerAuthWithAnIdentMap() throws {
        let me = String(cString: getpwuid(geteuid())!.pointee.pw_name)
        let ident = try writeFile("ident", """
            # MAPNAME  SYSTEM-USERNAME  DATABASE-USERNAME
            peermap    \(me)            mapped_one
            peermap    /^(.*)$          \\1_rx
            othermap   nobody           \(me)
            """)
        let hba = try writeFile("peer-map-hba", "local all all peer map=peermap\n")
        let cluster = PostgresCluster.shared
        let p = try PgmuxProcess(settings: ["auth_type": "hba", "auth_hba_file": hba, "auth_ident_file": ident,
                                            "log_connections": "1"], databases: [
            "peerdb": "host=127.0.0.1 port=\(cluster.port) dbname=\(PostgresCluster.database) user=\(PostgresCluster.scramUser.0) password=\(PostgresCluster.scramUser.1)",
        ])
        let mapped = try PQConnection("host=\(p.dir) port=\(p.port) user=mapped_one dbname=peerdb")
        XCTAssertEqual(try mapped.scalar("SELECT current_user"), PostgresCluster.scramUser.0)
        let byRegex = try PQConnection("host=\(p.dir) port=\(p.port) user=\(me)_rx dbname=peerdb")
        XCTAssertEqual(try byRegex.scalar("SELECT 1"), "1")
        for refused in ["someone_else", me, "other_rx"] {
            XCTAssertThrowsError(try PQConnection("host=\(p.dir) port=\(p.port) user=\(refused) dbname=peerdb"), refused) { error in
                XCTAssertTrue("\(error)".contains("unix socket login rejected"), "\(error)")
            }
        }
        XCTAssertTrue(p.log.contains("ident map peermap cannot be matched"), p.log)
        if geteuid() == 0 {
            // Another OS user through the same regex line: postgres may be postgres_rx, not mapped_one.
            let psql = ["/usr/bin/psql", "-X", "-At", "-w", "-h", p.dir, "-p", "\(p.port)", "-d", "peerdb", "-c", "SELECT 7"]
            let ok = try Shell.run("/usr/sbin/runuser", ["-u", "postgres", "--"] + psql + ["-U", "postgres_rx"], timeout: 10)
            XCTAssertTrue(ok.contains("7"), ok)
            let no = try Shell.runStatus("/usr/sbin/runuser", ["-u", "postgres", "--"] + psql + ["-U", "mapped_one"], timeout: 10)
            XCTAssertNotEqual(no.status, 0, no.output)
        }

        // A broken ident file fails the reload as a whole: the running maps stay.
        try "peermap \(me)\n".write(toFile: ident, atomically: false, encoding: .utf8)
        p.signal(SIGHUP)
        for _ in 0..<100 where !p.log.contains("RELOAD failed") { usleep(20_000) }
        XCTAssertTrue(p.log.contains("\(ident):1:"), p.log)
        XCTAssertTrue(p.log.contains("RELOAD failed"), p.log)
        XCTAssertEqual(try PQConnection("host=\(p.dir) port=\(p.port) user=mapped_one dbname=peerdb").scalar("SELECT 1"), "1")

        // A good one takes effect on reload.
        try "peermap \(me) remapped\n".write(toFile: ident, atomically: false, encoding: .utf8)
        p.signal(SIGHUP)
        var switched = false
        for _ in 0..<100 {
            if (try? PQConnection("host=\(p.dir) port=\(p.port) user=remapped dbname=peerdb")) != nil { switched = true; break }
            usleep(20_000)
        }
        XCTAssertTrue(switched, p.log)
        XCTAssertThrowsError(try PQConnection("host=\(p.dir) port=\(p.port) user=mapped_one dbname=peerdb"))
    }

    /// `cert map=`: the certificate's common name goes through the map (PgBouncer's login_via_cert).
    func testCertAuthWithAnIdentMap() throws {
        let cluster = PostgresCluster.shared
        let t = cluster.tlsDir, c = cluster.clientCertDir
        let cn = PostgresCluster.scramUser.0
        let ident = try writeFile("cert-ident", "certmap  \(cn)  cert_login\n")
        let hba = try writeFile("cert-map-hba", "hostssl all all 127.0.0.1/32 cert map=certmap\n")
        let p = try PgmuxProcess(settings: [
            "auth_type": "hba", "auth_hba_file": hba, "auth_ident_file": ident,
            "client_tls_sslmode": "verify-ca", "client_tls_cert_file": t + "/server.crt",
            "client_tls_key_file": t + "/server.key", "client_tls_ca_file": t + "/ca.crt",
        ], databases: [
            "certdb": "host=127.0.0.1 port=\(cluster.port) dbname=\(PostgresCluster.database) user=\(cn) password=\(PostgresCluster.scramUser.1)",
        ])
        let tls = "sslmode=verify-full sslrootcert=\(t)/ca.crt sslcert=\(c)/client.crt sslkey=\(c)/client.key"
        let ok = try PQConnection(p.conninfo(user: "cert_login", password: nil, database: "certdb", extra: tls))
        XCTAssertEqual(try ok.scalar("SELECT current_user"), cn)
        // The CN's own name is not in the map: refused.
        XCTAssertThrowsError(try PQConnection(p.conninfo(user: cn, password: nil, database: "certdb", extra: tls))) { error in
            XCTAssertTrue("\(error)".contains("certificate authentication failed"), "\(error)")
        }
        XCTAssertTrue(p.log.contains("ident map: certmap does not have a match"), p.log)
    }

    /// As PgBouncer, `map=` must name a map of auth_ident_file; pgmux refuses the file (file:line)
    /// where PgBouncer skips the rule. A broken or missing ident file refuses the start too.
    func testMissingMapOrBrokenIdentFileRefusesToStart() throws {
        let ident = try writeFile("ident-other", "othermap root postgres\n")
        let hba = try writeFile("map-hba", "local all all trust\nlocal all all peer map=nosuchmap\n")
        XCTAssertThrowsError(try PgmuxProcess(settings: ["auth_type": "hba", "auth_hba_file": hba, "auth_ident_file": ident])) { error in
            XCTAssertTrue("\(error)".contains("\(hba):2: Ident map nosuchmap is not found in ident config file"), "\(error)")
        }
        let broken = try writeFile("ident-broken", "# comment\nnosuchmap root\n")
        XCTAssertThrowsError(try PgmuxProcess(settings: ["auth_type": "hba", "auth_hba_file": hba, "auth_ident_file": broken])) { error in
            XCTAssertTrue("\(error)".contains("\(broken):2:"), "\(error)")
        }
        XCTAssertThrowsError(try PgmuxProcess(settings: ["auth_type": "hba", "auth_hba_file": hba,
                                                         "auth_ident_file": PostgresCluster.shared.dir + "/no-such-ident.conf"])) { error in
            XCTAssertTrue("\(error)".contains("could not open ident config file"), "\(error)")
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
