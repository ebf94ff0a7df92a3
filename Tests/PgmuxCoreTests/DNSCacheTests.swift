import XCTest
@testable import PgmuxCore

/// DNSCache: PgBouncer's dns_max_ttl / dns_nxdomain_ttl rules, rotation, stalled lookups, zones.
final class DNSCacheTests: XCTestCase {
    func testAnswerIsCachedForMaxTTLAndRotates() {
        var c = DNSCache()
        XCTAssertEqual(c.lookup("db.example.com", now: 0, lookupTimeout: 5), .lookUp)
        XCTAssertEqual(c.lookup("db.example.com", now: 0.1, lookupTimeout: 5), .wait, "one query at a time")
        XCTAssertEqual(c.pendingCount, 1)
        c.answered("db.example.com", addresses: ["10.0.0.1", "10.0.0.2"], now: 1, maxTTL: 15)
        XCTAssertEqual(c.pendingCount, 0)
        XCTAssertEqual((0..<3).map { _ in c.lookup("db.example.com", now: 2, lookupTimeout: 5) },
                       [.address("10.0.0.1"), .address("10.0.0.2"), .address("10.0.0.1")])
        XCTAssertEqual(c.lookup("db.example.com", now: 15.9, lookupTimeout: 5), .address("10.0.0.2"))
        XCTAssertEqual(c.lookup("db.example.com", now: 16, lookupTimeout: 5), .lookUp, "stale after dns_max_ttl")
        let vanished = c.answered("db.example.com", addresses: ["10.0.0.2", "10.0.0.3"], now: 16.1, maxTTL: 15)
        XCTAssertEqual(vanished, ["10.0.0.1"])
        XCTAssertEqual(c.records["db.example.com"]?.addresses, ["10.0.0.2", "10.0.0.3"])
    }

    func testFailureIsCachedForNxdomainTTL() {
        var c = DNSCache()
        _ = c.lookup("nope.example.com", now: 0, lookupTimeout: 5)
        c.failed("nope.example.com", reason: "Domain name not found", now: 1, nxdomainTTL: 3)
        XCTAssertEqual(c.lookup("nope.example.com", now: 3.9, lookupTimeout: 5), .failed("Domain name not found"))
        XCTAssertEqual(c.lookup("nope.example.com", now: 4, lookupTimeout: 5), .lookUp)
        // A successful answer later replaces the failure.
        c.answered("nope.example.com", addresses: ["10.0.0.9"], now: 4.5, maxTTL: 15)
        XCTAssertEqual(c.lookup("nope.example.com", now: 5, lookupTimeout: 5), .address("10.0.0.9"))
        // An empty answer is a failure.
        _ = c.lookup("empty.example.com", now: 0, lookupTimeout: 5)
        c.answered("empty.example.com", addresses: [], now: 1, maxTTL: 15)
        XCTAssertEqual(c.lookup("empty.example.com", now: 2, lookupTimeout: 5), .failed("no address"))
    }

    func testStalledLookupFailsNewConnectionsWithoutNewQueries() {
        var c = DNSCache()
        XCTAssertEqual(c.lookup("slow.example.com", now: 0, lookupTimeout: 2), .lookUp)
        XCTAssertEqual(c.lookup("slow.example.com", now: 1.9, lookupTimeout: 2), .wait)
        XCTAssertEqual(c.lookup("slow.example.com", now: 2, lookupTimeout: 2),
                       .failed("no answer from the resolver within 2 s"))
        XCTAssertEqual(c.pendingCount, 1, "still one query under way")
        c.failed("slow.example.com", reason: "Timeout while contacting DNS servers", now: 6, nxdomainTTL: 15)
        XCTAssertEqual(c.lookup("slow.example.com", now: 7, lookupTimeout: 2), .failed("Timeout while contacting DNS servers"))
    }

    func testZonesAndSerials() {
        var c = DNSCache()
        for name in ["a.db.example.com", "b.db.example.com", "c.other.org"] {
            _ = c.lookup(name, now: 0, lookupTimeout: 5)
            c.answered(name, addresses: ["10.0.0.1"], now: 0, maxTTL: 60)
        }
        _ = c.lookup("pending.db.example.com", now: 0, lookupTimeout: 5)
        XCTAssertEqual(DNSCache.zone(of: "a.db.example.com"), "db.example.com")
        XCTAssertNil(DNSCache.zone(of: "localhost"))
        XCTAssertEqual(c.zones, ["db.example.com", "other.org"])
        XCTAssertEqual(c.refresh(zone: "db.example.com", now: 10), ["a.db.example.com", "b.db.example.com"])
        XCTAssertEqual(c.lookup("a.db.example.com", now: 10, lookupTimeout: 5), .wait)
        XCTAssertEqual(c.lookup("c.other.org", now: 10, lookupTimeout: 5), .address("10.0.0.1"))

        var z = DNSZoneSerials()
        XCTAssertTrue(z.received(7, for: "db.example.com"), "first serial")
        XCTAssertFalse(z.received(7, for: "db.example.com"))
        XCTAssertFalse(z.received(6, for: "db.example.com"), "older")
        XCTAssertTrue(z.received(8, for: "db.example.com"))
        XCTAssertTrue(z.received(0x7000_0000, for: "other.org"))
        XCTAssertTrue(z.received(0xE000_0000, for: "other.org"))
        XCTAssertTrue(z.received(2, for: "other.org"), "wraps around (RFC 1982)")
        XCTAssertFalse(z.received(0xD000_0000, for: "other.org"))
        z.keepOnly(["other.org"])
        XCTAssertEqual(z.serials, ["other.org": 2])
    }
}
