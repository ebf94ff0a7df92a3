import XCTest
@testable import PgmuxCore

/// The prepared-statement rewriting state machine, without sockets.
final class PreparedStatementRewriterTests: XCTestCase {
    private func body(_ parts: [[UInt8]]) -> [UInt8] { parts.flatMap { $0 } }
    private func cstr(_ s: String) -> [UInt8] { Array(s.utf8) + [0] }
    private func parseBody(_ name: String, _ sql: String) -> [UInt8] { body([cstr(name), cstr(sql), [0, 0]]) }
    private func bindBody(_ stmt: String) -> [UInt8] { body([cstr(""), cstr(stmt), [0, 0, 0, 0, 0, 0]]) }

    private func run(_ rw: inout PreparedStatementRewriter, _ type: Character, _ b: [UInt8],
                     _ cache: inout ServerStatementCache, _ reg: PreparedStatementRegistry) -> PreparedStatementRewriter.Rewrite? {
        b.withUnsafeBytes { raw in
            try? rw.rewrite(type: UInt8(ascii: type.unicodeScalars.first!), body: raw, server: &cache, registry: reg).get()
        }
    }

    /// Splits concatenated messages into (type, body text).
    private func messages(_ bytes: [UInt8]) -> [(Character, String)] {
        var out: [(Character, String)] = []
        var i = 0
        while i + 5 <= bytes.count {
            let len = Int(bytes[i + 1]) << 24 | Int(bytes[i + 2]) << 16 | Int(bytes[i + 3]) << 8 | Int(bytes[i + 4])
            out.append((Character(UnicodeScalar(bytes[i])), String(decoding: bytes[(i + 5)..<(i + 1 + len)], as: UTF8.self)))
            i += 1 + len
        }
        XCTAssertEqual(i, bytes.count, "messages must tile the output exactly")
        return out
    }

    func testNamedParseIsRenamedAndRegistered() throws {
        let reg = PreparedStatementRegistry()
        var cache = ServerStatementCache(capacity: 10)
        var rw = PreparedStatementRewriter()
        let r = try XCTUnwrap(run(&rw, "P", parseBody("mine", "SELECT 1"), &cache, reg))
        let m = messages(try XCTUnwrap(r.replacement))
        XCTAssertEqual(m.count, 1)
        XCTAssertEqual(m[0].0, "P")
        XCTAssertTrue(m[0].1.hasPrefix("PGMUX_0\0SELECT 1\0"))
        XCTAssertEqual(r.expectations, [.parse(id: 0, swallow: false, clientName: "mine")])
        XCTAssertTrue(cache.contains(0))
        XCTAssertEqual(rw.clientStatements["mine"], 0)
    }

    func testParseOfAStatementTheServerHasBecomesUnnamed() throws {
        let reg = PreparedStatementRegistry()
        var cache = ServerStatementCache(capacity: 10)
        var a = PreparedStatementRewriter(), b = PreparedStatementRewriter()
        _ = run(&a, "P", parseBody("x", "SELECT 1"), &cache, reg)
        let r = try XCTUnwrap(run(&b, "P", parseBody("y", "SELECT 1"), &cache, reg))
        let m = messages(try XCTUnwrap(r.replacement))
        XCTAssertEqual(m.map { $0.0 }, ["P"])
        XCTAssertTrue(m[0].1.hasPrefix("\0SELECT 1\0"), "unnamed: a real ParseComplete, in order")
        XCTAssertEqual(b.clientStatements["y"], 0)
    }

    func testBindOnAServerLackingTheStatementInjectsASwallowedParse() throws {
        let reg = PreparedStatementRegistry()
        var first = ServerStatementCache(capacity: 10), second = ServerStatementCache(capacity: 10)
        var rw = PreparedStatementRewriter()
        _ = run(&rw, "P", parseBody("s", "SELECT 2"), &first, reg)
        let r = try XCTUnwrap(run(&rw, "B", bindBody("s"), &second, reg))
        let m = messages(try XCTUnwrap(r.replacement))
        XCTAssertEqual(m.map { $0.0 }, ["P", "B"])
        XCTAssertTrue(m[1].1.hasPrefix("\0PGMUX_0\0"))
        XCTAssertEqual(r.expectations, [.parse(id: 0, swallow: true)])
        // Second Bind on the same server: no Parse.
        let again = try XCTUnwrap(run(&rw, "B", bindBody("s"), &second, reg))
        XCTAssertEqual(messages(try XCTUnwrap(again.replacement)).map { $0.0 }, ["B"])
        XCTAssertEqual(again.expectations, [])
    }

