import XCTest
@testable import PgmuxCore

final class FramingTests: XCTestCase {
    private func peek(_ b: [UInt8], max: Int = 1 << 20) -> Framing.Peek {
        b.withUnsafeBytes { Framing.peek($0.baseAddress!, available: b.count, maxPacketSize: max) }
    }

    private func header(_ type: Character, _ length: Int32) -> [UInt8] {
        [UInt8(ascii: type.unicodeScalars.first!)] + int32BE(length)
    }

    func testNeedHeaderForZeroToFourBytes() {
        let full = header("Q", 9)
        for n in 0...4 {
            let r = full.withUnsafeBytes { Framing.peek($0.baseAddress!, available: n, maxPacketSize: 1 << 20) }
            XCTAssertEqual(r, .needHeader, "available=\(n)")
        }
        XCTAssertEqual(Framing.headerSize, 5)
    }

    func testValidMessageTotalIsLengthPlusOne() {
        XCTAssertEqual(peek(header("Q", 4)), .message(type: UInt8(ascii: "Q"), total: 5))
        XCTAssertEqual(peek(header("Z", 5)), .message(type: UInt8(ascii: "Z"), total: 6))
        XCTAssertEqual(peek(header("D", 1000)), .message(type: UInt8(ascii: "D"), total: 1001))
        // Body bytes after the header are not looked at.
        XCTAssertEqual(peek(header("T", 300) + [1, 2, 3]), .message(type: UInt8(ascii: "T"), total: 301))
    }

    func testLengthBelowFourIsInvalid() {
        for l: Int32 in [0, 1, 2, 3] {
            XCTAssertEqual(peek(header("Q", l)), .invalid(length: Int(l)), "length=\(l)")
        }
    }

    func testLengthAtOrAboveMaxPacketSizeIsInvalid() {
        XCTAssertEqual(peek(header("D", 99), max: 100), .message(type: UInt8(ascii: "D"), total: 100))
        XCTAssertEqual(peek(header("D", 100), max: 100), .invalid(length: 100))
        XCTAssertEqual(peek(header("D", 101), max: 100), .invalid(length: 101))
        XCTAssertEqual(peek(header("D", Int32.max), max: 1 << 30), .invalid(length: Int(Int32.max)))
    }

    func testNegativeLengthIsInvalid() {
        XCTAssertEqual(peek([0x44, 0x80, 0, 0, 0]), .invalid(length: Int(Int32.min)))
        XCTAssertEqual(peek([0x44, 0xff, 0xff, 0xff, 0xff]), .invalid(length: -1))
        // Even with an unbounded limit a negative length never becomes a message.
        XCTAssertEqual(peek([0x44, 0x80, 0, 0, 0], max: Int.max), .invalid(length: Int(Int32.min)))
    }

    func testReadInt32BigEndian() {
        let b: [UInt8] = [0xAA, 0x01, 0x02, 0x03, 0x04, 0xff, 0xff, 0xff, 0xfe]
        b.withUnsafeBytes {
            XCTAssertEqual(Framing.readInt32($0.baseAddress!, 1), 0x0102_0304)
            XCTAssertEqual(Framing.readInt32($0.baseAddress!, 5), -2)
        }
    }

    func testNoTrapOnAnyFiveByteHeader() {
        var rng = SplitMix64(state: 0x5eed)
        var headers: [[UInt8]] = []
        let edges: [Int32] = [Int32.min, Int32.min + 1, -1, 0, 3, 4, 5, 0x7fff_fffe, Int32.max, 1 << 24, 10000]
        for e in edges { headers.append([0x51] + int32BE(e)) }
        for _ in 0..<5000 { headers.append((0..<5).map { _ in UInt8.random(in: 0...255, using: &rng) }) }
        for max in [5, 6, 8192, 1 << 31, Int.max] {
            for h in headers {
                let length = Int(Int32(bitPattern: UInt32(h[1]) << 24 | UInt32(h[2]) << 16 | UInt32(h[3]) << 8 | UInt32(h[4])))
                switch peek(h, max: max) {
                case .needHeader:
                    XCTFail("5 bytes must be enough")
                case .message(let type, let total):
                    XCTAssertEqual(type, h[0])
                    XCTAssertEqual(total, length + 1)
                    XCTAssertTrue(length >= 4 && length < max)
                case .invalid(let l):
                    XCTAssertEqual(l, length)
                    XCTAssertTrue(l < 4 || l >= max)
                }
            }
        }
    }
}
