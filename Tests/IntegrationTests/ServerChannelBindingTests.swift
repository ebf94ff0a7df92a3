import XCTest

/// server_channel_binding: pgmux's SCRAM-SHA-256-PLUS login to PostgreSQL 15 over TLS.
final class ServerChannelBindingTests: XCTestCase {
    func testRequireLogsInWithPlusOverTLS() throws {
        // PostgreSQL verifies the binding data: a wrong certificate hash or gs2 header fails here.
        let pgmux = try PgmuxProcess(settings: ["server_tls_sslmode": "require", "server_channel_binding": "require"])
        let c = try PQConnection(pgmux.conninfo())
        XCTAssertEqual(try c.scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"), "t")
        // md5_user: PostgreSQL asks for md5, which cannot be bound; nothing is sent.
        XCTAssertThrowsError(try PQConnection(pgmux.conninfo(user: PostgresCluster.md5User.0,
                                                             password: PostgresCluster.md5User.1)))
        XCTAssertTrue(pgmux.log.contains("channel binding required but not supported by server's authentication request"),
                      pgmux.log)
    }

    func testRequireRefusesAServerWithoutTLS() throws {
        let pgmux = try PgmuxProcess(settings: ["server_tls_sslmode": "disable", "server_channel_binding": "require"])
        XCTAssertThrowsError(try PQConnection(pgmux.conninfo()))
        XCTAssertTrue(pgmux.log.contains("channel binding required, but SSL not in use"), pgmux.log)
        XCTAssertTrue(pgmux.isRunning)
    }

    func testPreferAndDisableBothLogIn() throws {
        for mode in ["prefer", "disable"] {
            let pgmux = try PgmuxProcess(settings: ["server_tls_sslmode": "require", "server_channel_binding": mode])
            XCTAssertEqual(try PQConnection(pgmux.conninfo()).scalar("SELECT 1"), "1", mode)
        }
        XCTAssertThrowsError(try PgmuxProcess(settings: ["server_channel_binding": "sometimes"]))
    }
}
