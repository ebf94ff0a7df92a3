import Foundation
import Glibc
import XCTest

/// PostgreSQL 17's direct TLS (sslnegotiation=direct): a TLS handshake instead of SSLRequest, with
/// ALPN "postgresql" required as PostgreSQL requires it.
final class DirectTLSTests: XCTestCase {
    private func tlsSettings(_ mode: String) -> [String: String] {
        let t = PostgresCluster.shared.tlsDir
        return ["client_tls_sslmode": mode, "client_tls_cert_file": t + "/server.crt",
                "client_tls_key_file": t + "/server.key", "client_tls_ca_file": t + "/ca.crt"]
    }

    /// Python with psycopg's binary wheel (its own libpq, 17 or newer): $PGMUX_TEST_PYTHON, or the
    /// venv scripts/pyvenv.sh makes in .build/pyvenv.
    private func libpq17Python() throws -> String {
        var build = URL(fileURLWithPath: PgmuxProcess.binary)
        while build.lastPathComponent != ".build" && build.path != "/" { build.deleteLastPathComponent() }
        let python = ProcessInfo.processInfo.environment["PGMUX_TEST_PYTHON"] ?? build.appendingPathComponent("pyvenv/bin/python").path
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw XCTSkip("no \(python): run scripts/pyvenv.sh (psycopg's binary wheel, which bundles libpq 17+)")
        }
        let version = try Shell.run(python, ["-c", "import psycopg; print(psycopg.pq.version())"])
        guard let v = Int(version.trimmingCharacters(in: .whitespacesAndNewlines)), v >= 170000 else {
            throw XCTSkip("psycopg of \(python) uses libpq \(version), older than 17: no sslnegotiation=direct")
        }
        return python
    }

    /// Runs a Python script (argv[1]: pgmux's port) and returns what it printed.
    private func python(_ interpreter: String, _ script: String, port: Int) throws -> String {
        try Shell.run(interpreter, ["-c", script, "\(port)"], timeout: 30).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func testLibpqDirectTLSLogsIn() throws {
        let py = try libpq17Python()
        let pgmux = try PgmuxProcess(settings: tlsSettings("require"))
        let root = PostgresCluster.shared.tlsDir + "/ca.crt"
        let out = try python(py, """
            import sys, psycopg
            with psycopg.connect(host="127.0.0.1", port=sys.argv[1], dbname="\(PostgresCluster.database)",
                                 user="\(PostgresCluster.scramUser.0)", password="\(PostgresCluster.scramUser.1)",
                                 sslmode="verify-full", sslrootcert="\(root)", sslnegotiation="direct",
                                 channel_binding="require") as c:
                print(c.pgconn.ssl_in_use, c.execute("SELECT 40 + 2").fetchone()[0])
            """, port: pgmux.port)
        XCTAssertEqual(out, "True 42")
        // The SSLRequest path still works beside it.
        XCTAssertEqual(try PQConnection(pgmux.conninfo(extra: "sslmode=require")).scalar("SELECT 1"), "1")
    }

    /// A raw TLS client (Python's ssl module) with the ALPN list given; prints how far it got.
    private func rawClient(alpn: String) -> String {
        """
        import socket, ssl, struct, sys
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        \(alpn)
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
        try:
            t = ctx.wrap_socket(s)
        except ssl.SSLError as e:
            print("handshake refused:", e); sys.exit(0)
        body = b"user\\0\(PostgresCluster.scramUser.0)\\0database\\0\(PostgresCluster.database)\\0\\0"
        try:
            t.sendall(struct.pack("!ii", 8 + len(body), 196608) + body)
            reply = t.recv(1)
        except (ssl.SSLError, OSError) as e:
            reply = b""
        print("reply:", reply.decode() if reply else "closed")
        """
    }

    func testALPNIsRequiredAndMustBePostgresql() throws {
        let pgmux = try PgmuxProcess(settings: tlsSettings("require"))
        XCTAssertEqual(try python("/usr/bin/python3", rawClient(alpn: "ctx.set_alpn_protocols(['postgresql'])"), port: pgmux.port),
                       "reply: R", "an authentication request")
        let wrong = try python("/usr/bin/python3", rawClient(alpn: "ctx.set_alpn_protocols(['h2', 'http/1.1'])"), port: pgmux.port)
        XCTAssertTrue(wrong.hasPrefix("handshake refused") && wrong.contains("no application protocol"), wrong)
        XCTAssertEqual(try python("/usr/bin/python3", rawClient(alpn: ""), port: pgmux.port), "reply: closed")
        XCTAssertTrue(pgmux.log.contains("received direct SSL connection request without ALPN protocol negotiation extension"),
                      pgmux.log)
        XCTAssertTrue(pgmux.isRunning)
    }

    func testDirectTLSWhenClientTLSIsOffIsClosedSilently() throws {
        let pgmux = try PgmuxProcess(settings: ["client_tls_sslmode": "disable"])
        XCTAssertEqual(try python("/usr/bin/python3", rawClient(alpn: "ctx.set_alpn_protocols(['postgresql'])"), port: pgmux.port)
                        .hasPrefix("handshake refused"), true)
        XCTAssertTrue(pgmux.log.contains("direct TLS connection rejected"), pgmux.log)
        XCTAssertEqual(try PQConnection(pgmux.conninfo()).scalar("SELECT 1"), "1")
    }

    /// A client that sends half a ClientHello and stalls holds up nobody.
    func testStalledDirectHandshakeBlocksNobody() throws {
        let pgmux = try PgmuxProcess(settings: tlsSettings("require"))
        let stalled = try XCTUnwrap(loopbackConnect(port: pgmux.port))
        defer { close(stalled) }
        _ = [UInt8]([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).withUnsafeBytes { send(stalled, $0.baseAddress, 6, Int32(MSG_NOSIGNAL)) }
        let start = Date()
        XCTAssertEqual(try PQConnection(pgmux.conninfo(extra: "sslmode=require")).scalar("SELECT 1"), "1")
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)
    }
}
