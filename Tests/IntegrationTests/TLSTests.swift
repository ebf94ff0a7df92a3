import Foundation
import XCTest

/// TLS toward clients (client_tls_*) and toward PostgreSQL (server_tls_*), with a generated CA.
final class TLSTests: XCTestCase {
    private func tlsSettings(_ mode: String) -> [String: String] {
        let t = PostgresCluster.shared.tlsDir
        return ["client_tls_sslmode": mode, "client_tls_cert_file": t + "/server.crt",
                "client_tls_key_file": t + "/server.key", "client_tls_ca_file": t + "/ca.crt"]
    }

    func testClientTLSWithVerifyFullAndPlaintextRefused() throws {
        let pgmux = try PgmuxProcess(settings: tlsSettings("require"))
        let root = PostgresCluster.shared.tlsDir + "/ca.crt"
        let c = try PQConnection(pgmux.conninfo(extra: "sslmode=verify-full sslrootcert=\(root)"))
        XCTAssertTrue(c.sslInUse)
        XCTAssertEqual(try c.scalar("SELECT 'over tls'"), "over tls")
        // Large results through the TLS relay.
        XCTAssertEqual(try c.scalar("SELECT length(string_agg(md5(i::text), '')) FROM generate_series(1, 50000) i"), "1600000")
        XCTAssertThrowsError(try PQConnection(pgmux.conninfo(extra: "sslmode=disable"))) { error in
            XCTAssertTrue("\(error)".contains("SSL required"), "\(error)")
        }
        // Unix socket clients never use TLS and are not refused.
        let local = try PQConnection("host=\(pgmux.dir) port=\(pgmux.port) user=\(PostgresCluster.scramUser.0) password=\(PostgresCluster.scramUser.1) dbname=\(PostgresCluster.database)")
        XCTAssertFalse(local.sslInUse)
    }

