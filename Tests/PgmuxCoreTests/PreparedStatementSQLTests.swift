import XCTest
@testable import PgmuxCore

/// SQL-level PREPARE / EXECUTE / DEALLOCATE: recognition, rewriting, serverless DEALLOCATE.
final class PreparedStatementSQLTests: XCTestCase {
    private func classify(_ text: String) -> PreparedStatementSQL {
        Array(text.utf8).withUnsafeBytes { PreparedStatementSQL.classify($0) }
    }

    func testRecognisedStatements() {
        XCTAssertEqual(classify("PREPARE a1 (int) AS SELECT $1"), .prepare(name: "a1", tail: " (int) AS SELECT $1"))
        XCTAssertEqual(classify("  prepare A1 as select 1;"), .prepare(name: "a1", tail: " as select 1"))
        XCTAssertEqual(classify("/* c /* nested */ */ PREPARE \"Mixed\"\"Q\" AS SELECT ';'"),
                       .prepare(name: "Mixed\"Q", tail: " AS SELECT ';'"))
        XCTAssertEqual(classify("PREPARE p AS SELECT $$a;b$$, E'x\\';y', $tag$;$tag$ -- end;\n"),
                       .prepare(name: "p", tail: " AS SELECT $$a;b$$, E'x\\';y', $tag$;$tag$"))
        XCTAssertEqual(classify("PREPARE q (int, text) AS INSERT INTO t VALUES ($1, $2);;  "),
                       .prepare(name: "q", tail: " (int, text) AS INSERT INTO t VALUES ($1, $2)"))
        XCTAssertEqual(classify("EXECUTE a1 (42, 'x)')"), .execute(name: "a1", arguments: " (42, 'x)')"))
        XCTAssertEqual(classify("execute a1"), .execute(name: "a1", arguments: ""))
        XCTAssertEqual(classify("DEALLOCATE pdo_stmt_00000001"), .deallocate(name: "pdo_stmt_00000001"))
        XCTAssertEqual(classify("DEALLOCATE PREPARE \"S_1\";"), .deallocate(name: "S_1"))
        XCTAssertEqual(classify("deallocate all"), .deallocateAll)
        XCTAssertEqual(classify("DEALLOCATE PREPARE ALL"), .deallocateAll)
        XCTAssertEqual(classify("DEALLOCATE \"all\""), .deallocate(name: "all"))
    }

    func testAnythingElsePassesThrough() {
        for text in ["SELECT 1", "PREPARE a1 AS SELECT 1; SELECT 2", "EXECUTE a1; DROP TABLE t", "DEALLOCATE a1, b1",
                     "DEALLOCATE a1; DEALLOCATE b1", "PREPARE a1 SELECT 1", "PREPARE a1 AS SELECT 'open",
                     "EXECUTE a1 (1", "PREPARE AS SELECT 1", "DEALLOCATE", "EXPLAIN EXECUTE a1", "PREPARE a1 AS SELECT /* x",
                     "DEALLOCATE \"\"", "", "   ", "PREPARE TRANSACTION 'x'"] {
            XCTAssertEqual(classify(text), .other, text)
        }
    }

    private func rewriteQuery(_ rw: inout PreparedStatementRewriter, _ sql: String, _ cache: inout ServerStatementCache,
                              _ reg: PreparedStatementRegistry, failed: Bool = false) -> (String?, [Expectation]) {
        let r = (Array(sql.utf8) + [0]).withUnsafeBytes {
            rw.rewriteQuery($0, server: &cache, registry: reg, inFailedTransaction: failed)
        }
        guard let bytes = r.replacement else { return (nil, r.expectations) }
        XCTAssertEqual(bytes.first, UInt8(ascii: "Q"))
        XCTAssertEqual(bytes.last, 0)
        return (String(decoding: bytes[5..<(bytes.count - 1)], as: UTF8.self), r.expectations)
    }

