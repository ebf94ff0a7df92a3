import XCTest
@testable import PgmuxCore

/// Splits a builder's output into (type, body) pairs, checking every length field on the way.
private func splitTyped(_ b: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> [(UInt8, [UInt8])] {
    var out: [(UInt8, [UInt8])] = []
    var i = 0
    while i < b.count {
        guard b.count - i >= 5 else { XCTFail("trailing bytes", file: file, line: line); break }
        let len = Int(UInt32(b[i + 1]) << 24 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 8 | UInt32(b[i + 4]))
        guard len >= 4, i + 1 + len <= b.count else { XCTFail("bad length \(len)", file: file, line: line); break }
        out.append((b[i], Array(b[(i + 5)..<(i + 1 + len)])))
        i += 1 + len
    }
    return out
}

/// For a buffer holding exactly one typed message: the length field must equal byte count - 1.
private func assertSingleFrame(_ b: [UInt8], type: Character, file: StaticString = #filePath, line: UInt = #line) -> [UInt8] {
    XCTAssertGreaterThanOrEqual(b.count, 5, file: file, line: line)
    guard b.count >= 5 else { return [] }
    XCTAssertEqual(b[0], UInt8(ascii: type.unicodeScalars.first!), file: file, line: line)
    let len = b.withUnsafeBytes { Int(Framing.readInt32($0.baseAddress!, 1)) }
    XCTAssertEqual(len, b.count - 1, "length field", file: file, line: line)
    return Array(b[5...])
}

private func build(_ f: (inout MessageBuilder) -> Void) -> [UInt8] {
    var m = MessageBuilder(); f(&m); return m.bytes
}

final class MessageCodecTests: XCTestCase {
    func testErrorResponseRoundTrip() {
        let b = build { $0.errorResponse(severity: "FATAL", code: SQLState.protocolViolation, message: "no such database: x") }
        let body = assertSingleFrame(b, type: "E")
        let f = MessageReader.errorFields(body)
        XCTAssertEqual(f, [UInt8(ascii: "S"): "FATAL", UInt8(ascii: "V"): "FATAL",
                           UInt8(ascii: "C"): "08P01", UInt8(ascii: "M"): "no such database: x"])
        XCTAssertEqual(body.last, 0)
        XCTAssertEqual(body, [0x53] + bytes("FATAL") + [0, 0x56] + bytes("FATAL") + [0, 0x43] + bytes("08P01") + [0, 0x4d]
                             + bytes("no such database: x") + [0, 0])
    }

    func testNoticeResponseAndNulStripping() {
        let b = build { $0.errorResponse(severity: "NOTICE", code: "00000", message: "a\u{0}b", notice: true) }
        let body = assertSingleFrame(b, type: "N")
        XCTAssertEqual(MessageReader.errorFields(body)[UInt8(ascii: "M")], "ab")
    }

    func testParameterStatusRoundTrip() {
        let b = build { $0.parameterStatus("TimeZone", "Europe/Zürich") }
        let body = assertSingleFrame(b, type: "S")
        let p = MessageReader.parameterStatus(body)
        XCTAssertEqual(p?.0, "TimeZone")
        XCTAssertEqual(p?.1, "Europe/Zürich")
        XCTAssertNil(MessageReader.parameterStatus(bytes("TimeZone") + [0] + bytes("UTC")))
        XCTAssertNil(MessageReader.parameterStatus([]))
    }

    func testBackendKeyDataRoundTrip() {
        let key: UInt64 = 0xDEAD_BEEF_0123_4567
        let b = build { $0.backendKeyData(key) }
        var r = MessageReader(assertSingleFrame(b, type: "K"))
        XCTAssertEqual(r.remaining, 8)
        let hi = r.int32(), lo = r.int32()
        XCTAssertEqual(hi, Int32(bitPattern: 0xDEAD_BEEF))
        XCTAssertEqual(lo, 0x0123_4567)
        XCTAssertNil(r.int32())
        XCTAssertEqual(b.count, 13)
    }

    func testReadyForQuery() {
        for s in ["I", "T", "E"] {
            let st = UInt8(ascii: s.unicodeScalars.first!)
            let b = build { $0.readyForQuery(st) }
            XCTAssertEqual(b, [0x5a, 0, 0, 0, 5, st])
        }
    }

    func testQuery() {
        let b = build { $0.query("SET a='x';SET b='y'") }
        var r = MessageReader(assertSingleFrame(b, type: "Q"))
        XCTAssertEqual(r.cString(), "SET a='x';SET b='y'")
        XCTAssertEqual(r.remaining, 0)
        XCTAssertNil(r.byte())
    }

    func testStartupMessageParsesBack() {
        let params = [("user", "bob"), ("database", "db1"), ("client_encoding", "UTF8")]
        let b = build { $0.startupMessage(params) }
        let len = b.withUnsafeBytes { Int(Framing.readInt32($0.baseAddress!, 0)) }
        XCTAssertEqual(len, b.count)
        XCTAssertEqual(Array(b[4..<8]), [0, 3, 0, 0])
        XCTAssertEqual(b.withUnsafeBytes { StartupPacket.parse($0) }, .success(.startup(minor: 0, parameters: params)))
    }

    func testCancelRequestParsesBack() {
        let key: UInt64 = 0x8000_0001_FFFF_0002
        let b = build { $0.cancelRequest(key) }
        XCTAssertEqual(b.count, 16)
        XCTAssertEqual(Array(b[0..<4]), [0, 0, 0, 16])
        XCTAssertEqual(b.withUnsafeBytes { StartupPacket.parse($0) }, .success(.cancel(key: key)))
    }

    func testAuthenticationMessages() {
        XCTAssertEqual(build { $0.authenticationOk() }, [0x52, 0, 0, 0, 8, 0, 0, 0, 0])
        XCTAssertEqual(build { $0.authenticationCleartext() }, [0x52, 0, 0, 0, 8, 0, 0, 0, 3])
        XCTAssertEqual(build { $0.authenticationMD5(salt: [1, 2, 3, 4]) }, [0x52, 0, 0, 0, 12, 0, 0, 0, 5, 1, 2, 3, 4])
    }

    func testSASLMessageLengths() {
        let sasl = build { $0.authenticationSASL(mechanisms: ["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"]) }
        var r = MessageReader(assertSingleFrame(sasl, type: "R"))
        XCTAssertEqual(r.int32(), 10)
        XCTAssertEqual(r.cString(), "SCRAM-SHA-256")
        XCTAssertEqual(r.cString(), "SCRAM-SHA-256-PLUS")
        XCTAssertEqual(r.byte(), 0)
        XCTAssertEqual(r.remaining, 0)
        XCTAssertEqual(sasl.count, 1 + 4 + 4 + 14 + 19 + 1)

        let data = bytes("r=abc,s=c2FsdA==,i=4096")
        let cont = build { $0.authenticationSASLContinue(data) }
        var rc = MessageReader(assertSingleFrame(cont, type: "R"))
        XCTAssertEqual(rc.int32(), 11)
        XCTAssertEqual(rc.rest(), data)
        XCTAssertEqual(rc.remaining, 0)

        let fin = build { $0.authenticationSASLFinal(bytes("v=xyz")) }
        var rf = MessageReader(assertSingleFrame(fin, type: "R"))
        XCTAssertEqual(rf.int32(), 12)
        XCTAssertEqual(rf.rest(), bytes("v=xyz"))

        let initial = build { $0.saslInitialResponse(mechanism: "SCRAM-SHA-256", data: bytes("n,,n=,r=nonce")) }
        var ri = MessageReader(assertSingleFrame(initial, type: "p"))
        XCTAssertEqual(ri.cString(), "SCRAM-SHA-256")
        XCTAssertEqual(ri.int32(), 13)
        XCTAssertEqual(ri.rest(), bytes("n,,n=,r=nonce"))
        XCTAssertEqual(initial.count, 1 + 4 + 14 + 4 + 13)

        let resp = build { $0.saslResponse(bytes("c=biws,r=n,p=x")) }
        XCTAssertEqual(assertSingleFrame(resp, type: "p"), bytes("c=biws,r=n,p=x"))
    }

    func testEveryTypedMessageLengthIsCountMinusOne() {
        let cases: [(Character, [UInt8])] = [
            ("R", build { $0.authenticationOk() }),
            ("R", build { $0.authenticationSASL(mechanisms: ["SCRAM-SHA-256"]) }),
            ("S", build { $0.parameterStatus("a", "b") }),
            ("K", build { $0.backendKeyData(1) }),
            ("Z", build { $0.readyForQuery(UInt8(ascii: "I")) }),
            ("E", build { $0.errorResponse(severity: "ERROR", code: "42000", message: "m") }),
            ("T", build { $0.rowDescription([(name: "c", typeOID: 25, size: -1), (name: "d", typeOID: 23, size: 4)]) }),
            ("D", build { $0.dataRow(["abc", nil, ""]) }),
            ("C", build { $0.commandComplete("SHOW") }),
            ("I", build { $0.emptyQueryResponse() }),
            ("v", build { $0.negotiateProtocolVersion(minor: 0, unsupported: ["_pq_.a"]) }),
            ("Q", build { $0.query("") }),
            ("p", build { $0.password("secret") }),
            ("p", build { $0.saslResponse([]) }),
            ("X", build { $0.terminate() }),
        ]
        for (t, b) in cases { _ = assertSingleFrame(b, type: t) }
        XCTAssertEqual(build { $0.terminate() }, [0x58, 0, 0, 0, 4])
        XCTAssertEqual(build { $0.emptyQueryResponse() }, [0x49, 0, 0, 0, 4])
    }

    func testConcatenatedMessagesEachFramed() {
        var m = MessageBuilder()
        m.authenticationOk()
        m.parameterStatus("server_version", "16.0")
        m.backendKeyData(42)
        m.readyForQuery(UInt8(ascii: "I"))
        let parts = splitTyped(m.bytes)
        XCTAssertEqual(parts.map(\.0), [0x52, 0x53, 0x4b, 0x5a])
        XCTAssertEqual(parts.map(\.1.count), [4, 20, 8, 1])
    }

    func testDataRowAndNegotiateLayout() {
        var r = MessageReader(assertSingleFrame(build { $0.dataRow(["ab", nil]) }, type: "D"))
        XCTAssertEqual(r.byte(), 0); XCTAssertEqual(r.byte(), 2)
        XCTAssertEqual(r.int32(), 2); XCTAssertEqual(r.byte(), 0x61); XCTAssertEqual(r.byte(), 0x62)
        XCTAssertEqual(r.int32(), -1); XCTAssertEqual(r.remaining, 0)

        var n = MessageReader(assertSingleFrame(build { $0.negotiateProtocolVersion(minor: 0, unsupported: ["_pq_.x", "_pq_.y"]) }, type: "v"))
        XCTAssertEqual(n.int32(), 196608)
        XCTAssertEqual(n.int32(), 2)
        XCTAssertEqual(n.cString(), "_pq_.x")
        XCTAssertEqual(n.cString(), "_pq_.y")
        XCTAssertEqual(n.remaining, 0)
    }

    func testReaderNeverTrapsOnShortBodies() {
        var r = MessageReader([1, 2, 3])
        XCTAssertNil(r.int32())
        XCTAssertEqual(r.offset, 0)
        XCTAssertNil(r.cString())
        XCTAssertEqual(r.byte(), 1)
        XCTAssertEqual(r.rest(), [2, 3])
        XCTAssertNil(r.byte())
        XCTAssertNil(r.cString())
        XCTAssertEqual(r.rest(), [])
        XCTAssertEqual(MessageReader.errorFields([]), [:])
        XCTAssertEqual(MessageReader.errorFields([0x53] + bytes("unterminated")), [:])
        XCTAssertEqual(MessageReader.errorFields([0x53] + bytes("ERROR") + [0, 0x4d] + bytes("x")), [0x53: "ERROR"])
    }
}