    func testFullCacheClosesTheLeastRecentlyUsed() throws {
        let reg = PreparedStatementRegistry()
        var cache = ServerStatementCache(capacity: 2)
        var rw = PreparedStatementRewriter()
        _ = run(&rw, "P", parseBody("a", "SELECT 'a'"), &cache, reg)
        _ = run(&rw, "P", parseBody("b", "SELECT 'b'"), &cache, reg)
        _ = run(&rw, "B", bindBody("a"), &cache, reg)  // a is now the most recent
        let r = try XCTUnwrap(run(&rw, "P", parseBody("c", "SELECT 'c'"), &cache, reg))
        let m = messages(try XCTUnwrap(r.replacement))
        XCTAssertEqual(m.map { $0.0 }, ["C", "P"])
        XCTAssertEqual(m[0].1, "SPGMUX_1\0", "b (id 1) was least recently used")
        XCTAssertEqual(r.expectations.first, .close(swallow: true, evicts: true))
        XCTAssertFalse(cache.contains(1))
        XCTAssertTrue(cache.contains(0))
    }

    func testDuplicateClientNameFails() {
        let reg = PreparedStatementRegistry()
        var cache = ServerStatementCache(capacity: 10)
        var rw = PreparedStatementRewriter()
        _ = run(&rw, "P", parseBody("dup", "SELECT 1"), &cache, reg)
        let b = parseBody("dup", "SELECT 2")
        let r = b.withUnsafeBytes { rw.rewrite(type: UInt8(ascii: "P"), body: $0, server: &cache, registry: reg) }
        XCTAssertEqual(r, .failure(.nameInUse("dup")))
    }

    func testCloseIsAnsweredWithoutDroppingTheSharedStatement() throws {
        let reg = PreparedStatementRegistry()
        var cache = ServerStatementCache(capacity: 10)
        var rw = PreparedStatementRewriter()
        _ = run(&rw, "P", parseBody("z", "SELECT 1"), &cache, reg)
        let r = try XCTUnwrap(run(&rw, "C", body([[UInt8(ascii: "S")], cstr("z")]), &cache, reg))
        XCTAssertEqual(messages(try XCTUnwrap(r.replacement))[0].1, "Spgmux_noop\0")
        XCTAssertNil(rw.clientStatements["z"])
        XCTAssertTrue(cache.contains(0))
    }

    /// Binds say whether their statement may pin the client, every time: the answer is
    /// remembered per client (no registry lock per Bind), also across many names coming and going.
    func testBindsTellWhetherTheStatementMayPin() throws {
        let reg = PreparedStatementRegistry()
        var cache = ServerStatementCache(capacity: 100)
        var rw = PreparedStatementRewriter()
        _ = run(&rw, "P", parseBody("lock", "SELECT pg_advisory_lock(1)"), &cache, reg)
        _ = run(&rw, "P", parseBody("plain", "SELECT 1"), &cache, reg)
        for round in 0..<40 {
            XCTAssertEqual(try XCTUnwrap(run(&rw, "B", bindBody("lock"), &cache, reg)).mayPin, true, "round \(round)")
            XCTAssertEqual(try XCTUnwrap(run(&rw, "B", bindBody("plain"), &cache, reg)).mayPin, false, "round \(round)")
            // A statement used once and closed, as a driver with a statement cache does.
            let name = "tmp\(round)"
            _ = run(&rw, "P", parseBody(name, round % 2 == 0 ? "SELECT \(round)" : "CREATE TEMP TABLE t\(round) (x int)"), &cache, reg)
            XCTAssertEqual(try XCTUnwrap(run(&rw, "B", bindBody(name), &cache, reg)).mayPin, round % 2 == 1, name)
            _ = run(&rw, "C", body([[UInt8(ascii: "S")], cstr(name)]), &cache, reg)
        }
    }

    func testUnnamedAndUnknownPassThrough() throws {
        let reg = PreparedStatementRegistry()
        var cache = ServerStatementCache(capacity: 10)
        var rw = PreparedStatementRewriter()
        XCTAssertNil(try XCTUnwrap(run(&rw, "P", parseBody("", "SELECT 1"), &cache, reg)).replacement)
        XCTAssertNil(try XCTUnwrap(run(&rw, "B", bindBody(""), &cache, reg)).replacement)
        XCTAssertNil(try XCTUnwrap(run(&rw, "B", bindBody("sql_level"), &cache, reg)).replacement)
        let malformed: [UInt8] = [1, 2, 3]
        let r = malformed.withUnsafeBytes { rw.rewrite(type: UInt8(ascii: "B"), body: $0, server: &cache, registry: reg) }
        XCTAssertEqual(r, .failure(.malformed("Bind")))
    }

    func testExpectationsAfterAnError() {
        var e = ResponseExpectations()
        e.append(contentsOf: [.parse(id: 3, swallow: true), .parse(id: 4, swallow: false, clientName: "n"), .sync,
                              .parse(id: 5, swallow: false)])
        let lost = e.error().lost
        XCTAssertEqual(lost.map { $0.id }, [3, 4])
        XCTAssertEqual(lost.map { $0.clientName }, [nil, "n"])
        e.readyForQuery()
        XCTAssertEqual(Array(e.pending), [.parse(id: 5, swallow: false)])
        XCTAssertFalse(e.parseComplete().swallow)
        XCTAssertTrue(e.isEmpty)
    }