    func testClientTLSPreferAndPgbenchOverTLS() throws {
        let pgmux = try PgmuxProcess(settings: tlsSettings("prefer").merging(["default_pool_size": "3"]) { $1 })
        let plain = try PQConnection(pgmux.conninfo(extra: "sslmode=disable"))
        XCTAssertFalse(plain.sslInUse)
        let r = try Shell.runStatus("/usr/bin/pgbench", ["-n", "-S", "-c", "8", "-j", "2", "-T", "2", "-h", "127.0.0.1",
                                                         "-p", "\(pgmux.port)", "-U", PostgresCluster.scramUser.0, PostgresCluster.database],
                                    env: ["PGPASSWORD": PostgresCluster.scramUser.1, "PGSSLMODE": "require"])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("number of failed transactions: 0"), r.output)
    }

    /// A client that offers a session from an earlier handshake resumes it (TLS 1.3 ticket), and
    /// channel binding still works on the pre-hashed certificate.
    func testSessionResumption() throws {
        let pgmux = try PgmuxProcess(settings: tlsSettings("require"))
        let sess = pgmux.dir + "/session.pem"
        // The pause keeps s_client reading until the post-handshake ticket has arrived.
        let client = "(sleep 0.5; echo) | openssl s_client -connect 127.0.0.1:\(pgmux.port) -starttls postgres"
        let r = try Shell.runStatus("/bin/sh", ["-c", "\(client) -sess_out \(sess) 2>&1; \(client) -sess_in \(sess) 2>&1"])
        let lines = r.output.split(separator: "\n").filter { $0.hasPrefix("New,") || $0.hasPrefix("Reused,") }
        XCTAssertEqual(lines.map { $0.split(separator: ",")[0] }, ["New", "Reused"], r.output)
        let bound = try PQConnection(pgmux.conninfo(extra: "sslmode=require channel_binding=require"))
        XCTAssertEqual(try bound.scalar("SELECT 1"), "1")
    }

    /// libpq's asynchronous API (psycopg, drivers polling PQsocket) hangs on a TLS record larger
    /// than 8 kB: what it did not read stays decrypted inside OpenSSL, invisible to the poll. A
    /// result far larger than a record must reach the client in records PostgreSQL's size.
    func testRecordsToClientsAreAtMost8kB() throws {
        // Plaintext toward PostgreSQL: its own records are 8 kB, and pgmux would relay them as they come.
        let settings = ["auth_type": "trust", "server_tls_sslmode": "disable"]
        let pgmux = try PgmuxProcess(settings: tlsSettings("require").merging(settings) { $1 })
        let probe = try TLSRecordProbe(port: pgmux.port)
        try probe.write(startupMessage(user: PostgresCluster.scramUser.0, database: PostgresCluster.database))
        _ = try probe.readUntilReady()
        // Read late: pgmux's writes then wait for the socket, and its relay buffer is full each
        // time it writes, as under load.
        try probe.write(simpleQuery("SELECT repeat('x', 4000000)"))
        usleep(500_000)
        let reply = try probe.readUntilReady()
        XCTAssertGreaterThan(reply.count, 4_000_000)
        XCTAssertGreaterThan(probe.applicationRecords.reduce(0, +), 4_000_000)
        // 8192 bytes of plaintext, plus the content type byte and the AEAD tag of TLS 1.3.
        XCTAssertLessThanOrEqual(probe.applicationRecords.max() ?? 0, 8192 + 1 + 16,
                                  "record sizes: \(Set(probe.applicationRecords).sorted())")
    }

    func testTLSGarbageAndStalledHandshakesAreContained() throws {
        let pgmux = try PgmuxProcess(settings: tlsSettings("require"))
        // SSLRequest followed by plaintext bytes in the same packet: refused.
        let smuggled: [UInt8] = [0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f] + Array("garbage".utf8)
        let reply = rawExchange(port: pgmux.port, send: smuggled)
        XCTAssertTrue(String(decoding: reply, as: UTF8.self).contains("unencrypted data after SSL request"))
        // SSLRequest, then garbage instead of a ClientHello.
        _ = rawExchange(port: pgmux.port, send: [0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f], timeout: 0.3)
        let stalled = loopbackConnect(port: pgmux.port)
        _ = [UInt8]([0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]).withUnsafeBytes { send(stalled ?? -1, $0.baseAddress, 8, Int32(MSG_NOSIGNAL)) }
        let root = PostgresCluster.shared.tlsDir + "/ca.crt"
        XCTAssertEqual(try PQConnection(pgmux.conninfo(extra: "sslmode=verify-full sslrootcert=\(root)")).scalar("SELECT 1"), "1",
                       "a stalled handshake blocks nobody")
        if let stalled { close(stalled) }
        XCTAssertTrue(pgmux.isRunning)
    }

    func testServerTLSIsUsedTowardPostgres() throws {
        let t = PostgresCluster.shared.tlsDir
        let pgmux = try PgmuxProcess(settings: ["server_tls_sslmode": "verify-full", "server_tls_ca_file": t + "/ca.crt",
                                                "admin_users": "postgres"].merging(tlsSettings("allow")) { $1 })
        let c = try PQConnection(pgmux.conninfo(extra: "sslmode=disable application_name=plain"))
        XCTAssertEqual(try c.scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"), "t")
        // SHOW CLIENTS / SHOW SERVERS fill `tls` as PgBouncer: version/cipher, empty without TLS.
        let tlsClient = try PQConnection(pgmux.conninfo(extra: "sslmode=require application_name=over_tls"))
        let console = try PQConnection(pgmux.conninfo(user: "postgres", password: "unused", database: "pgbouncer",
                                                      extra: "sslmode=disable"))
        func column(_ show: String, _ name: String) throws -> [String] {
            let r = try console.queryWithColumns("SHOW \(show)")
            guard let i = r.columns.firstIndex(of: name) else { XCTFail("no \(name) in SHOW \(show)"); return [] }
            return r.rows.map { $0[i] ?? "NULL" }
        }
        let clientTLS = Array(zip(try column("CLIENTS", "application_name"), try column("CLIENTS", "tls")))
        XCTAssertEqual(clientTLS.filter { $0.0 == "over_tls" }.count, 1, "\(clientTLS)")
        XCTAssertTrue(clientTLS.first { $0.0 == "over_tls" }?.1.hasPrefix("TLSv1.3/TLS_") ?? false, "\(clientTLS)")
        XCTAssertEqual(clientTLS.first { $0.0 == "plain" }?.1, "", "a client without TLS: \(clientTLS)")
        let serverTLS = try column("SERVERS", "tls")
        XCTAssertTrue(!serverTLS.isEmpty && serverTLS.allSatisfy { $0.hasPrefix("TLSv1.3/TLS_") }, serverTLS.description)
        _ = tlsClient
        // A CA that did not sign the server's certificate: the login fails, clearly.
        let other = try PgmuxProcess(settings: ["server_tls_sslmode": "verify-ca", "server_tls_ca_file": "/etc/ssl/certs/ca-certificates.crt"])
        XCTAssertThrowsError(try PQConnection(other.conninfo())) { error in
            XCTAssertTrue("\(error)".contains("TLS handshake with server failed"), "\(error)")
        }
    }
}

