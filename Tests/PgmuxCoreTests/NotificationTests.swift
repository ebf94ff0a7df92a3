import XCTest
@testable import PgmuxCore

/// LISTEN/NOTIFY in transaction pooling: recognition, the listener's subscriptions, the inbox.
final class NotificationTests: XCTestCase {
    private func classify(_ text: String) -> ListenStatement? {
        Array(text.utf8).withUnsafeBytes { ListenStatement.classify($0) }
    }

    func testRecognisedStatements() {
        XCTAssertEqual(classify("LISTEN jobs"), .listen("jobs"))
        XCTAssertEqual(classify("  listen Jobs;;  "), .listen("jobs"))
        XCTAssertEqual(classify("/* a /* nested */ */ LISTEN \"Mixed\"\"Case\" -- end\n"), .listen("Mixed\"Case"))
        XCTAssertEqual(classify("UNLISTEN \"x y\";"), .unlisten("x y"))
        XCTAssertEqual(classify("unlisten *"), .unlistenAll)
        XCTAssertEqual(classify("LISTEN \"all\""), .listen("all"))
        XCTAssertEqual(classify("LISTEN alls"), .listen("alls"))
        XCTAssertEqual(classify("UNLISTEN/**/*;"), .unlistenAll)
        XCTAssertEqual(classify("LISTEN " + String(repeating: "a", count: 70)), .listen(String(repeating: "a", count: 63)))
        // Truncated at a character boundary, as PostgreSQL does.
        XCTAssertEqual(classify("LISTEN \"" + String(repeating: "a", count: 62) + "éz\""), .listen(String(repeating: "a", count: 62)))
    }

    func testAnythingElsePassesThrough() {
        for text in ["SELECT 1", "LISTEN a; LISTEN b", "LISTEN a; SELECT 1", "LISTEN", "LISTEN *", "UNLISTEN a, b",
                     "LISTEN \"\"", "LISTEN \"open", "LISTEN a /* open", "NOTIFY a", "EXPLAIN LISTEN a", "LISTEN 'a'", "LISTEN all", "UNLISTEN select", ""] {
            XCTAssertNil(classify(text), text)
        }
    }

    func testCheapPrefilter() {
        func might(_ t: String) -> Bool { Array(t.utf8).withUnsafeBytes { ListenStatement.mightBe($0) } }
        for t in ["LISTEN a", " \n unlisten *", "Listen\"x\"", "-- c\nSELECT 1", "/* c */", "", "  ", "LIS", "unlisten"] {
            XCTAssertTrue(might(t), t)
        }
        for t in ["SELECT 1", "UPDATE t SET a = 1", "listener", "LISTEN_x", "unlisten2", "BEGIN", "L1"] {
            XCTAssertFalse(might(t), t)
        }
    }

    private func message(_ type: Character, _ body: [UInt8]) -> [UInt8] {
        var m = MessageBuilder()
        m.raw(UInt8(ascii: type.unicodeScalars.first!), body)
        return m.bytes
    }

    private func parse(_ sql: String, name: String = "", types: Int = 0) -> [UInt8] {
        message("P", Array(name.utf8) + [0] + Array(sql.utf8) + [0, 0, UInt8(types)] + Array(repeating: 0, count: 4 * types))
    }
    private var bind: [UInt8] { message("B", [0, 0, 0, 0, 0, 0, 0, 1, 0, 1]) }  // no parameters, binary results
    private var describePortal: [UInt8] { message("D", [UInt8(ascii: "P"), 0]) }
    private var execute: [UInt8] { message("E", [0, 0, 0, 0, 0]) }
    private var sync: [UInt8] { message("S", []) }

    private func extended(_ bytes: [UInt8]) -> ListenStatement.ExtendedMatch {
        bytes.withUnsafeBytes { ListenStatement.extended($0) }
    }

    func testExtendedProtocolBatch() {
        let batch = parse("LISTEN jobs") + bind + describePortal + execute + sync
        var reply = MessageBuilder()
        reply.raw(UInt8(ascii: "1"), []); reply.raw(UInt8(ascii: "2"), []); reply.raw(UInt8(ascii: "n"), [])
        reply.commandComplete("LISTEN"); reply.readyForQuery(UInt8(ascii: "I"))
        XCTAssertEqual(extended(batch + parse("SELECT 1")), .batch(.listen("jobs"), consumed: batch.count, reply: reply.bytes))
        let noDescribe = parse("unlisten *") + bind + execute + sync
        guard case .batch(.unlistenAll, noDescribe.count, let r) = extended(noDescribe) else { return XCTFail() }
        XCTAssertEqual(r.filter { $0 == UInt8(ascii: "n") }.count, 0)
        // Not read whole yet: waited for; a Parse cut in its text too.
        XCTAssertEqual(extended(Array(batch.dropLast(3))), .incomplete)
        XCTAssertEqual(extended(Array(batch.prefix(12))), .incomplete)
        XCTAssertEqual(extended(parse("LISTEN jobs") + bind), .incomplete)
    }

