import XCTest
@testable import PgmuxCore

private func trackerAfter(sent: String, ready: String) -> TransactionTracker {
    var t = TransactionTracker()
    for c in sent { t.sent(UInt8(ascii: c.unicodeScalars.first!)) }
    for c in ready { t.readyForQuery(UInt8(ascii: c.unicodeScalars.first!)) }
    return t
}

final class ReleasePolicyTests: XCTestCase {
    private let idle = trackerAfter(sent: "Q", ready: "I")
    private let inTx = trackerAfter(sent: "Q", ready: "T")
    private let failedTx = trackerAfter(sent: "Q", ready: "E")
    private let pipelined = trackerAfter(sent: "QQ", ready: "I")         // one Z still owed
    private let unsynced = trackerAfter(sent: "SPB", ready: "I")         // Parse/Bind after the Sync

    func testSessionModeAlwaysKeeps() {
        for t in [idle, inTx, failedTx, pipelined, unsynced] {
            XCTAssertEqual(ReleasePolicy.atReadyForQuery(mode: .session, tracker: t), .keep)
        }
    }

    func testTransactionModeReleasesOnlyWhenIdle() {
        XCTAssertEqual(ReleasePolicy.atReadyForQuery(mode: .transaction, tracker: idle), .release)
        XCTAssertEqual(ReleasePolicy.atReadyForQuery(mode: .transaction, tracker: inTx), .keep)
        XCTAssertEqual(ReleasePolicy.atReadyForQuery(mode: .transaction, tracker: failedTx), .keep)
        XCTAssertEqual(ReleasePolicy.atReadyForQuery(mode: .transaction, tracker: pipelined), .keep)
        XCTAssertEqual(ReleasePolicy.atReadyForQuery(mode: .transaction, tracker: unsynced), .keep)
    }

    func testStatementModeRefusesTransactions() {
        XCTAssertEqual(ReleasePolicy.atReadyForQuery(mode: .statement, tracker: idle), .release)
        XCTAssertEqual(ReleasePolicy.atReadyForQuery(mode: .statement, tracker: inTx), .refuseTransaction)
        XCTAssertEqual(ReleasePolicy.atReadyForQuery(mode: .statement, tracker: failedTx), .refuseTransaction)
        XCTAssertEqual(ReleasePolicy.atReadyForQuery(mode: .statement, tracker: pipelined), .keep)
        XCTAssertEqual(ReleasePolicy.atReadyForQuery(mode: .statement, tracker: unsynced), .keep)
    }

    private func gone(_ mode: PoolMode, _ t: TransactionTracker, unsent: Bool = false,
                      reset: String = "DISCARD ALL", always: Bool = false) -> ReleasePolicy.OnClientGone {
        ReleasePolicy.onClientGone(mode: mode, tracker: t, unsentBytes: unsent, resetQuery: reset, resetAlways: always)
    }

    func testReplicationServerIsClosedEvenWhenClean() {
        let closed = ReleasePolicy.OnClientGone.close(reason: "replication client disconnected")
        XCTAssertEqual(ReleasePolicy.onClientGone(mode: .session, tracker: idle, unsentBytes: false,
                                                  resetQuery: "DISCARD ALL", resetAlways: false, replication: true), closed)
        XCTAssertEqual(ReleasePolicy.onClientGone(mode: .session, tracker: inTx, unsentBytes: true,
                                                  resetQuery: "", resetAlways: false, replication: true), closed)
        XCTAssertEqual(gone(.session, idle), .reuse(resetQuery: "DISCARD ALL"), "a normal server is reset and reused")
    }

    func testClientGoneWithPendingRequestCloses() {
        let inProgress = ReleasePolicy.OnClientGone.close(reason: "client disconnected with query in progress")
        let pending = trackerAfter(sent: "Q", ready: "")
        for mode in [PoolMode.session, .transaction, .statement] {
            XCTAssertEqual(gone(mode, pending), inProgress)
            XCTAssertEqual(gone(mode, unsynced), inProgress)
            XCTAssertEqual(gone(mode, pipelined), inProgress)
            XCTAssertEqual(gone(mode, idle, unsent: true), inProgress)
            // In-progress wins over an open transaction.
            XCTAssertEqual(gone(mode, trackerAfter(sent: "QQ", ready: "T")), inProgress)
        }
    }

    func testClientGoneInOpenTransactionCloses() {
        let notReady = ReleasePolicy.OnClientGone.close(reason: "client disconnect while server was not ready")
        for mode in [PoolMode.session, .transaction, .statement] {
            XCTAssertEqual(gone(mode, inTx), notReady)
            XCTAssertEqual(gone(mode, failedTx), notReady)
        }
    }

    func testCleanSessionReusesWithResetQuery() {
        XCTAssertEqual(gone(.session, idle), .reuse(resetQuery: "DISCARD ALL"))
        XCTAssertEqual(gone(.session, TransactionTracker()), .reuse(resetQuery: "DISCARD ALL"))
        XCTAssertEqual(gone(.session, idle, always: true), .reuse(resetQuery: "DISCARD ALL"))
    }

    func testCleanTransactionReusesWithoutResetUnlessAlways() {
        XCTAssertEqual(gone(.transaction, idle), .reuse(resetQuery: nil))
        XCTAssertEqual(gone(.statement, idle), .reuse(resetQuery: nil))
        XCTAssertEqual(gone(.transaction, idle, always: true), .reuse(resetQuery: "DISCARD ALL"))
        XCTAssertEqual(gone(.statement, idle, always: true), .reuse(resetQuery: "DISCARD ALL"))
    }

    func testEmptyResetQueryIsNil() {
        XCTAssertEqual(gone(.session, idle, reset: ""), .reuse(resetQuery: nil))
        XCTAssertEqual(gone(.transaction, idle, reset: "", always: true), .reuse(resetQuery: nil))
    }
}
