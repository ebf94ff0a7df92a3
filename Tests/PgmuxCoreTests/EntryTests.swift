import XCTest
@testable import PgmuxCore

final class EntryTests: XCTestCase {
    func testDatabaseEntryDefaultsAndKeys() throws {
        let plain = try DatabaseEntry.parse(name: "app", connectionString: "", file: "f", line: 1)
        XCTAssertEqual(plain.dbname, "app")
        XCTAssertNil(plain.host)
        XCTAssertTrue(plain.usesUnixSocket)
        XCTAssertEqual(plain.port, 5432)
        XCTAssertEqual(plain.loadBalanceHosts, .roundRobin)

        let db = try DatabaseEntry.parse(
            name: "app",
            connectionString: "dbname=real host=10.0.0.1 port=6543 user=u password='p w' auth_user=a pool_size=5 min_pool_size=1 "
                + "reserve_pool=2 pool_mode=transaction max_db_connections=9 max_db_client_connections=90 server_lifetime=1.5 "
                + "connect_query='SET x=1' client_encoding=UTF8 datestyle=ISO timezone=UTC application_name=pgm load_balance_hosts=disable",
            file: "f", line: 1)
        XCTAssertEqual(db.dbname, "real")
        XCTAssertEqual(db.host, "10.0.0.1")
        XCTAssertFalse(db.usesUnixSocket)
        XCTAssertEqual(db.port, 6543)
        XCTAssertEqual(db.user, "u")
        XCTAssertEqual(db.password, "p w")
        XCTAssertEqual(db.authUser, "a")
        XCTAssertEqual(db.poolSize, 5)
        XCTAssertEqual(db.minPoolSize, 1)
        XCTAssertEqual(db.reservePoolSize, 2)
        XCTAssertEqual(db.poolMode, .transaction)
        XCTAssertEqual(db.maxDbConnections, 9)
        XCTAssertEqual(db.maxDbClientConnections, 90)
        XCTAssertEqual(db.serverLifetime, 1.5)
        XCTAssertEqual(db.connectQuery, "SET x=1")
        XCTAssertEqual(db.clientEncoding, "UTF8")
        XCTAssertEqual(db.datestyle, "ISO")
        XCTAssertEqual(db.timezone, "UTC")
        XCTAssertEqual(db.applicationName, "pgm")
        XCTAssertEqual(db.loadBalanceHosts, .disable)

        let sock = try DatabaseEntry.parse(name: "s", connectionString: "host=/var/run/postgresql", file: "f", line: 1)
        XCTAssertTrue(sock.usesUnixSocket)
    }

    func testDatabaseEntryErrors() {
        let unknown = configError { () throws(ConfigError) in
            try DatabaseEntry.parse(name: "app", connectionString: "host=h pool_sise=3", file: "db.ini", line: 12)
        }
        XCTAssertEqual(unknown?.file, "db.ini")
        XCTAssertEqual(unknown?.line, 12)
        XCTAssertEqual(unknown?.key, "pool_sise")
        let badPort = configError { () throws(ConfigError) in
            try DatabaseEntry.parse(name: "app", connectionString: "port=99999", file: "db.ini", line: 4)
        }
        XCTAssertEqual(badPort?.key, "port")
        let badMode = configError { () throws(ConfigError) in
            try DatabaseEntry.parse(name: "app", connectionString: "pool_mode=tx", file: "db.ini", line: 4)
        }
        XCTAssertEqual(badMode?.message, "invalid value \"tx\" for pool_mode: expected session, transaction or statement")
    }

    func testFallbackInstantiation() throws {
        let star = try DatabaseEntry.parse(name: "*", connectionString: "host=db1 pool_size=3", file: "f", line: 1)
        let auto = star.instantiated(for: "sales")
        XCTAssertEqual(auto.name, "sales")
        XCTAssertEqual(auto.dbname, "sales")
        XCTAssertEqual(auto.host, "db1")
        XCTAssertEqual(auto.poolSize, 3)

        let forced = try DatabaseEntry.parse(name: "*", connectionString: "host=db1 dbname=shared", file: "f", line: 1)
        XCTAssertEqual(forced.instantiated(for: "sales").dbname, "shared")
        XCTAssertEqual(forced.instantiated(for: "sales").name, "sales")
    }

    func testUserEntry() throws {
        let u = try UserEntry.parse(
            name: "bob",
            connectionString: "pool_mode=statement pool_size=3 reserve_pool_size=1 max_user_connections=7 max_user_client_connections=70 "
                + "query_timeout=2.5 idle_transaction_timeout=3 transaction_timeout=4 client_idle_timeout=5",
            file: "f", line: 1)
        XCTAssertEqual(u.poolMode, .statement)
        XCTAssertEqual(u.poolSize, 3)
        XCTAssertEqual(u.reservePoolSize, 1)
        XCTAssertEqual(u.maxUserConnections, 7)
        XCTAssertEqual(u.maxUserClientConnections, 70)
        XCTAssertEqual(u.queryTimeout, 2.5)
        XCTAssertEqual(u.idleTransactionTimeout, 3)
        XCTAssertEqual(u.transactionTimeout, 4)
        XCTAssertEqual(u.clientIdleTimeout, 5)
        let err = configError { () throws(ConfigError) in try UserEntry.parse(name: "bob", connectionString: "host=x", file: "u.ini", line: 2) }
        XCTAssertEqual(err?.description, "u.ini:2: host: unknown parameter \"host\" for user \"bob\"")
    }

    func testPeerEntry() throws {
        let p = try PeerEntry.parse(id: "2", connectionString: "host=/tmp/p2 pool_size=4", file: "f", line: 1)
        XCTAssertEqual(p, { var e = PeerEntry(id: 2); e.host = "/tmp/p2"; e.poolSize = 4; return e }())
        XCTAssertNotNil(configError { () throws(ConfigError) in try PeerEntry.parse(id: "0", connectionString: "", file: "f", line: 1) })
        XCTAssertEqual(configError { () throws(ConfigError) in try PeerEntry.parse(id: "3", connectionString: "port=6000", file: "f", line: 1) }?.message,
                       "host was not provided for peer 3")
    }
}