    func testPrepareExecuteDeallocateAcrossServers() {
        let reg = PreparedStatementRegistry()
        var first = ServerStatementCache(capacity: 10), second = ServerStatementCache(capacity: 10)
        var rw = PreparedStatementRewriter()
        var (text, exp) = rewriteQuery(&rw, "PREPARE a1 (int) AS SELECT $1 + 1", &first, reg)
        XCTAssertEqual(text, "PREPARE \"PGMUX_0\" (int) AS SELECT $1 + 1")
        XCTAssertEqual(exp, [.commandComplete(swallow: false, prepares: 0, clientName: "a1")])
        (text, exp) = rewriteQuery(&rw, "EXECUTE a1(41)", &first, reg)
        XCTAssertEqual(text, "EXECUTE \"PGMUX_0\"(41)")
        XCTAssertEqual(exp, [])
        // Another server lacks it: prepared first in the same Query, its reply cut out.
        (text, exp) = rewriteQuery(&rw, "EXECUTE a1 (1)", &second, reg)
        XCTAssertEqual(text, "PREPARE \"PGMUX_0\" (int) AS SELECT $1 + 1; EXECUTE \"PGMUX_0\" (1)")
        XCTAssertEqual(exp, [.commandComplete(swallow: true, prepares: 0)])
        XCTAssertTrue(second.contains(0))
        // Deallocated by name, then the same name with another text: a new statement.
        (text, exp) = rewriteQuery(&rw, "DEALLOCATE a1", &second, reg)
        XCTAssertEqual(text, "PREPARE \"pgmux_deallocate\" AS SELECT; DEALLOCATE \"pgmux_deallocate\"")
        XCTAssertEqual(exp, [.commandComplete(swallow: true)])
        XCTAssertNil(rw.clientStatements["a1"])
        (text, _) = rewriteQuery(&rw, "PREPARE a1 AS SELECT 'other'", &second, reg)
        XCTAssertEqual(text, "PREPARE \"PGMUX_1\" AS SELECT 'other'")
        // The first text again, on a server that has it: dropped and prepared again.
        (text, exp) = rewriteQuery(&rw, "PREPARE b2 (int) AS SELECT $1 + 1", &first, reg)
        XCTAssertEqual(text, "DEALLOCATE \"PGMUX_0\"; PREPARE \"PGMUX_0\" (int) AS SELECT $1 + 1")
        XCTAssertEqual(exp, [.commandComplete(swallow: true), .commandComplete(swallow: false, prepares: 0, clientName: "b2")])
    }

    func testUnknownNamesFailedTransactionsAndDuplicates() throws {
        let reg = PreparedStatementRegistry()
        var cache = ServerStatementCache(capacity: 10)
        var rw = PreparedStatementRewriter()
        XCTAssertNil(rewriteQuery(&rw, "EXECUTE nope", &cache, reg).0)
        XCTAssertNil(rewriteQuery(&rw, "DEALLOCATE nope", &cache, reg).0)
        XCTAssertNil(rewriteQuery(&rw, "DEALLOCATE ALL", &cache, reg).0)
        XCTAssertNil(rewriteQuery(&rw, "SELECT 1", &cache, reg).0)
        XCTAssertNil(rewriteQuery(&rw, "PREPARE a AS SELECT 1", &cache, reg, failed: true).0)
        XCTAssertNil(rw.clientStatements["a"])
        XCTAssertNotNil(rewriteQuery(&rw, "PREPARE a AS SELECT 1", &cache, reg).0)
        // A name in use: PostgreSQL's error, raised by the server so that a transaction fails too.
        let (refusal, exp) = rewriteQuery(&rw, "PREPARE a AS SELECT 2", &cache, reg)
        XCTAssertEqual(refusal, "DO $pgmux$ BEGIN RAISE EXCEPTION USING ERRCODE = 'duplicate_prepared_statement', "
                       + "MESSAGE = 'prepared statement \"a\" already exists'; END $pgmux$")
        XCTAssertEqual(exp, [])
        XCTAssertEqual(rw.clientStatements["a"], 0)
        _ = rewriteQuery(&rw, "PREPARE \"it's\" AS SELECT 2", &cache, reg)
        XCTAssertTrue(try XCTUnwrap(rewriteQuery(&rw, "PREPARE \"it's\" AS SELECT 3", &cache, reg).0).contains("\"it''s\""))
        XCTAssertNil(rewriteQuery(&rw, "DEALLOCATE a", &cache, reg, failed: true).0)
        XCTAssertNotNil(rw.clientStatements["a"], "a refused DEALLOCATE keeps the statement")
    }

