import XCTest
@testable import PgmuxCore

final class SettingsTests: XCTestCase {
    private func apply(_ key: String, _ value: String) throws(ConfigError) -> Settings {
        var s = Settings()
        let known = try s.apply(key: key, value: value, file: "p.ini", line: 7)
        XCTAssertTrue(known, key)
        return s
    }

    func testDefaults() {
        let s = Settings()
        XCTAssertEqual(s.listenPort, 6432)
        XCTAssertEqual(s.listenAddr, [])
        XCTAssertEqual(s.unixSocketMode, 0o777)
        XCTAssertEqual(s.authType, .md5)
        XCTAssertEqual(s.poolMode, .session)
        XCTAssertEqual(s.maxClientConn, 100)
        XCTAssertEqual(s.defaultPoolSize, 20)
        XCTAssertEqual(s.serverResetQuery, "DISCARD ALL")
        XCTAssertEqual(s.serverCheckQuery, "<empty>")
        XCTAssertEqual(s.queryWaitTimeout, 120)
        XCTAssertEqual(s.maxPreparedStatements, 200)
        XCTAssertEqual(s.trackExtraParameters, ["IntervalStyle"])
        XCTAssertEqual(s.serverTlsSslmode, .prefer)
        XCTAssertEqual(s.clientTlsSslmode, .disable)
        XCTAssertTrue(s.tcpKeepalive)
        XCTAssertNil(s.authFile)
    }

    /// The knownKeys table and the property defaults must agree, and every listed key must be handled.
    func testKnownKeysDefaultsRoundTrip() throws {
        XCTAssertGreaterThan(Settings.knownKeys.count, 90)
        var s = Settings()
        for info in Settings.knownKeys {
            guard let text = info.defaultValue else { continue }
            XCTAssertTrue(try s.apply(key: info.name, value: text, file: "d", line: 1), info.name)
            XCTAssertEqual(s, Settings(), "default text of \(info.name) disagrees with the property default")
            s = Settings()
        }
        for info in Settings.knownKeys where info.defaultValue == nil {
            XCTAssertTrue(try s.apply(key: info.name, value: "x", file: "d", line: 1), info.name)
        }
    }

    func testReloadability() {
        XCTAssertEqual(Settings.info(for: "listen_port")?.reloadable, false)
        XCTAssertEqual(Settings.info(for: "track_extra_parameters")?.reloadable, false)
        XCTAssertEqual(Settings.info(for: "job_name")?.reloadable, false)
        XCTAssertEqual(Settings.info(for: "pool_mode")?.reloadable, true)
        XCTAssertEqual(Settings.info(for: "auth_file")?.defaultValue, nil)
        XCTAssertEqual(Settings.info(for: "logfile")?.defaultValue, "")
        XCTAssertNil(Settings.info(for: "nope"))
        for name in Settings.startOnlyKeys {
            XCTAssertNotNil(Settings.info(for: name), name)
        }
    }

    func testIntegersWithBasePrefixes() throws {
        XCTAssertEqual(try apply("unix_socket_mode", "0777").unixSocketMode, 511)
        XCTAssertEqual(try apply("unix_socket_mode", "0700").unixSocketMode, 0o700)
        XCTAssertEqual(try apply("max_client_conn", "0x10").maxClientConn, 16)
        XCTAssertEqual(try apply("max_client_conn", "0X1f").maxClientConn, 31)
        XCTAssertEqual(try apply("max_client_conn", "010").maxClientConn, 8)
        XCTAssertEqual(try apply("max_client_conn", "0").maxClientConn, 0)
        XCTAssertEqual(try apply("default_pool_size", " 42 ").defaultPoolSize, 42)
        for bad in ["", "12abc", "09", "0x", "1.5", "ten"] {
            let err = configError { () throws(ConfigError) in try apply("max_client_conn", bad) }
            XCTAssertEqual(err?.key, "max_client_conn", bad)
            XCTAssertTrue(err?.message.contains("expected an integer") ?? false, bad)
        }
    }

    func testRangesRejected() {
        let neg = configError { () throws(ConfigError) in try apply("default_pool_size", "-1") }
        XCTAssertEqual(neg?.description, "p.ini:7: default_pool_size: invalid value \"-1\" for default_pool_size: expected an integer >= 0")
        for bad in ["0", "65536", "-5"] {
            let err = configError { () throws(ConfigError) in try apply("listen_port", bad) }
            XCTAssertTrue(err?.message.contains("1..65535") ?? false, bad)
        }
        XCTAssertNotNil(configError { () throws(ConfigError) in try apply("peer_id", "16384") })
        XCTAssertNotNil(configError { () throws(ConfigError) in try apply("unix_socket_mode", "077777") })
    }

