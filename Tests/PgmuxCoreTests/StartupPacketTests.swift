import XCTest
@testable import PgmuxCore

/// Builds a startup-class packet by hand: int32 length (whole packet) + int32 code + body.
private func startupPacketBytes(code: Int32, body: [UInt8], lengthDelta: Int32 = 0) -> [UInt8] {
    int32BE(Int32(8 + body.count) + lengthDelta) + int32BE(code) + body
}

private func paramsBody(_ params: [(String, String)], terminator: Bool = true) -> [UInt8] {
    var b: [UInt8] = []
    for (k, v) in params { b += bytes(k) + [0] + bytes(v) + [0] }
    if terminator { b.append(0) }
    return b
}

private func parsePacket(_ b: [UInt8]) -> Result<StartupPacket, StartupPacket.ParseError> {
    b.withUnsafeBytes { StartupPacket.parse($0) }
}

private let v30: Int32 = 196608
private let missingTerminator = StartupPacket.ParseError.layout("invalid startup packet layout: expected terminator as last byte")

final class StartupPacketTests: XCTestCase {
    func testSSLRequest() {
        XCTAssertEqual(parsePacket(int32BE(8) + int32BE(80877103)), .success(.sslRequest))
        // Extra bytes after the code: length mismatch of the fixed-size packet.
        XCTAssertEqual(parsePacket(int32BE(9) + int32BE(80877103) + [0]), .failure(.badLength))
    }

    func testGSSENCRequest() {
        XCTAssertEqual(parsePacket(int32BE(8) + int32BE(80877104)), .success(.gssEncRequest))
        XCTAssertEqual(parsePacket(int32BE(12) + int32BE(80877104) + [0, 0, 0, 0]), .failure(.badLength))
    }

    func testCancelRequestKeyIsBigEndian() {
        let p = int32BE(16) + int32BE(80877102) + [0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF]
        XCTAssertEqual(parsePacket(p), .success(.cancel(key: 0x0123_4567_89AB_CDEF)))
        let high = int32BE(16) + int32BE(80877102) + [0xff, 0, 0, 0, 0, 0, 0, 0x01]
        XCTAssertEqual(parsePacket(high), .success(.cancel(key: 0xff00_0000_0000_0001)))
        // Wrong size cancel request.
        XCTAssertEqual(parsePacket(int32BE(12) + int32BE(80877102) + [1, 2, 3, 4]), .failure(.badLength))
    }

    func testStartupV30WithParameters() {
        let params = [("user", "alice"), ("database", "app"), ("options", "-c search_path=x")]
        let r = parsePacket(startupPacketBytes(code: v30, body: paramsBody(params)))
        XCTAssertEqual(r, .success(.startup(minor: 0, parameters: params)))
        guard case .success(.startup(_, let got)) = r else { return XCTFail("not a startup") }
        XCTAssertEqual(got.map(\.0), ["user", "database", "options"])
        XCTAssertEqual(got.map(\.1), ["alice", "app", "-c search_path=x"])
    }

    func testStartupEmptyValueAndNoParameters() {
        XCTAssertEqual(parsePacket(startupPacketBytes(code: v30, body: [0])),
                       .success(.startup(minor: 0, parameters: [])))
        XCTAssertEqual(parsePacket(startupPacketBytes(code: v30, body: paramsBody([("application_name", "")]))),
                       .success(.startup(minor: 0, parameters: [("application_name", "")])))
    }

    func testStartupEqualityComparesOrderAndValues() {
        let a = StartupPacket.startup(minor: 0, parameters: [("user", "a"), ("database", "b")])
        XCTAssertNotEqual(a, .startup(minor: 0, parameters: [("database", "b"), ("user", "a")]))
        XCTAssertNotEqual(a, .startup(minor: 1, parameters: [("user", "a"), ("database", "b")]))
        XCTAssertNotEqual(a, .startup(minor: 0, parameters: [("user", "a")]))
    }

    func testMinorVersionAboveZero() {
        let body = paramsBody([("user", "u"), ("_pq_.x", "1")])
        XCTAssertEqual(parsePacket(startupPacketBytes(code: 196609, body: body)),
                       .success(.startup(minor: 1, parameters: [("user", "u"), ("_pq_.x", "1")])))
        XCTAssertEqual(parsePacket(startupPacketBytes(code: 0x0003_0002, body: paramsBody([("user", "u")]))),
                       .success(.startup(minor: 2, parameters: [("user", "u")])))
    }

    func testV2IsOldProtocol() {
        XCTAssertEqual(parsePacket(startupPacketBytes(code: 0x0002_0000, body: paramsBody([("user", "u")]))),
                       .failure(.oldProtocol))
        XCTAssertEqual(parsePacket(startupPacketBytes(code: 0x0001_0000, body: [0])), .failure(.oldProtocol))
    }

    func testV4IsUnsupported() {
        XCTAssertEqual(parsePacket(startupPacketBytes(code: 0x0004_0000, body: paramsBody([("user", "u")]))),
                       .failure(.unsupportedProtocol(0x0004_0000)))
    }

    func testMissingFinalTerminator() {
        // Last byte is not NUL at all.
        let noNul = startupPacketBytes(code: v30, body: bytes("user") + [0] + bytes("alice"))
        XCTAssertEqual(parsePacket(noNul), .failure(missingTerminator))
        // Name with no value at the end.
        let dangling = startupPacketBytes(code: v30, body: bytes("user") + [0])
        XCTAssertEqual(parsePacket(dangling), .failure(missingTerminator))
    }

