import Foundation
import XCTest
@testable import PgmuxCore

/// Replays every input the fuzzer found interesting (Tests/FuzzCorpus) plus hand-made hostile
/// cases: none may trap.
final class FuzzCorpusTests: XCTestCase {
    func testCorpusReplaysWithoutTrapping() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("FuzzCorpus")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        XCTAssertGreaterThan(files.count, 50, "the corpus is checked in")
        for name in files {
            let data = try Data(contentsOf: dir.appendingPathComponent(name))
            data.withUnsafeBytes { FuzzHarness.run($0) }
        }
    }

    func testHandMadeHostileInputs() {
        var cases: [[UInt8]] = [
            [0, 0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0],            // startup: 2 GB length
            [0, 0, 0, 0, 8, 0, 3, 0, 0],                         // startup with no terminator
            [1, UInt8(ascii: "Q"), 0xff, 0xff, 0xff, 0xff],      // relay: negative length
            [1, UInt8(ascii: "Z"), 0, 0, 0, 4],                  // ReadyForQuery without status
            [2, 1, 200, 0, 0],                                   // Bind whose names run past the end
            [3] + Array("SET x = 'unterminated".utf8),
            [4] + Array("SCRAM-SHA-256\0\u{ff}\u{ff}\u{ff}\u{ff}".utf8),
            // Server relay: ReadyForQuery of 7 bytes, ParseComplete with a body, a CommandComplete
            // without terminator, DISCARD ALL exactly, an ErrorResponse cut short, ParameterStatus
            // without its value.
            [0xF8, UInt8(ascii: "Z"), 0, 0, 0, 6, UInt8(ascii: "I"), 0],
            [0xF8, UInt8(ascii: "1"), 0, 0, 0, 6, 1, 2, UInt8(ascii: "3"), 0, 0, 0, 4],
            [0xF8, UInt8(ascii: "C"), 0, 0, 0, 4, UInt8(ascii: "C"), 0, 0, 0, 5, UInt8(ascii: "D")],
            [0xF8, UInt8(ascii: "C"), 0, 0, 0, 16] + Array("DEALLOCATE ALL\0".utf8) + [UInt8(ascii: "Z"), 0, 0, 0, 5, UInt8(ascii: "I")],
            [0xF8, UInt8(ascii: "E"), 0, 0, 0, 40, UInt8(ascii: "S")],
            [0xF8, UInt8(ascii: "S"), 0, 0, 0, 6, UInt8(ascii: "x"), 0],
            // Server login: length fields 0 and 3, an unknown authentication code, SASL with no
            // mechanism, a SASLContinue out of turn, BackendKeyData cut short, ErrorResponse
            // without fields.
            [0xF0, UInt8(ascii: "R"), 0, 0, 0, 0, 0, 0, 0, 0],
            [0xF0, UInt8(ascii: "S"), 0, 0, 0, 3, 0],
            [0xF0, UInt8(ascii: "R"), 0, 0, 0, 8, 0, 0, 0, 99],
            [0xF0, UInt8(ascii: "R"), 0, 0, 0, 9, 0, 0, 0, 10, 0],
            [0xF0, UInt8(ascii: "R"), 0, 0, 0, 12, 0, 0, 0, 11, UInt8(ascii: "r"), UInt8(ascii: "="), 0, 0],
            [0xF0, UInt8(ascii: "K"), 0, 0, 0, 6, 1, 2],
            [0xF0, UInt8(ascii: "E"), 0, 0, 0, 4],
        ]
        // Server login: SCRAM asking for 10,000,000 iterations (refused before any derivation) and
        // for 16 (derived, then a SASLFinal with a wrong signature).
        func authRequest(_ code: UInt8, _ data: String) -> [UInt8] {
            let body: [UInt8] = [0, 0, 0, code] + Array(data.utf8)
            return [UInt8(ascii: "R"), 0, 0, UInt8((body.count + 4) >> 8), UInt8(truncatingIfNeeded: body.count + 4)] + body
        }
        for i in ["10000000", "16"] {
            cases.append([0xF0] + authRequest(10, "SCRAM-SHA-256\0\0")
                         + authRequest(11, "r=fuzznonceSERVER,s=c2FsdHNhbHQ=,i=\(i)") + authRequest(12, "v=AAAA"))
        }
        var manyParams: [UInt8] = [0, 0, 0, 0, 0, 0, 3, 0, 0]
        for i in 0..<2000 { manyParams += Array("k\(i)\0v\0".utf8) }
        manyParams.append(0)
        let n = UInt32(manyParams.count - 1)
        manyParams[1] = UInt8(n >> 24); manyParams[2] = UInt8(truncatingIfNeeded: n >> 16)
        manyParams[3] = UInt8(truncatingIfNeeded: n >> 8); manyParams[4] = UInt8(truncatingIfNeeded: n)
        cases.append(manyParams)
        for c in cases { c.withUnsafeBytes { FuzzHarness.run($0) } }
        let startup = Array(manyParams.dropFirst())
        startup.withUnsafeBytes { raw in
            if case .success = StartupPacket.parse(raw) { XCTFail("thousands of parameters must be refused") }
        }
    }
}
