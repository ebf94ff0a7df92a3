import XCTest
@testable import PgmuxCore

final class ConfigTests: XCTestCase {
    func testFullConfig() throws {
        let config = try loadConfig("""
        [databases]
        app = host=127.0.0.1 port=5432 dbname=appdb pool_size=10
        tx = host=127.0.0.1 pool_mode=transaction reserve_pool_size=3 min_pool_size=2
        * = host=fallback

        [pgmux]
        listen_addr = 127.0.0.1
        listen_port = 6433
        auth_type = scram-sha-256
        default_pool_size = 7
        reserve_pool_size = 1
        min_pool_size = 1
        bogus_setting = 1

        [users]
        bob = pool_mode=statement pool_size=2

        [peers]
        1 = host=/tmp/a

        [mystery]
        x = 1
        """)
        XCTAssertEqual(config.settings.listenAddr, ["127.0.0.1"])
        XCTAssertEqual(config.settings.listenPort, 6433)
        XCTAssertEqual(config.settings.authType, .scramSHA256)
        XCTAssertEqual(Set(config.databases.keys), ["app", "tx"])
        XCTAssertEqual(config.databases["app"]?.dbname, "appdb")
        XCTAssertEqual(config.fallbackDatabase?.host, "fallback")
        XCTAssertEqual(config.peers[1]?.host, "/tmp/a")
        XCTAssertEqual(config.path, "test.ini")
        XCTAssertEqual(config.warnings, [
            "test.ini:13: bogus_setting: unknown setting ignored",
            "test.ini:21: [mystery]: unknown section ignored",
        ])

        // pool mode precedence: users > databases > global
        XCTAssertEqual(config.poolMode(database: "app", user: "alice"), .session)
        XCTAssertEqual(config.poolMode(database: "tx", user: "alice"), .transaction)
        XCTAssertEqual(config.poolMode(database: "tx", user: "bob"), .statement)
        XCTAssertEqual(config.poolMode(database: "other", user: "alice"), .session)
        // pool size precedence
        XCTAssertEqual(config.poolSize(database: "app", user: "alice"), 10)
        XCTAssertEqual(config.poolSize(database: "app", user: "bob"), 2)
        XCTAssertEqual(config.poolSize(database: "tx", user: "alice"), 7)
        XCTAssertEqual(config.reservePoolSize(database: "tx", user: "alice"), 3)
        XCTAssertEqual(config.reservePoolSize(database: "app", user: "alice"), 1)
        XCTAssertEqual(config.minPoolSize(database: "tx"), 2)
        XCTAssertEqual(config.minPoolSize(database: "app"), 1)
        // fallback
        XCTAssertEqual(config.database(named: "sales")?.dbname, "sales")
        XCTAssertEqual(config.database(named: "sales")?.host, "fallback")
        XCTAssertEqual(config.database(named: "app")?.dbname, "appdb")
    }

    func testEmptyPgbouncerSectionIsEnough() throws {
        let config = try loadConfig("[pgbouncer]\n")
        XCTAssertEqual(config.settings, Settings())
        XCTAssertNil(config.fallbackDatabase)
        XCTAssertNil(config.database(named: "x"))
    }

    func testMissingMainSection() {
        let err = configError { () throws(ConfigError) in try loadConfig("[databases]\na = host=x\n") }
        XCTAssertEqual(err?.file, "test.ini")
        XCTAssertTrue(err?.message.contains("[pgbouncer]") ?? false)
    }

    func testBadValueNamesFileLineKeyAndAllowedValues() {
        let err = configError { () throws(ConfigError) in
            try loadConfig("[pgbouncer]\nlisten_port = 6432\npool_mode = foo\n", file: "/etc/pgmux.ini")
        }
        XCTAssertEqual(err, ConfigError(file: "/etc/pgmux.ini", line: 3, key: "pool_mode",
                                        message: "invalid value \"foo\" for pool_mode: expected session, transaction or statement"))
        let onErr = configError { () throws(ConfigError) in try loadConfig("[pgbouncer]\n\ntcp_keepalive = on\n") }
        XCTAssertEqual(onErr?.description, "test.ini:3: tcp_keepalive: invalid value \"on\" for tcp_keepalive: expected 0 or 1 (booleans are integers; on/off/true/false are not accepted)")
    }

    func testErrorsInIncludedFilesPointThere() {
        let err = configError { () throws(ConfigError) in
            try loadConfig("[pgbouncer]\n%include sub.ini\n", includes: ["sub.ini": "\n\nmax_client_conn = lots\n"])
        }
        XCTAssertEqual(err?.file, "sub.ini")
        XCTAssertEqual(err?.line, 3)
        XCTAssertEqual(err?.key, "max_client_conn")
    }

    func testUnknownKeyInIncludeWarnsWithItsLocation() throws {
        let config = try loadConfig("[pgbouncer]\n%include sub.ini\n", includes: ["sub.ini": "frobnicate = 1\n"])
        XCTAssertEqual(config.warnings, ["sub.ini:1: frobnicate: unknown setting ignored"])
    }

    func testDatabaseErrorsAreFatalAndLocated() {
        let err = configError { () throws(ConfigError) in try loadConfig("[pgbouncer]\n[databases]\n\"my db\" = hots=x\n") }
        XCTAssertEqual(err?.description, "test.ini:3: hots: unknown parameter \"hots\" in database \"my db\"")
    }

    func testQuotedDatabaseNamesAndLastWins() throws {
        let config = try loadConfig("[pgbouncer]\n[databases]\n\"my db\" = port=1\n\"my db\" = port=2\n")
        XCTAssertEqual(config.databases["my db"]?.port, 2)
    }
}
