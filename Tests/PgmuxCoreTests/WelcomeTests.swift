import XCTest
@testable import PgmuxCore

final class WelcomeTests: XCTestCase {
    private let server: [(String, String)] = [("application_name", ""), ("client_encoding", "UTF8"),
                                              ("DateStyle", "ISO, MDY"), ("server_version", "15.1")]
    private let tracked: Set<String> = ["application_name", "client_encoding", "datestyle"]
    private func isTracked(_ name: String) -> Bool { tracked.contains(name.lowercased()) }

    /// (type, body fields) of each message, NUL-separated fields as strings.
    private func messages(_ bytes: [UInt8]) -> [(UInt8, [String])] {
        var out: [(UInt8, [String])] = []
        var i = 0
        while i + 5 <= bytes.count {
            let len = Int(bytes[i + 1]) << 24 | Int(bytes[i + 2]) << 16 | Int(bytes[i + 3]) << 8 | Int(bytes[i + 4])
            let body = Array(bytes[i + 5..<i + 1 + len])
            out.append((bytes[i], body.split(separator: 0, omittingEmptySubsequences: false).dropLast().map {
                String(decoding: $0, as: UTF8.self)
            }))
            i += 1 + len
        }
        XCTAssertEqual(i, bytes.count, "trailing bytes")
        return out
    }

    func testClientValuesReplaceTrackedServerValuesInServerOrder() {
        let w = Welcome(serverParameters: server, clientParameters: ["application_name": "app", "datestyle": "German"],
                        isTracked: isTracked)
        let m = messages(w.bytes)
        XCTAssertEqual(m.first?.0, UInt8(ascii: "R"))
        XCTAssertEqual(m.dropFirst().map { $0.1 }, [["application_name", "app"], ["client_encoding", "UTF8"],
                                                    ["DateStyle", "German"], ["server_version", "15.1"]])
        // Tracked server values the client did not choose become its own; untracked ones do not.
        XCTAssertEqual(w.params, ["application_name": "app", "datestyle": "German", "client_encoding": "UTF8"])
    }

    func testClientParametersTheServerDidNotReportFollow() {
        let w = Welcome(serverParameters: server, clientParameters: ["search_path": "s1"], isTracked: isTracked)
        XCTAssertEqual(messages(w.bytes).last?.1, ["search_path", "s1"])
        XCTAssertEqual(w.params["search_path"], "s1")
    }

    func testCacheReturnsTheSameWelcomeForTheSameParametersOnly() {
        var cache = WelcomeCache()
        var built = 0
        let counting: (String) -> Bool = { built += 1; return self.isTracked($0) }
        let a = cache.welcome(serverParameters: server, clientParameters: ["application_name": "a"], isTracked: counting)
        let callsForOneBuild = built
        XCTAssertGreaterThan(callsForOneBuild, 0)
        let again = cache.welcome(serverParameters: server, clientParameters: ["application_name": "a"], isTracked: counting)
        XCTAssertEqual(built, callsForOneBuild, "a hit builds nothing")
        XCTAssertEqual(again.bytes, a.bytes)
        let b = cache.welcome(serverParameters: server, clientParameters: ["application_name": "b"], isTracked: counting)
        XCTAssertNotEqual(b.bytes, a.bytes)
        XCTAssertEqual(cache.count, 2)
        cache.removeAll()
        XCTAssertEqual(cache.count, 0)
    }

    func testCacheSharesTheResultingParametersOnceAndStaysBounded() {
        var cache = WelcomeCache()
        var shared = 0
        for i in 0..<(WelcomeCache.capacity + 5) {
            _ = cache.welcome(serverParameters: server, clientParameters: ["application_name": "app\(i)"],
                              isTracked: isTracked, share: { shared += 1; return $0 })
        }
        XCTAssertEqual(shared, WelcomeCache.capacity + 5)
        XCTAssertLessThanOrEqual(cache.count, WelcomeCache.capacity)
        _ = cache.welcome(serverParameters: server, clientParameters: ["application_name": "app\(WelcomeCache.capacity + 4)"],
                          isTracked: isTracked, share: { shared += 1; return $0 })
        XCTAssertEqual(shared, WelcomeCache.capacity + 5, "a hit is not shared again")
    }
}

final class RandomPoolTests: XCTestCase {
    func testBytesAreHandedOutOnceAcrossRefills() {
        var pool = RandomPool(blockSize: 64)
        var seen = Set<[UInt8]>()
        for _ in 0..<100 {
            let b = pool.take(16)
            XCTAssertEqual(b.count, 16)
            XCTAssertTrue(seen.insert(b).inserted, "16 random bytes repeated")
        }
        XCTAssertEqual(pool.take(0), [])
        XCTAssertEqual(pool.take(200).count, 200, "larger than a block")
    }

    func testNonceAndKeys() {
        var pool = RandomPool()
        let nonce = pool.scramNonce()
        XCTAssertEqual(nonce.count, 24)
        XCTAssertFalse(nonce.contains(UInt8(ascii: ",")))
        XCTAssertNotEqual(pool.uint64(), pool.uint64())
    }
}