/// auth_type cert and peer.
final class CertAndPeerAuthTests: XCTestCase {
    func testCertAuthMatchesTheCommonName() throws {
        let cluster = PostgresCluster.shared
        let t = cluster.tlsDir, c = cluster.clientCertDir
        let pgmux = try PgmuxProcess(settings: [
            "auth_type": "cert", "client_tls_sslmode": "verify-ca", "client_tls_cert_file": t + "/server.crt",
            "client_tls_key_file": t + "/server.key", "client_tls_ca_file": t + "/ca.crt",
        ])
        let tls = "sslmode=verify-full sslrootcert=\(t)/ca.crt sslcert=\(c)/client.crt sslkey=\(c)/client.key"
        let ok = try PQConnection(pgmux.conninfo(password: nil, extra: tls))
        XCTAssertEqual(try ok.scalar("SELECT current_user"), PostgresCluster.scramUser.0)
        // Same certificate, another login name: refused.
        XCTAssertThrowsError(try PQConnection(pgmux.conninfo(user: PostgresCluster.md5User.0, password: nil, extra: tls))) { error in
            XCTAssertTrue("\(error)".contains("certificate authentication failed"), "\(error)")
        }
        // No client certificate: the handshake itself fails under verify-ca.
        XCTAssertThrowsError(try PQConnection(pgmux.conninfo(password: nil, extra: "sslmode=require")))
    }
}

/// SCRAM-SHA-256-PLUS: the login is bound to the TLS session (tls-server-end-point).
final class ChannelBindingTests: XCTestCase {
    func testChannelBindingRequiredByTheClient() throws {
        let t = PostgresCluster.shared.tlsDir
        let pgmux = try PgmuxProcess(settings: ["client_tls_sslmode": "require", "client_tls_cert_file": t + "/server.crt",
                                                "client_tls_key_file": t + "/server.key", "auth_type": "scram-sha-256"])
        let c = try PQConnection(pgmux.conninfo(extra: "sslmode=require channel_binding=require"))
        XCTAssertEqual(try c.scalar("SELECT 'bound'"), "bound")
        XCTAssertThrowsError(try PQConnection(pgmux.conninfo(password: "wrong", extra: "sslmode=require channel_binding=require")))
        // Without TLS there is nothing to bind to: a client that requires it is refused by libpq.
        let plain = try PgmuxProcess(settings: ["auth_type": "scram-sha-256"])
        XCTAssertThrowsError(try PQConnection(plain.conninfo(extra: "sslmode=disable channel_binding=require")))
    }
}