    func testLargeBindPrefixRewrite() throws {
        let reg = PreparedStatementRegistry()
        var cache = ServerStatementCache(capacity: 10)
        var rw = PreparedStatementRewriter()
        _ = run(&rw, "P", parseBody("big", "SELECT $1::text"), &cache, reg)
        let prefix = body([cstr(""), cstr("big"), [0, 0]])
        let result = prefix.withUnsafeBytes {
            rw.rewriteBindPrefix($0, bodyLength: 100_000, server: &cache, registry: reg)
        }
        let (r, consumed) = try XCTUnwrap(result)
        XCTAssertEqual(consumed, 5)
        let out = try XCTUnwrap(r.replacement)
        let len = Int(out[1]) << 24 | Int(out[2]) << 16 | Int(out[3]) << 8 | Int(out[4])
        XCTAssertEqual(len, 4 + 1 + 8 + (100_000 - 5))
    }

    // MARK: Parse + Sync answered without a server

    private func message(_ type: Character, _ body: [UInt8]) -> [UInt8] {
        let n = UInt32(body.count + 4)
        return [UInt8(ascii: type.unicodeScalars.first!), UInt8(n >> 24), UInt8(truncatingIfNeeded: n >> 16),
                UInt8(truncatingIfNeeded: n >> 8), UInt8(truncatingIfNeeded: n)] + body
    }

    private func answer(_ rw: inout PreparedStatementRewriter, _ bytes: [UInt8],
                        _ reg: PreparedStatementRegistry) -> PreparedStatementRewriter.ServerlessAnswer? {
        bytes.withUnsafeBytes { rw.answerWithoutServer($0, registry: reg, maxPacketSize: 1 << 20) }
    }

    func testParseOfAValidatedStatementIsAnsweredWithoutServer() throws {
        let reg = PreparedStatementRegistry()
        var cache = ServerStatementCache(capacity: 10)
        var first = PreparedStatementRewriter()
        _ = run(&first, "P", parseBody("a", "SELECT 1"), &cache, reg)
        var rw = PreparedStatementRewriter()
        let batch = message("P", parseBody("mine", "SELECT 1")) + message("S", [])
        XCTAssertNil(answer(&rw, batch, reg), "not before a server accepted the statement")
        reg.markValidated(0)
        let bind = message("B", bindBody("mine"))
        let a = try XCTUnwrap(answer(&rw, batch + bind, reg))
        XCTAssertEqual(a.consumed, batch.count, "the Bind still needs a server")
        XCTAssertEqual(a.reply, [UInt8(ascii: "1"), 0, 0, 0, 4, UInt8(ascii: "Z"), 0, 0, 0, 5, UInt8(ascii: "I")])
        XCTAssertEqual(rw.clientStatements["mine"], 0)
        XCTAssertNil(answer(&rw, batch, reg), "the name is now in use: the server path reports it")
    }

    func testServerlessAnswerStopsAtAnythingElse() {
        let reg = PreparedStatementRegistry()
        var cache = ServerStatementCache(capacity: 10)
        var first = PreparedStatementRewriter()
        _ = run(&first, "P", parseBody("a", "SELECT 1"), &cache, reg)
        reg.markValidated(0)
        var rw = PreparedStatementRewriter()
        let parse = message("P", parseBody("x", "SELECT 1"))
        XCTAssertNil(answer(&rw, parse, reg), "no Sync yet")
        XCTAssertNil(answer(&rw, Array((parse + message("S", [])).dropLast(1)), reg), "partial Sync")
        XCTAssertNil(answer(&rw, message("P", parseBody("", "SELECT 1")) + message("S", []), reg), "unnamed")
        XCTAssertNil(answer(&rw, message("P", parseBody("y", "SELECT 2")) + message("S", []), reg), "unknown text")
        XCTAssertNil(answer(&rw, parse + message("D", [UInt8(ascii: "S")] + cstr("x")) + message("S", []), reg),
                     "a Describe needs the server")
        XCTAssertNil(answer(&rw, parse + parse + message("S", []), reg), "the same name twice in one batch")
        XCTAssertNil(answer(&rw, [UInt8(ascii: "P"), 0, 0, 0, 2] + message("S", []), reg), "bad length")
        XCTAssertTrue(rw.clientStatements.isEmpty)
        let two = try? XCTUnwrap(answer(&rw, parse + message("S", []) + message("S", []), reg))
        XCTAssertEqual(two?.reply.count, 5 + 6 + 6, "a lone Sync between transactions is answered too")
    }
}
