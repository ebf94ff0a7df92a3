import XCTest
@testable import PgmuxCore

final class AdminTableTests: XCTestCase {
    private func be32(_ v: Int32) -> [UInt8] {
        let u = UInt32(bitPattern: v)
        return [UInt8(u >> 24), UInt8(truncatingIfNeeded: u >> 16), UInt8(truncatingIfNeeded: u >> 8), UInt8(truncatingIfNeeded: u)]
    }
    private func be16(_ v: Int16) -> [UInt8] {
        let u = UInt16(bitPattern: v)
        return [UInt8(u >> 8), UInt8(truncatingIfNeeded: u)]
    }
    private func cstr(_ s: String) -> [UInt8] { Array(s.utf8) + [0] }
    private func message(_ type: Character, _ body: [UInt8]) -> [UInt8] {
        [UInt8(ascii: type.unicodeScalars.first!)] + be32(Int32(body.count + 4)) + body
    }

    func testSmallTableByteExact() {
        let t = AdminTable(columns: [AdminColumn("name", .text), AdminColumn("n", .int4), AdminColumn("big", .int8),
                                     AdminColumn("num", .numeric), AdminColumn("raw", .bytea)],
                           rows: [["a", "1", "2", "3", nil]])
        var b = MessageBuilder()
        AdminReply.table(t, into: &b)

        var rd = be16(5)
        for (name, oid, size) in [("name", 25, -1), ("n", 23, 4), ("big", 20, 8), ("num", 1700, -1), ("raw", 17, -1)] {
            rd += cstr(name) + be32(0) + be16(0) + be32(Int32(oid)) + be16(Int16(size)) + be32(-1) + be16(0)
        }
        var dr = be16(5)
        for v in ["a", "1", "2", "3"] { dr += be32(1) + Array(v.utf8) }
        dr += be32(-1)
        let expected = message("T", rd) + message("D", dr) + message("C", cstr("SHOW")) + message("Z", [UInt8(ascii: "I")])
        XCTAssertEqual(b.bytes, expected)
    }

    func testEmptyTableStillHasRowDescription() {
        var b = MessageBuilder()
        AdminTable(columns: AdminColumns.version).encode(into: &b)
        let rd = be16(1) + cstr("version") + be32(0) + be16(0) + be32(25) + be16(-1) + be32(-1) + be16(0)
        XCTAssertEqual(b.bytes, message("T", rd) + message("C", cstr("SHOW")))
    }

    func testErrorHasExactlyThreeFields() {
        var b = MessageBuilder()
        AdminReply.error(AdminError("admin access needed"), into: &b)
        let body = [UInt8(ascii: "S")] + cstr("ERROR") + [UInt8(ascii: "C")] + cstr("08P01")
            + [UInt8(ascii: "M")] + cstr("admin access needed") + [0]
        XCTAssertEqual(b.bytes, message("E", body) + message("Z", [UInt8(ascii: "I")]))

        var r = MessageBuilder()
        AdminReply.error(.reloadFailed, into: &r)
        let body2 = [UInt8(ascii: "S")] + cstr("ERROR") + [UInt8(ascii: "C")] + cstr("F0000")
            + [UInt8(ascii: "M")] + cstr("RELOAD failed, see logs for additional details") + [0]
        XCTAssertEqual(r.bytes, message("E", body2) + message("Z", [UInt8(ascii: "I")]))
    }

    func testFakeSetNoticeAndTag() {
        var b = MessageBuilder()
        AdminReply.fakeSet(into: &b)
        let notice = [UInt8(ascii: "S")] + cstr("NOTICE") + [UInt8(ascii: "C")] + cstr("00000")
            + [UInt8(ascii: "M")] + cstr("SET ignored") + [0]
        XCTAssertEqual(b.bytes, message("N", notice) + message("C", cstr("SET")) + message("Z", [UInt8(ascii: "I")]))
    }

    func testSetDoneAndComplete() {
        var b = MessageBuilder()
        AdminReply.setDone(key: "max_client_conn", value: "5", into: &b)
        XCTAssertEqual(b.bytes, message("C", cstr("SET max_client_conn=5")) + message("Z", [UInt8(ascii: "I")]))
        var t = MessageBuilder()
        AdminReply.setDone(key: "client_tls_sslmode", value: "require", tlsFailed: true, into: &t)
        XCTAssertEqual(t.bytes.first, UInt8(ascii: "N"))
        var c = MessageBuilder()
        AdminReply.complete(AdminCommand.pause(nil).tag, into: &c)
        XCTAssertEqual(c.bytes, message("C", cstr("PAUSE")) + message("Z", [UInt8(ascii: "I")]))
    }

    func testFakeShowColumnIsCanonicalName() {
        var b = MessageBuilder()
        AdminReply.fakeShow(.dateStyle, into: &b)
        let rd = be16(1) + cstr("datestyle") + be32(0) + be16(0) + be32(25) + be16(-1) + be32(-1) + be16(0)
        let dr = be16(1) + be32(3) + Array("ISO".utf8)
        XCTAssertEqual(b.bytes, message("T", rd) + message("D", dr) + message("C", cstr("SHOW")) + message("Z", [UInt8(ascii: "I")]))
    }

    func testHelpNotice() {
        var b = MessageBuilder()
        AdminReply.help(into: &b)
        let notice = [UInt8(ascii: "S")] + cstr("NOTICE") + [UInt8(ascii: "C")] + cstr("00000")
            + [UInt8(ascii: "M")] + cstr("Console usage") + [UInt8(ascii: "D")] + cstr(AdminReply.helpDetail) + [0]
        XCTAssertEqual(b.bytes, message("N", notice) + message("C", cstr("SHOW")) + message("Z", [UInt8(ascii: "I")]))
        XCTAssertTrue(AdminReply.helpDetail.hasPrefix("\n\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION\n\tSHOW PEERS|PEER_POOLS\n"))
        XCTAssertTrue(AdminReply.helpDetail.hasSuffix("\n\tSHUTDOWN WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS\n\tWAIT_CLOSE [<db>]"))
        XCTAssertEqual(AdminReply.helpDetail.split(separator: "\n").count, 18)
    }
}
