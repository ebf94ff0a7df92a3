import XCTest
@testable import PgmuxCore

private func wireMessage(_ type: Character, _ body: [UInt8]) -> [UInt8] {
    [UInt8(ascii: type.unicodeScalars.first!)] + int32BE(Int32(body.count + 4)) + body
}

private let zByte = UInt8(ascii: "Z")
private let sByte = UInt8(ascii: "S")
private let dByte = UInt8(ascii: "D")
private let qByte = UInt8(ascii: "Q")

final class RelayScannerTests: XCTestCase {
    private func step(_ s: inout RelayScanner, _ buf: [UInt8], position: Int, end: Int? = nil,
                      capacity: Int = 1024, maxPacketSize: Int = 1 << 20,
                      whole: Set<UInt8> = [], headers: Set<UInt8> = []) -> RelayScanner.Step {
        buf.withUnsafeBytes {
            s.next($0.baseAddress!, position: position, end: end ?? buf.count, capacity: capacity,
                   maxPacketSize: maxPacketSize, wantWhole: { whole.contains($0) }, wantHeader: { headers.contains($0) })
        }
    }

    func testWalksMultipleMessagesInOneBuffer() {
        let d1 = wireMessage("D", [1, 2, 3])               // 8 bytes at 0
        let c = wireMessage("C", bytes("SELECT 1") + [0])  // 14 bytes at 8
        let z = wireMessage("Z", [UInt8(ascii: "I")])      // 6 bytes at 22
        let s2 = wireMessage("S", bytes("a") + [0] + bytes("b") + [0]) // 9 bytes at 28
        let buf = d1 + c + z + s2
        var s = RelayScanner()
        XCTAssertEqual(step(&s, buf, position: 0, whole: [zByte, sByte]), .message(type: zByte, start: 22, total: 6))
        XCTAssertEqual(s.passthrough, 0)
        XCTAssertEqual(step(&s, buf, position: 28, whole: [zByte, sByte]), .message(type: sByte, start: 28, total: 9))
        XCTAssertEqual(step(&s, buf, position: 37, whole: [zByte, sByte]), .needMore(position: 37))
        XCTAssertEqual(s.passthrough, 0)
    }

    func testNothingWantedForwardsEverythingComplete() {
        let buf = wireMessage("D", [1]) + wireMessage("D", [2, 2]) + wireMessage("C", [0])
        var s = RelayScanner()
        XCTAssertEqual(step(&s, buf, position: 0), .needMore(position: buf.count))
        XCTAssertEqual(s.passthrough, 0)
    }

    func testSplitMessagePassthroughCarriesOver() {
        let big = wireMessage("D", [UInt8](repeating: 7, count: 100))  // 105 bytes
        let z = wireMessage("Z", [UInt8(ascii: "T")])
        let buf = big + z
        var s = RelayScanner()
        // First read: only 30 bytes of the DataRow.
        XCTAssertEqual(step(&s, buf, position: 0, end: 30, whole: [zByte]), .needMore(position: 30))
        XCTAssertEqual(s.passthrough, 75)
        // Second read: 50 more bytes.
        XCTAssertEqual(step(&s, buf, position: 30, end: 80, whole: [zByte]), .needMore(position: 80))
        XCTAssertEqual(s.passthrough, 25)
        // Third read: rest of the DataRow and 3 bytes of ReadyForQuery (header incomplete).
        XCTAssertEqual(step(&s, buf, position: 80, end: 108, whole: [zByte]), .needMore(position: 105))
        XCTAssertEqual(s.passthrough, 0)
        // Header complete, body byte missing: still waits at the message start.
        XCTAssertEqual(step(&s, buf, position: 105, end: 110, whole: [zByte]), .needMore(position: 105))
        XCTAssertEqual(step(&s, buf, position: 105, end: 111, whole: [zByte]), .message(type: zByte, start: 105, total: 6))
    }

    func testWholeMessageReportedOnlyWhenComplete() {
        let body = bytes("client_encoding") + [0] + bytes("UTF8") + [0]
        let msg = wireMessage("S", body)
        var s = RelayScanner()
        for end in 0..<msg.count {
            XCTAssertEqual(step(&s, msg, position: 0, end: end, whole: [sByte]), .needMore(position: 0), "end=\(end)")
            XCTAssertEqual(s.passthrough, 0)
        }
        XCTAssertEqual(step(&s, msg, position: 0, whole: [sByte]), .message(type: sByte, start: 0, total: msg.count))
    }