    func testOtherExtendedBatchesGoToServers() {
        for bytes in [parse("SELECT 1") + bind + execute + sync,
                      parse("LISTEN a", name: "s1") + bind + execute + sync,  // a named statement
                      parse("LISTEN a", types: 1) + bind + execute + sync,
                      parse("LISTEN a") + sync,  // prepared only
                      parse("LISTEN a") + bind + execute + message("H", []),  // Flush: nothing more may come
                      parse("LISTEN a") + bind + execute + parse("SELECT 1") + sync,
                      parse("LISTEN a; SELECT 1") + bind + execute + sync,
                      parse("LISTEN a") + message("B", [0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0x31, 0, 0]) + execute + sync,  // a parameter
                      Array(parse("SELECT 1").prefix(9))] {
            XCTAssertEqual(extended(bytes), .no)
        }
    }

    /// Every prefix and every single-byte change of a valid batch: an answer, never a trap, and
    /// a batch only when the bytes still make one.
    func testExtendedBatchMutations() {
        let parts = [parse("LISTEN \"q\" -- c"), bind, describePortal, execute, sync]
        let batch = parts.flatMap { $0 }
        var framing = Set<Int>(), at = 0
        for p in parts { framing.formUnion(at..<(at + 5)); at += p.count }
        for n in 0..<batch.count { XCTAssertNotEqual(extended(Array(batch.prefix(n))), .batch(.listen("q"), consumed: batch.count, reply: [])) }
        for i in batch.indices {
            for v: UInt8 in [0, 1, 0x22, 0x2d, 0x50, 0x53, 0x7f, 0xff] where batch[i] != v {
                var m = batch
                m[i] = v
                if case .batch(_, let consumed, let reply) = extended(m) {
                    // Still a batch: the change was in the name, the comment, a format code or
                    // the row limit, never in the framing.
                    XCTAssertEqual(consumed, m.count)
                    XCTAssertEqual(reply.last, UInt8(ascii: "I"))
                    XCTAssertFalse(framing.contains(i), "\(i)")
                }
                _ = m.withUnsafeBytes { ListenStatement.classify($0) }
            }
        }
    }

    func testQuotedNameRoundTrips() {
        XCTAssertEqual(ListenStatement.quoted("a\"b"), "\"a\"\"b\"")
        let s = NotificationSubscriptions<Int>.Command(kind: .unlisten, channel: "Q", waiters: [])
        XCTAssertEqual(s.sql, "UNLISTEN \"Q\"")
    }

    func testChannelListenedOnceAndAnsweredWhenRun() {
        var s = NotificationSubscriptions<Int>()
        XCTAssertEqual(s.listen(1, "a"), .waitForListener)
        XCTAssertEqual(s.listen(2, "a"), .waitForListener)  // the same LISTEN, not run yet
        XCTAssertEqual(s.listen(3, "b"), .waitForListener)
        XCTAssertTrue(s.isWaiting(2))
        XCTAssertEqual(s.nextCommand()?.sql, "LISTEN \"a\"")
        XCTAssertNil(s.nextCommand())  // one at a time
        XCTAssertEqual(s.listen(4, "a"), .waitForListener)  // running, not yet confirmed
        XCTAssertEqual(s.commandDone(), [1, 2, 4])
        XCTAssertEqual(s.listen(5, "a"), .answerNow)
        XCTAssertEqual(s.nextCommand()?.sql, "LISTEN \"b\"")
        XCTAssertEqual(s.commandDone(), [3])
        XCTAssertNil(s.nextCommand())
        XCTAssertEqual(s.subscribers(of: "a"), [1, 2, 4, 5])
        XCTAssertFalse(s.isWaiting(2))
    }

    func testLastClientLeavingUnlistens() {
        var s = NotificationSubscriptions<Int>()
        _ = s.listen(1, "a"); _ = s.listen(2, "a"); _ = s.listen(1, "b")
        _ = s.nextCommand(); _ = s.commandDone(); _ = s.nextCommand(); _ = s.commandDone()
        s.unlisten(1, "a")
        XCTAssertNil(s.nextCommand())  // client 2 still listens
        XCTAssertEqual(s.subscribers(of: "a"), [2])
        s.clientLeft(1)
        XCTAssertEqual(s.nextCommand()?.sql, "UNLISTEN \"b\"")
        _ = s.commandDone()
        s.unlistenAll(2)
        XCTAssertEqual(s.nextCommand()?.sql, "UNLISTEN \"a\"")
        _ = s.commandDone()
        XCTAssertTrue(s.isEmpty)
        XCTAssertNil(s.subscribers(of: "a"))
        s.unlisten(2, "a")  // not subscribed: nothing
        XCTAssertNil(s.nextCommand())
    }

