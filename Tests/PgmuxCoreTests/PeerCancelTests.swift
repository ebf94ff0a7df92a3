import XCTest
@testable import PgmuxCore

final class PeerCancelTests: XCTestCase {
    /// The key's wire bytes, as PgBouncer indexes `cancel_key[]`.
    private func bytes(_ key: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: key >> (56 - 8 * $0)) } }

    func testWithoutPeeringOnlyTheSignBitIsCleared() {
        XCTAssertEqual(PeerCancelKey.make(random: 0xFFFF_FFFF_FFFF_FFFF, peerId: 0), 0x7FFF_FFFF_FFFF_FFFF)
        XCTAssertEqual(PeerCancelKey.make(random: 0x1234_5678_9ABC_DEF0, peerId: 0), 0x1234_5678_9ABC_DEF0)
    }

    func testPeerIdInBytesOneAndTwoAndFullTTLInByteSeven() {
        let key = PeerCancelKey.make(random: 0xFFFF_FFFF_FFFF_FFFC, peerId: 0x1234)
        let b = bytes(key)
        XCTAssertEqual(b[1], 0x34, "low byte of the peer id")
        XCTAssertEqual(b[2], 0x12, "high byte of the peer id")
        XCTAssertEqual(b[7] & 0x03, 0x03, "TTL starts at 3")
        XCTAssertEqual(b[0], 0x7F, "pid half positive")
        XCTAssertEqual(Array(b[3...6]), [0xFF, 0xFF, 0xFF, 0xFF], "other bits stay random")
        XCTAssertEqual(PeerCancelKey.peerId(of: key), 0x1234)
        XCTAssertEqual(PeerCancelKey.peerId(of: PeerCancelKey.make(random: 0, peerId: 2)), 2)
        XCTAssertEqual(bytes(PeerCancelKey.make(random: 0, peerId: 2)), [0, 2, 0, 0, 0, 0, 0, 3])
    }

    func testOwnKeyIsLookedUpWithTheTTLRestored() {
        let key = PeerCancelKey.make(random: 0x0102_0304_0506_0708, peerId: 7)
        XCTAssertEqual(PeerCancelKey.route(key, ourPeerId: 7, peers: []), .local(key: key))
        // Forwarded twice by peers before it reached us.
        XCTAssertEqual(PeerCancelKey.route(key - 2, ourPeerId: 7, peers: [1]), .local(key: key))
        // Even with TTL 0: the request reached its owner.
        XCTAssertEqual(PeerCancelKey.route(key & ~PeerCancelKey.ttlMask, ourPeerId: 7, peers: []), .local(key: key))
    }

    func testOtherPeersKeyIsForwardedWithOneTTLLess() {
        let key = PeerCancelKey.make(random: 0xAAAA_AAAA_AAAA_AAAA, peerId: 2)
        XCTAssertEqual(PeerCancelKey.route(key, ourPeerId: 1, peers: [1, 2]), .forward(peerId: 2, key: key - 1))
        XCTAssertEqual(bytes(key - 1)[7] & 0x03, 2)
        XCTAssertEqual(PeerCancelKey.route(key - 2, ourPeerId: 1, peers: [2]), .forward(peerId: 2, key: key - 3))
        XCTAssertEqual(PeerCancelKey.route(key - 3, ourPeerId: 1, peers: [2]), .ttlExhausted)
        XCTAssertEqual(PeerCancelKey.route(key, ourPeerId: 1, peers: [3]), .unknownPeer(2))
    }

    func testWithoutPeeringEveryKeyIsLocalAndUntouched() {
        let key: UInt64 = 0x0002_0000_0000_0001
        XCTAssertEqual(PeerCancelKey.route(key, ourPeerId: 0, peers: [2]), .local(key: key))
    }

    func testPeerPoolAdmitsUpToPoolSizeThenQueuesInOrder() {
        var q = PeerPoolQueue<Int>(poolSize: 2)
        XCTAssertEqual(q.submit(1, now: 0), 1)
        XCTAssertEqual(q.submit(2, now: 0), 2)
        XCTAssertNil(q.submit(3, now: 1))
        XCTAssertNil(q.submit(4, now: 2))
        XCTAssertEqual(q.active, 2)
        XCTAssertEqual(q.waitingRequests, [3, 4])
        XCTAssertEqual(q.finished(), 3)
        XCTAssertEqual(q.active, 2)
        q.remove { $0 == 4 }
        XCTAssertNil(q.finished())
        XCTAssertNil(q.finished())
        XCTAssertEqual(q.active, 0)
        XCTAssertNil(q.finished(), "never below zero")
        XCTAssertEqual(q.active, 0)
    }

    func testWaitingRequestsExpireAfterTheTimeout() {
        var q = PeerPoolQueue<Int>(poolSize: 0)
        XCTAssertNil(q.submit(1, now: 0))
        XCTAssertNil(q.submit(2, now: 5))
        XCTAssertEqual(q.expire(now: 100, timeout: 0), [], "0 = no limit")
        XCTAssertEqual(q.expire(now: 10.5, timeout: 10), [1])
        XCTAssertEqual(q.waitingCount, 1)
        q.poolSize = 1
        XCTAssertEqual(q.next(), 2)
        XCTAssertEqual(q.waitingCount, 0)
    }
}
