import Foundation
import Glibc
import XCTest

/// Server host names resolved with c-ares, against a fake DNS server the test controls: a name
/// that does not resolve, a resolver that never answers, an address that changes, a zone whose
/// serial changes; none of them holds up the other pools.
final class DNSTests: XCTestCase {
    /// What a client thread got, read after it signalled.
    private final class Outcome: @unchecked Sendable {
        var value: String?
        var seconds = 0.0
    }

    private let cluster = PostgresCluster.shared

    private func line(_ hosts: String, _ extra: String = "") -> String {
        "host=\(hosts) port=\(cluster.port) dbname=\(PostgresCluster.database) \(extra)"
    }

    private func start(_ dns: FakeDNSServer, _ databases: [String: String], _ extra: [String: String] = [:]) throws -> PgmuxProcess {
        var settings = ["dns_nameservers": dns.nameserver, "admin_users": PostgresCluster.scramUser.0]
        for (k, v) in extra { settings[k] = v }
        return try PgmuxProcess(settings: settings, databases: databases)
    }

    private func admin(_ p: PgmuxProcess, _ sql: String) throws -> [[String?]] {
        try PQConnection(p.conninfo(database: "pgbouncer")).query(sql)
    }

    func testUnresolvableNameMovesToNextHost() throws {
        let dns = try FakeDNSServer()
        let p = try start(dns, ["d": line("missing.pgmux.test,127.0.0.1", "load_balance_hosts=disable")])
        let c = try PQConnection(p.conninfo(database: "d"))
        XCTAssertEqual(try c.scalar("SELECT 1"), "1")
        XCTAssertGreaterThan(dns.queries, 0, "asked the configured name server")
        let hosts = try admin(p, "SHOW HOSTS").filter { $0[0] == "d" }
        XCTAssertEqual(hosts.map { $0[1]! }, ["missing.pgmux.test", "127.0.0.1"])
        XCTAssertEqual(hosts[0][5], "backoff")
        XCTAssertTrue(hosts[0][8]!.contains("could not resolve host missing.pgmux.test"), "\(hosts[0])")
        XCTAssertEqual(hosts[1][5], "usable")
        let names = try admin(p, "SHOW DNS_HOSTS")
        XCTAssertEqual(names.first { $0[0] == "missing.pgmux.test" }?[2], "")
    }

    func testSilentResolverStallsNeitherTheHostListNorOtherPools() throws {
        let dns = try FakeDNSServer(silent: true)
        let p = try start(dns, ["hang": line("hang.pgmux.test,127.0.0.1", "load_balance_hosts=disable"),
                                "direct": line("127.0.0.1")], ["server_connect_timeout": "2"])
        let info = p.conninfo(database: "hang")
        let hang = Outcome()
        let done = DispatchSemaphore(value: 0)
        let t0 = Date()
        Thread {
            hang.value = try? PQConnection(info).scalar("SELECT 1")
            hang.seconds = Date().timeIntervalSince(t0)
            done.signal()
        }.start()
        usleep(300_000)
        let t1 = Date()
        XCTAssertEqual(try PQConnection(p.conninfo(database: "direct")).scalar("SELECT 2"), "2")
        XCTAssertLessThan(Date().timeIntervalSince(t1), 1, "another pool is served while the lookup hangs")
        XCTAssertEqual(done.wait(timeout: .now() + 15), .success)
        XCTAssertEqual(hang.value, "1", "served by the next host once the lookup timed out")
        XCTAssertGreaterThan(hang.seconds, 1.5)
        XCTAssertLessThan(hang.seconds, 6)
        XCTAssertGreaterThan(dns.queries, 0)
        let row = try XCTUnwrap(try admin(p, "SHOW HOSTS").first { $0[0] == "hang" && $0[1] == "hang.pgmux.test" })
        XCTAssertTrue(row[8]!.contains("could not resolve host hang.pgmux.test"), "\(row)")
        // The next clients go straight to the working host while the name is failing.
        let t2 = Date()
        XCTAssertEqual(try PQConnection(info).scalar("SELECT 3"), "3")
        XCTAssertLessThan(Date().timeIntervalSince(t2), 1)
    }

    func testChangedAddressIsUsedForNewConnectionsOnly() throws {
        let dns = try FakeDNSServer()
        dns.set("moving.pgmux.test", "127.0.0.1")
        let p = try start(dns, ["moving": line("moving.pgmux.test")],
                          ["dns_max_ttl": "1", "server_login_retry": "1", "pool_mode": "session"])
        let a = try PQConnection(p.conninfo(database: "moving"))
        XCTAssertEqual(try a.scalar("SELECT 1"), "1")
        // Nobody listens on 127.0.0.2: new servers fail there, the working one is kept.
        dns.set("moving.pgmux.test", "127.0.0.2")
        usleep(1_200_000)
        let info = p.conninfo(database: "moving")
        let b = Outcome()
        let done = DispatchSemaphore(value: 0)
        Thread {
            b.value = try? PQConnection(info).scalar("SELECT 5")
            done.signal()
        }.start()
        XCTAssertTrue(waitUntil(5) { p.log.contains("@127.0.0.2:\(self.cluster.port)") }, p.log)
        XCTAssertEqual(try a.scalar("SELECT 2"), "2", "the session's server was not dropped")
        XCTAssertTrue(p.log.contains("DNS: moving.pgmux.test no longer resolves to 127.0.0.1"), p.log)
        dns.set("moving.pgmux.test", "127.0.0.1")
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(b.value, "5", "served once the name points to the server again")
        let names = try admin(p, "SHOW DNS_HOSTS")
        XCTAssertEqual(names.first { $0[0] == "moving.pgmux.test" }?[2], "127.0.0.1")
    }

    func testZoneSerialChangeLooksNamesUpAgain() throws {
        let dns = try FakeDNSServer()
        dns.set("zoned.pgmux.test", "127.0.0.1")
        dns.setSerial(1)
        let p = try start(dns, ["zoned": line("zoned.pgmux.test")], ["dns_max_ttl": "60", "dns_zone_check_period": "0.5"])
        XCTAssertEqual(try PQConnection(p.conninfo(database: "zoned")).scalar("SELECT 1"), "1")
        let addrs = { try self.admin(p, "SHOW DNS_HOSTS").first { $0[0] == "zoned.pgmux.test" }?[2] }
        XCTAssertEqual(try addrs(), "127.0.0.1")
        XCTAssertTrue(try waitUntil(3) { try self.admin(p, "SHOW DNS_ZONES").first?[1] == "1" })
        dns.set("zoned.pgmux.test", "127.0.0.2")
        usleep(1_000_000)
        XCTAssertEqual(try addrs(), "127.0.0.1", "cached for dns_max_ttl while the serial stays")
        dns.setSerial(5)
        XCTAssertTrue(try waitUntil(3) { try addrs() == "127.0.0.2" }, "looked up again after the serial changed")
        let zones = try admin(p, "SHOW DNS_ZONES")
        XCTAssertEqual(zones.map { $0.map { $0 ?? "" } }, [["pgmux.test", "5", "1"]])
        XCTAssertTrue(p.log.contains("zone 'pgmux.test' serial changed: old=1 new=5"), p.log)
    }
}