    func testListenNotSentYetIsTakenBack() {
        var s = NotificationSubscriptions<Int>()
        _ = s.listen(1, "a")
        _ = s.nextCommand()
        _ = s.listen(2, "b")
        s.clientLeft(2)  // its LISTEN "b" never ran: nothing to undo
        s.clientLeft(1)  // LISTEN "a" is running: undone after it
        XCTAssertEqual(s.commandDone(), [])
        XCTAssertEqual(s.nextCommand()?.sql, "UNLISTEN \"a\"")
        _ = s.commandDone()
        XCTAssertNil(s.nextCommand())
        // Listening again after an UNLISTEN is queued: LISTEN again, after it.
        _ = s.listen(1, "c"); _ = s.nextCommand(); _ = s.commandDone()
        s.unlisten(1, "c")
        XCTAssertEqual(s.listen(1, "c"), .waitForListener)
        XCTAssertEqual(s.commands.map(\.sql), ["UNLISTEN \"c\"", "LISTEN \"c\""])
    }

    func testLostListenerResubscribesEverything() {
        var s = NotificationSubscriptions<Int>()
        _ = s.listen(1, "a"); _ = s.nextCommand(); _ = s.commandDone()
        _ = s.listen(2, "b"); _ = s.nextCommand()  // running when the listener is lost
        s.listenerLost()
        XCTAssertEqual(s.commands.map(\.sql), ["LISTEN \"a\"", "LISTEN \"b\""])
        XCTAssertEqual(s.nextCommand()?.waiters, [])
        XCTAssertEqual(s.commandDone(), [])
        _ = s.nextCommand()
        XCTAssertEqual(s.commandDone(), [2])  // still answered, by the new listener
        XCTAssertEqual(Set(s.clients), [1, 2])
    }

    func testFailedListenerRefusesWaiters() {
        var s = NotificationSubscriptions<Int>()
        _ = s.listen(1, "a"); _ = s.nextCommand(); _ = s.commandDone()
        _ = s.listen(2, "b"); _ = s.listen(1, "b")
        s.listenerLost()
        let failed = s.failWaiters()
        XCTAssertEqual(failed.map(\.client), [2, 1])
        XCTAssertEqual(s.channels(of: 1), ["a"])
        XCTAssertEqual(s.channels(of: 2), [])
        XCTAssertEqual(s.commands.map(\.sql), ["LISTEN \"a\""])  // for the next listener
    }

    private func notification(_ payload: String) -> [UInt8] {
        var m = MessageBuilder()
        m.raw(UInt8(ascii: "A"), [0, 0, 0, 7] + Array("ch".utf8) + [0] + Array(payload.utf8) + [0])
        return m.bytes
    }

    func testInboxDeliversOrHoldsInOrder() {
        var inbox = NotificationInbox(limit: 100)
        let a = notification("a"), b = notification("b"), c = notification("c")
        XCTAssertEqual(inbox.receive(a, deliverable: true, backlog: 0), a)
        XCTAssertNil(inbox.receive(b, deliverable: false, backlog: 0))
        XCTAssertNil(inbox.receive(c, deliverable: false, backlog: 0))
        XCTAssertFalse(inbox.isEmpty)
        XCTAssertEqual(inbox.take(), b + c)
        XCTAssertTrue(inbox.isEmpty)
        XCTAssertEqual(inbox.take(), [])
    }

    func testInboxOverflowDropsAndTells() {
        let a = notification(String(repeating: "x", count: 30))  // 43 bytes
        var inbox = NotificationInbox(limit: 100)
        XCTAssertNil(inbox.receive(a, deliverable: false, backlog: 0))
        XCTAssertNil(inbox.receive(a, deliverable: false, backlog: 0))
        XCTAssertNil(inbox.receive(a, deliverable: false, backlog: 0))  // 129 > 100: dropped
        XCTAssertNil(inbox.receive(a, deliverable: true, backlog: 80))  // the socket is backed up: dropped
        let out = inbox.take()
        XCTAssertEqual(Array(out.prefix(86)), a + a)
        XCTAssertEqual(out[86], UInt8(ascii: "N"))
        XCTAssertTrue(String(decoding: out[86...], as: UTF8.self).contains(NotificationInbox.droppedText(2)))
        XCTAssertTrue(inbox.isEmpty)
    }

    func testInboxTellsOfLostListenerFirst() {
        var inbox = NotificationInbox(limit: 1000)
        inbox.noteListenerLost()
        XCTAssertFalse(inbox.isEmpty)
        let b = notification("b")
        let out = inbox.receive(b, deliverable: true, backlog: 0) ?? []
        XCTAssertEqual(out.first, UInt8(ascii: "N"))
        XCTAssertTrue(String(decoding: out, as: UTF8.self).contains(NotificationInbox.lostText))
        XCTAssertEqual(Array(out.suffix(b.count)), b)
        XCTAssertTrue(inbox.isEmpty)
    }
}