    func testWholeMessageExactlyCapacityIsDelivered() {
        let msg = wireMessage("S", [UInt8](repeating: 0x61, count: 15) + [0, 0x62, 0])  // 23 bytes
        var s = RelayScanner()
        XCTAssertEqual(step(&s, msg, position: 0, capacity: 23, whole: [sByte]), .message(type: sByte, start: 0, total: 23))
    }

    func testWholeMessageLargerThanCapacityPassesThrough() {
        let msg = wireMessage("S", [UInt8](repeating: 0x61, count: 16) + [0, 0x62, 0])  // 24 bytes
        var s = RelayScanner()
        XCTAssertEqual(step(&s, msg, position: 0, end: 10, capacity: 23, whole: [sByte]), .needMore(position: 10))
        XCTAssertEqual(s.passthrough, 14)
        XCTAssertEqual(step(&s, msg, position: 10, capacity: 23, whole: [sByte]), .needMore(position: 24))
        XCTAssertEqual(s.passthrough, 0)
    }

    func testWantHeaderReportsHeaderThenSkipsBody() {
        let q1 = wireMessage("Q", bytes("select 1") + [0])   // 14 bytes
        let d = wireMessage("d", [1, 2, 3])                  // 8 bytes (not wanted)
        let q2 = wireMessage("Q", bytes("x") + [0])          // 7 bytes
        let buf = q1 + d + q2
        var s = RelayScanner()
        XCTAssertEqual(step(&s, buf, position: 0, headers: [qByte]), .header(type: qByte, start: 0, total: 14))
        XCTAssertEqual(s.passthrough, 14)
        // The caller resumes at `start`: passthrough covers the whole message, the unwanted 'd' is skipped.
        XCTAssertEqual(step(&s, buf, position: 0, headers: [qByte]), .header(type: qByte, start: 22, total: 7))
        XCTAssertEqual(step(&s, buf, position: 22, headers: [qByte]), .needMore(position: 29))
        XCTAssertEqual(s.passthrough, 0)
    }

    func testWantHeaderOnPartialMessage() {
        let q = wireMessage("Q", [UInt8](repeating: 0x61, count: 50) + [0])  // 56 bytes
        var s = RelayScanner()
        XCTAssertEqual(step(&s, q, position: 0, end: 4, headers: [qByte]), .needMore(position: 0))
        XCTAssertEqual(step(&s, q, position: 0, end: 5, headers: [qByte]), .header(type: qByte, start: 0, total: 56))
        XCTAssertEqual(step(&s, q, position: 0, end: 20, headers: [qByte]), .needMore(position: 20))
        XCTAssertEqual(s.passthrough, 36)
        XCTAssertEqual(step(&s, q, position: 20, headers: [qByte]), .needMore(position: 56))
    }

    func testInvalidLengthReported() {
        var s = RelayScanner()
        let good = wireMessage("D", [1])
        XCTAssertEqual(step(&s, good + [0x44, 0, 0, 0, 3], position: 0), .invalid(length: 3))
        var s2 = RelayScanner()
        XCTAssertEqual(step(&s2, [0x44, 0x80, 0, 0, 0], position: 0), .invalid(length: Int(Int32.min)))
        var s3 = RelayScanner()
        XCTAssertEqual(step(&s3, [0x44] + int32BE(5000), position: 0, maxPacketSize: 5000), .invalid(length: 5000))
    }

    func testRandomSplitsMatchSingleRead() {
        // The same stream fed in random chunks must report the same wanted messages.
        var stream: [UInt8] = []
        var expected: [Int] = []
        var rng = SplitMix64(state: 7)
        for i in 0..<200 {
            if i % 7 == 0 {
                expected.append(stream.count)
                stream += wireMessage("Z", [UInt8(ascii: "I")])
            } else {
                stream += wireMessage("D", [UInt8](repeating: 1, count: Int.random(in: 0...300, using: &rng)))
            }
        }
        var s = RelayScanner()
        var pos = 0, end = 0
        var seen: [Int] = []
        while pos < stream.count {
            end = min(stream.count, end + Int.random(in: 1...97, using: &rng))
            inner: while true {
                switch step(&s, stream, position: pos, end: end, capacity: 64, whole: [zByte]) {
                case .needMore(let p): pos = p; break inner
                case .message(_, let start, let total): seen.append(start); pos = start + total
                default: XCTFail("unexpected step"); return
                }
            }
        }
        XCTAssertEqual(seen, expected)
        XCTAssertEqual(s.passthrough, 0)
    }
}
