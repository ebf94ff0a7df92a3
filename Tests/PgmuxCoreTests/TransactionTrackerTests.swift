import XCTest
@testable import PgmuxCore

private func asciiByte(_ c: Character) -> UInt8 { UInt8(ascii: c.unicodeScalars.first!) }

extension TransactionTracker {
    /// Test convenience: sends each character of `types` as a frontend message type.
    fileprivate mutating func sendAll(_ types: String) { for c in types { sent(asciiByte(c)) } }
    fileprivate mutating func ready(_ c: Character) { readyForQuery(asciiByte(c)) }
}

final class TransactionTrackerTests: XCTestCase {
    func testFreshTrackerIsIdle() {
        let t = TransactionTracker()
        XCTAssertTrue(t.isIdle)
        XCTAssertTrue(t.isQuiet)
        XCTAssertEqual(t.pendingReady, 0)
        XCTAssertEqual(t.status, asciiByte("I"))
    }

    func testSimpleQueryThenReadyIdle() {
        var t = TransactionTracker()
        t.sendAll("Q")
        XCTAssertFalse(t.isIdle)
        XCTAssertEqual(t.pendingReady, 1)
        t.ready("I")
        XCTAssertTrue(t.isIdle)
        XCTAssertEqual(t.pendingReady, 0)
    }

    func testExtendedWithoutSyncNotIdleEvenAfterEarlierReady() {
        var t = TransactionTracker()
        t.sendAll("Q"); t.ready("I")
        XCTAssertTrue(t.isIdle)
        t.sendAll("PBE")
        XCTAssertTrue(t.unsynced)
        XCTAssertEqual(t.pendingReady, 0)
        XCTAssertFalse(t.isIdle)
        XCTAssertFalse(t.isQuiet)
        // A stray ReadyForQuery does not make an unsynced conversation idle.
        t.ready("I")
        XCTAssertFalse(t.isIdle)
    }

    func testExtendedWithSyncThenReadyIdle() {
        var t = TransactionTracker()
        t.sendAll("PBDES")
        XCTAssertFalse(t.unsynced)
        XCTAssertEqual(t.pendingReady, 1)
        XCTAssertFalse(t.isIdle)
        t.ready("I")
        XCTAssertTrue(t.isIdle)
    }

    func testEachExtendedTypeMarksUnsynced() {
        for c in "PBDEC" {
            var t = TransactionTracker()
            t.sent(asciiByte(c))
            XCTAssertTrue(t.unsynced, "type \(c)")
            XCTAssertEqual(t.pendingReady, 0, "type \(c)")
        }
    }

    /// Issue 12, bug 6: libpq pipelines send Flush right after Sync; Flush owes no reply.
    func testFlushAfterSyncOwesNothing() {
        var t = TransactionTracker()
        t.sendAll("PBESH")
        XCTAssertEqual(t.pendingReady, 1)
        t.ready("I")
        XCTAssertTrue(t.isIdle, "the server is released at ReadyForQuery")
        var alone = TransactionTracker()
        alone.sent(asciiByte("H"))
        XCTAssertTrue(alone.isIdle)
    }

    func testPipelinedQueriesNeedTwoReady() {
        var t = TransactionTracker()
        t.sendAll("QQ")
        XCTAssertEqual(t.pendingReady, 2)
        t.ready("I")
        XCTAssertFalse(t.isIdle)
        XCTAssertEqual(t.pendingReady, 1)
        t.ready("I")
        XCTAssertTrue(t.isIdle)
    }

    func testPipelinedSyncsAndFunctionCall() {
        var t = TransactionTracker()
        t.sendAll("PBESPBESF")
        XCTAssertEqual(t.pendingReady, 3)
        t.ready("I"); t.ready("I")
        XCTAssertFalse(t.isIdle)
        t.ready("I")
        XCTAssertTrue(t.isIdle)
    }

    func testReadyInTransactionNotIdle() {
        var t = TransactionTracker()
        t.sendAll("Q"); t.ready("T")
        XCTAssertFalse(t.isIdle)
        XCTAssertTrue(t.isQuiet)
        XCTAssertEqual(t.status, asciiByte("T"))
        t.sendAll("Q"); t.ready("E")
        XCTAssertFalse(t.isIdle)
        t.sendAll("Q"); t.ready("I")
        XCTAssertTrue(t.isIdle)
    }

    func testCopyMessagesDoNotCount() {
        var t = TransactionTracker()
        t.sendAll("Q")
        t.sendAll("dddcf")   // CopyData, CopyDone, CopyFail
        t.sendAll("Xp")      // Terminate, password: neither owes a ReadyForQuery
        XCTAssertEqual(t.pendingReady, 1)
        XCTAssertFalse(t.unsynced)
        t.ready("I")
        XCTAssertTrue(t.isIdle)
    }

    func testExtraReadyDoesNotUnderflow() {
        var t = TransactionTracker()
        t.ready("I"); t.ready("I")
        XCTAssertEqual(t.pendingReady, 0)
        XCTAssertTrue(t.isIdle)
    }

    func testSentOwnQuery() {
        var t = TransactionTracker()
        t.sendAll("PB")
        t.sentOwnQuery()
        XCTAssertEqual(t.pendingReady, 1)
        XCTAssertFalse(t.unsynced)
        XCTAssertFalse(t.isIdle)
        t.ready("I")
        XCTAssertTrue(t.isIdle)
    }

    func testReset() {
        var t = TransactionTracker()
        t.sendAll("QPB"); t.ready("T")
        t.reset()
        XCTAssertEqual(t, TransactionTracker())
    }

    func testExtendedProtocolCopyFromStdin() throws {
        // libpq in extended mode sends Parse/Bind/Describe/Execute/Sync, then (COPY FROM STDIN)
        // CopyData.../CopyDone followed by a second Sync. PostgreSQL ignores the first Sync while in
        // copy-in mode (CopyGetData: "Ignore Flush/Sync"), so only ONE ReadyForQuery comes back.
        var t = TransactionTracker()
        t.sendAll("PBDES")
        t.copyInStarted()  // the server's CopyInResponse
        t.sendAll("ddc")
        XCTAssertFalse(t.isIdle)
        t.sendAll("S")
        XCTAssertEqual(t.pendingReady, 1)
        t.ready("I")
        XCTAssertTrue(t.isIdle)
        // Simple-protocol COPY: the Query is the one request, nothing is discounted.
        var q = TransactionTracker()
        q.sendAll("Q")
        q.copyInStarted()
        q.sendAll("ddc")
        XCTAssertEqual(q.pendingReady, 1)
        q.ready("I")
        XCTAssertTrue(q.isIdle)
    }
}