    func testBooleansAreZeroOrOne() throws {
        XCTAssertFalse(try apply("tcp_keepalive", "0").tcpKeepalive)
        XCTAssertTrue(try apply("server_round_robin", "1").serverRoundRobin)
        for bad in ["on", "off", "true", "yes", "2"] {
            let err = configError { () throws(ConfigError) in try apply("log_stats", bad) }
            XCTAssertEqual(err?.file, "p.ini")
            XCTAssertEqual(err?.line, 7)
            XCTAssertEqual(err?.key, "log_stats")
            XCTAssertTrue(err?.message.contains("0 or 1") ?? false, bad)
        }
        let on = configError { () throws(ConfigError) in try apply("server_reset_query_always", "on") }
        XCTAssertTrue(on?.description.hasPrefix("p.ini:7: server_reset_query_always: invalid value \"on\"") ?? false, on?.description ?? "")
    }

    func testFractionalSeconds() throws {
        XCTAssertEqual(try apply("query_wait_timeout", "0.5").queryWaitTimeout, 0.5)
        XCTAssertEqual(try apply("server_lifetime", "1800").serverLifetime, 1800)
        XCTAssertEqual(try apply("reserve_pool_timeout", "2.25").reservePoolTimeout, 2.25)
        XCTAssertEqual(try apply("client_idle_timeout", ".5").clientIdleTimeout, 0.5)
        for bad in ["-1", "1s", "inf", "nan", "1e3", "", "1.2.3"] {
            let err = configError { () throws(ConfigError) in try apply("query_timeout", bad) }
            XCTAssertTrue(err?.message.contains("seconds") ?? false, bad)
        }
    }

    func testListsAndStrings() throws {
        XCTAssertEqual(try apply("listen_addr", " 127.0.0.1 , ::1,, ").listenAddr, ["127.0.0.1", "::1"])
        XCTAssertEqual(try apply("listen_addr", "*").listenAddr, ["*"])
        XCTAssertEqual(try apply("ignore_startup_parameters", "extra_float_digits, options").ignoreStartupParameters,
                       ["extra_float_digits", "options"])
        XCTAssertEqual(try apply("admin_users", "").adminUsers, [])
        XCTAssertEqual(try apply("server_check_query", "").serverCheckQuery, "")
        XCTAssertEqual(try apply("auth_file", "/etc/pgmux/userlist.txt").authFile, "/etc/pgmux/userlist.txt")
        XCTAssertEqual(try apply("service_name", "svc").jobName, "svc")
    }

    func testEnums() throws {
        XCTAssertEqual(try apply("pool_mode", "transaction").poolMode, .transaction)
        XCTAssertEqual(try apply("pool_mode", "Statement").poolMode, .statement)
        XCTAssertEqual(try apply("auth_type", "scram-sha-256").authType, .scramSHA256)
        XCTAssertEqual(try apply("auth_type", "password").authType, .plain)
        XCTAssertEqual(try apply("auth_type", "hba").authType, .hba)
        XCTAssertEqual(try apply("server_tls_sslmode", "verify-full").serverTlsSslmode, .verifyFull)
        let err = configError { () throws(ConfigError) in try apply("pool_mode", "foo") }
        XCTAssertEqual(err?.message, "invalid value \"foo\" for pool_mode: expected session, transaction or statement")
        XCTAssertEqual(err?.description, "p.ini:7: pool_mode: invalid value \"foo\" for pool_mode: expected session, transaction or statement")
        let tls = configError { () throws(ConfigError) in try apply("client_tls_sslmode", "on") }
        XCTAssertTrue(tls?.message.contains("verify-full") ?? false)
        XCTAssertNotNil(configError { () throws(ConfigError) in try apply("client_tls_dheparams", "big") })
    }

    func testUnknownKeyReturnsFalse() throws {
        var s = Settings()
        XCTAssertFalse(try s.apply(key: "no_such_key", value: "1", file: "f", line: 1))
        XCTAssertTrue(try s.apply(key: "LISTEN_PORT", value: "7000", file: "f", line: 1))
        XCTAssertEqual(s.listenPort, 7000)
    }
}