    func testProtocolStatementsDeallocatedAndExecutedBySQL() throws {
        let reg = PreparedStatementRegistry()
        var first = ServerStatementCache(capacity: 10), second = ServerStatementCache(capacity: 10)
        var rw = PreparedStatementRewriter()
        let parse = Array("pdo_stmt_1\0SELECT $1\0".utf8) + [0, 0]
        _ = parse.withUnsafeBytes { rw.rewrite(type: UInt8(ascii: "P"), body: $0, server: &first, registry: reg) }
        XCTAssertEqual(rw.clientStatements["pdo_stmt_1"], 0)
        // Untyped parameters: the definition can be written as SQL for a server that lacks it.
        XCTAssertEqual(rewriteQuery(&rw, "EXECUTE pdo_stmt_1 ('x')", &second, reg).0,
                       "PREPARE \"PGMUX_0\" AS SELECT $1; EXECUTE \"PGMUX_0\" ('x')")
        XCTAssertNotNil(rewriteQuery(&rw, "DEALLOCATE pdo_stmt_1", &first, reg).0)
        XCTAssertNil(rw.clientStatements["pdo_stmt_1"])
        XCTAssertTrue(first.contains(0), "the server keeps its copy for other clients")
        // Typed parameters cannot be written as PREPARE: passed through.
        let typed = Array("t\0SELECT $1\0".utf8) + [0, 1, 0, 0, 0, 23]
        _ = typed.withUnsafeBytes { rw.rewrite(type: UInt8(ascii: "P"), body: $0, server: &first, registry: reg) }
        var third = ServerStatementCache(capacity: 10)
        XCTAssertNil(rewriteQuery(&rw, "EXECUTE t (1)", &third, reg).0)
    }

    func testEvictionDropsTheOldestBySQL() {
        let reg = PreparedStatementRegistry()
        var cache = ServerStatementCache(capacity: 1)
        var rw = PreparedStatementRewriter()
        _ = rewriteQuery(&rw, "PREPARE a AS SELECT 1", &cache, reg)
        let (text, exp) = rewriteQuery(&rw, "PREPARE b AS SELECT 2", &cache, reg)
        XCTAssertEqual(text, "DEALLOCATE \"PGMUX_0\"; PREPARE \"PGMUX_1\" AS SELECT 2")
        XCTAssertEqual(exp, [.commandComplete(swallow: true, deallocates: 0),
                             .commandComplete(swallow: false, prepares: 1, clientName: "b")])
        XCTAssertEqual(cache.count, 1)
    }

    func testExpectationsOfARewrittenQuery() {
        var e = ResponseExpectations()
        e.append(contentsOf: [.commandComplete(swallow: true, deallocates: 0),
                              .commandComplete(swallow: false, prepares: 1, clientName: "b"), .sync])
        XCTAssertTrue(e.swallowsNextCommandComplete)
        e.commandComplete()
        XCTAssertFalse(e.swallowsNextCommandComplete)
        // The client's PREPARE fails: its statement never existed.
        let skipped = e.error()
        XCTAssertEqual(skipped.lost.map { $0.id }, [1])
        XCTAssertEqual(skipped.lost.map { $0.clientName }, ["b"])
        XCTAssertFalse(skipped.cacheOutOfSync)
        e.readyForQuery()
        XCTAssertTrue(e.isEmpty)
        // A drop that never ran leaves the server holding what its cache forgot.
        e.append(contentsOf: [.commandComplete(swallow: true, deallocates: 0), .sync])
        XCTAssertTrue(e.error().cacheOutOfSync)
        // A CommandComplete of the client's own statement settles nothing.
        e.readyForQuery()
        e.append(contentsOf: [.parse(id: 2, swallow: false), .sync])
        e.commandComplete()
        XCTAssertEqual(Array(e.pending), [.parse(id: 2, swallow: false), .sync])
    }