    func testMissingFinalTerminatorAfterLastValue() throws {
        // PostgreSQL (ProcessStartupPacket) rejects both with "invalid startup packet layout:
        // expected terminator as last byte": the body must end with an extra NUL after the last pair.
        let noFinalNul = startupPacketBytes(code: v30, body: paramsBody([("user", "alice")], terminator: false))
        let emptyBody = startupPacketBytes(code: v30, body: [])   // 8 bytes: length + code only
        var accepted: [String] = []
        if case .success = parsePacket(noFinalNul) { accepted.append("user\\0alice\\0") }
        if case .success = parsePacket(emptyBody) { accepted.append("8-byte packet with no body") }
        XCTAssertEqual(accepted, [])
        XCTAssertEqual(parsePacket(noFinalNul), .failure(missingTerminator))
        XCTAssertEqual(parsePacket(emptyBody), .failure(missingTerminator))
    }

    func testLengthMismatch() {
        let good = startupPacketBytes(code: v30, body: paramsBody([("user", "u")]))
        XCTAssertEqual(parsePacket(startupPacketBytes(code: v30, body: paramsBody([("user", "u")]), lengthDelta: 1)),
                       .failure(.badLength))
        XCTAssertEqual(parsePacket(startupPacketBytes(code: v30, body: paramsBody([("user", "u")]), lengthDelta: -1)),
                       .failure(.badLength))
        XCTAssertEqual(parsePacket(good + [0]), .failure(.badLength))
        XCTAssertEqual(parsePacket(int32BE(-1) + int32BE(v30) + [0]), .failure(.badLength))
        XCTAssertEqual(parsePacket([]), .failure(.badLength))
        XCTAssertEqual(parsePacket(int32BE(4) + [0, 0, 0]), .failure(.badLength))
    }

    func testTooLongPacket() {
        let long = String(repeating: "x", count: StartupPacket.maxLength)
        XCTAssertEqual(parsePacket(startupPacketBytes(code: v30, body: paramsBody([("user", long)]))),
                       .failure(.badLength))
    }

    func testTooManyParameters() {
        let p64 = (0..<64).map { ("k\($0)", "v") }
        guard case .success(.startup(0, let got)) = parsePacket(startupPacketBytes(code: v30, body: paramsBody(p64))) else {
            return XCTFail("64 parameters must be accepted")
        }
        XCTAssertEqual(got.count, 64)
        let p65 = (0..<65).map { ("k\($0)", "v") }
        XCTAssertEqual(parsePacket(startupPacketBytes(code: v30, body: paramsBody(p65))),
                       .failure(.layout("invalid startup packet: too many parameters")))
    }

    func testInvalidUTF8() {
        let badName = startupPacketBytes(code: v30, body: [0x75, 0xff, 0xfe, 0] + bytes("v") + [0, 0])
        XCTAssertEqual(parsePacket(badName), .failure(.layout("invalid startup packet: parameter is not valid UTF-8")))
        let badValue = startupPacketBytes(code: v30, body: bytes("user") + [0, 0xc3, 0x28, 0, 0])
        XCTAssertEqual(parsePacket(badValue), .failure(.layout("invalid startup packet: parameter is not valid UTF-8")))
    }

    func testEmptyName() {
        let p = startupPacketBytes(code: v30, body: [0] + bytes("v") + [0, 0])
        XCTAssertEqual(parsePacket(p), .failure(.layout("invalid startup packet layout: empty parameter name")))
    }

    func testLengthHelper() {
        let b = int32BE(42) + [1, 2]
        b.withUnsafeBytes {
            XCTAssertEqual(StartupPacket.length($0.baseAddress!, available: 6), 42)
            XCTAssertNil(StartupPacket.length($0.baseAddress!, available: 3))
        }
    }

    func testEveryTruncationFailsCleanly() {
        let full = startupPacketBytes(code: v30, body: paramsBody([("user", "alice"), ("database", "db")]))
        XCTAssertEqual(parsePacket(full), .success(.startup(minor: 0, parameters: [("user", "alice"), ("database", "db")])))
        for n in 0..<full.count {
            // As received: the length word still announces the full packet.
            XCTAssertEqual(parsePacket(Array(full[..<n])), .failure(.badLength), "prefix \(n)")
        }
    }

    func testEveryTruncationWithPatchedLengthNeverTraps() throws {
        let full = startupPacketBytes(code: v30, body: paramsBody([("user", "alice"), ("database", "db")]))
        var accepted: [Int] = []
        for n in 0..<full.count {
            var p = Array(full[..<n])
            if n >= 4 { p.replaceSubrange(0..<4, with: int32BE(Int32(n))) }
            switch parsePacket(p) {
            case .success: accepted.append(n)
            case .failure(let e):
                if n < 8 { XCTAssertEqual(e, .badLength, "prefix \(n)") }
                else { XCTAssertEqual(e, missingTerminator, "prefix \(n)") }
            }
        }
        // PostgreSQL rejects every proper prefix. Accepted here: 8 (the code's low byte 0x00 is taken
        // as the terminator) and 19, 31 (prefixes ending at a value's NUL).
        XCTAssertEqual(accepted, [])
    }

    func testCorruptedPacketsNeverTrap() {
        var rng = SplitMix64(state: 42)
        let full = startupPacketBytes(code: v30, body: paramsBody([("user", "alice"), ("database", "db"), ("options", "-c a=b")]))
        for _ in 0..<3000 {
            var p = full
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                p[Int.random(in: 8..<p.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            _ = parsePacket(p)
        }
    }
}