/// RELOAD/SIGHUP re-reads certificates and auth_file without dropping anyone.
final class ReloadTests: XCTestCase {
    func testReloadKeepsTLSClientsAndPicksUpNewUsers() throws {
        let t = PostgresCluster.shared.tlsDir
        let pgmux = try PgmuxProcess(settings: ["client_tls_sslmode": "require", "client_tls_cert_file": t + "/server.crt",
                                                "client_tls_key_file": t + "/server.key"],
                                     userlist: [PostgresCluster.scramUser])
        let before = try PQConnection(pgmux.conninfo(extra: "sslmode=require"))
        XCTAssertEqual(try before.scalar("SELECT 1"), "1")
        XCTAssertThrowsError(try PQConnection(pgmux.conninfo(user: PostgresCluster.md5User.0, password: PostgresCluster.md5User.1,
                                                              extra: "sslmode=require")))
        let list = [PostgresCluster.scramUser, PostgresCluster.md5User].map { "\"\($0.0)\" \"\($0.1)\"" }.joined(separator: "\n")
        try list.write(toFile: pgmux.dir + "/userlist.txt", atomically: false, encoding: .utf8)
        pgmux.signal(SIGHUP)
        usleep(400_000)
        XCTAssertEqual(try before.scalar("SELECT 'still here'"), "still here", "reload drops no TLS client")
        let after = try PQConnection(pgmux.conninfo(user: PostgresCluster.md5User.0, password: PostgresCluster.md5User.1,
                                                    extra: "sslmode=require"))
        XCTAssertEqual(try after.scalar("SELECT current_user"), PostgresCluster.md5User.0)
        XCTAssertTrue(after.sslInUse)
    }

    func testFailedReloadKeepsTheRunningConfiguration() throws {
        let pgmux = try PgmuxProcess(settings: ["default_pool_size": "2"])
        let text = try String(contentsOfFile: pgmux.configPath, encoding: .utf8) + "\nlisten_backlog = lots\n"
        try text.write(toFile: pgmux.configPath, atomically: false, encoding: .utf8)
        pgmux.signal(SIGHUP)
        usleep(300_000)
        XCTAssertTrue(pgmux.log.contains("listen_backlog"), pgmux.log)
        XCTAssertEqual(try PQConnection(pgmux.conninfo()).scalar("SELECT 1"), "1")
    }
}

/// client_tls_sslmode, each value, with psql's strictest client setting where TLS is offered.
final class ClientSSLModeMatrixTests: XCTestCase {
    func testEverySSLMode() throws {
        let cluster = PostgresCluster.shared
        let t = cluster.tlsDir, c = cluster.clientCertDir
        let strict = "sslmode=verify-full sslrootcert=\(t)/ca.crt sslcert=\(c)/client.crt sslkey=\(c)/client.key"
        for mode in ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] {
            let pgmux = try PgmuxProcess(settings: [
                "client_tls_sslmode": mode, "client_tls_cert_file": t + "/server.crt", "client_tls_key_file": t + "/server.key",
                "client_tls_ca_file": t + "/ca.crt", "client_tls_protocols": "tlsv1.2,tlsv1.3",
                "client_tls13_ciphers": "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256", "client_tls_ecdhcurve": "prime256v1",
            ])
            if mode == "disable" {
                XCTAssertThrowsError(try PQConnection(pgmux.conninfo(extra: strict)), "no TLS offered under disable")
                XCTAssertFalse(try PQConnection(pgmux.conninfo(extra: "sslmode=prefer")).sslInUse)
                continue
            }
            let conn = try PQConnection(pgmux.conninfo(extra: strict))
            XCTAssertTrue(conn.sslInUse, mode)
            XCTAssertEqual(try conn.scalar("SELECT 1"), "1", mode)
            let plain = try? PQConnection(pgmux.conninfo(extra: "sslmode=disable"))
            XCTAssertEqual(plain != nil, ["allow", "prefer"].contains(mode), "plaintext under \(mode)")
        }
    }
}