    func testDeallocateAnsweredWithoutServer() throws {
        var rw = PreparedStatementRewriter()
        rw.clientStatements = ["pdo_stmt_1": 0, "b": 1]
        func answer(_ sql: String, extra: [UInt8] = []) -> (Int, String)? {
            let body = Array(sql.utf8) + [0]
            let msg = [UInt8(ascii: "Q")] + [0, 0, 0, UInt8(body.count + 4)] + body + extra
            return msg.withUnsafeBytes { rw.answerDeallocateWithoutServer($0, maxPacketSize: 1 << 20) }
                .map { ($0.consumed, String(decoding: $0.reply, as: UTF8.self)) }
        }
        let r = try XCTUnwrap(answer("DEALLOCATE pdo_stmt_1", extra: [UInt8(ascii: "S"), 0, 0, 0, 4]))
        XCTAssertEqual(r.0, 5 + 22)
        XCTAssertEqual(r.1, "C\0\0\0\u{0F}DEALLOCATE\0Z\0\0\0\u{05}I")
        XCTAssertEqual(rw.clientStatements, ["b": 1])
        XCTAssertNil(answer("DEALLOCATE pdo_stmt_1"), "unknown now: the server answers")
        XCTAssertNil(answer("SELECT 1"))
        XCTAssertEqual(try XCTUnwrap(answer("DEALLOCATE ALL")).1, "C\0\0\0\u{13}DEALLOCATE ALL\0Z\0\0\0\u{05}I")
        XCTAssertTrue(rw.clientStatements.isEmpty)
        let partial: [UInt8] = [UInt8(ascii: "Q"), 0, 0, 0, 40] + Array("DEALLOCATE".utf8)
        XCTAssertNil(partial.withUnsafeBytes { rw.answerDeallocateWithoutServer($0, maxPacketSize: 1 << 20) })
    }

    func testUnnamedParseOfDeallocateAndExecute() throws {
        let reg = PreparedStatementRegistry()
        var first = ServerStatementCache(capacity: 10), second = ServerStatementCache(capacity: 10)
        var rw = PreparedStatementRewriter()
        func parse(_ name: String, _ sql: String, _ cache: inout ServerStatementCache) -> PreparedStatementRewriter.Rewrite? {
            let body = Array(name.utf8) + [0] + Array(sql.utf8) + [0, 0, 0]
            return body.withUnsafeBytes { try? rw.rewrite(type: UInt8(ascii: "P"), body: $0, server: &cache, registry: reg).get() }
        }
        func texts(_ bytes: [UInt8]) -> [String] {
            var out: [String] = [], i = 0
            while i + 5 <= bytes.count {
                let len = Int(bytes[i + 1]) << 24 | Int(bytes[i + 2]) << 16 | Int(bytes[i + 3]) << 8 | Int(bytes[i + 4])
                out.append(String(UnicodeScalar(bytes[i])) + String(decoding: bytes[(i + 5)..<(i + 1 + len)], as: UTF8.self))
                i += 1 + len
            }
            return out
        }
        _ = parse("_pg3_0", "SELECT $1", &first)
        // psycopg's eviction in pipeline mode: the placeholder is closed, prepared, deallocated.
        let d = try XCTUnwrap(parse("", "DEALLOCATE _pg3_0", &first))
        XCTAssertEqual(texts(try XCTUnwrap(d.replacement)),
                       ["CSpgmux_deallocate_parse\0", "Ppgmux_deallocate_parse\0SELECT\0\0\0",
                        "P\0DEALLOCATE \"pgmux_deallocate_parse\"\0\0\0"])
        XCTAssertEqual(d.expectations, [.close(swallow: true), .parse(id: nil, swallow: true), .parse(id: nil, swallow: false)])
        XCTAssertNil(rw.clientStatements["_pg3_0"])
        XCTAssertNil(try XCTUnwrap(parse("", "DEALLOCATE _pg3_0", &first)).replacement, "unknown now")
        // EXECUTE of a protocol statement on a server that lacks it: an injected Parse first.
        _ = parse("s", "SELECT 1", &first)
        let e = try XCTUnwrap(parse("", " execute s", &second))
        XCTAssertEqual(texts(try XCTUnwrap(e.replacement)), ["PPGMUX_1\0SELECT 1\0\0\0", "P\0EXECUTE \"PGMUX_1\"\0\0\0"])
        XCTAssertEqual(e.expectations, [.parse(id: 1, swallow: true), .parse(id: nil, swallow: false)])
        // Anything else, unnamed, passes untouched.
        for sql in ["SELECT 1", "DELETE FROM t", "EXECUTE unknown", "explain execute s"] {
            XCTAssertNil(try XCTUnwrap(parse("", sql, &first)).replacement, sql)
        }
    }
}
