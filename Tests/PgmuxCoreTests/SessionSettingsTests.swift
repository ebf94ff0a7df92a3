import XCTest
@testable import PgmuxCore

/// SET/RESET that follow the client: recognition, settling by the server's replies, replay.
final class SessionSettingsTests: XCTestCase {
    private func classify(_ text: String) -> SessionCommand {
        Array(text.utf8).withUnsafeBytes { SessionCommand.classify($0) }
    }
    private func set(_ key: String, _ name: String, _ value: String) -> SessionCommand {
        .set(key: key, setting: SessionSetting(name: name, value: value))
    }

    func testRecognisedStatements() {
        XCTAssertEqual(classify("SET search_path TO app, public"), set("search_path", "search_path", "app, public"))
        XCTAssertEqual(classify("set Search_Path = \"$user\", public;"), set("search_path", "Search_Path", "\"$user\", public"))
        XCTAssertEqual(classify("SET SESSION statement_timeout = '5s'"), set("statement_timeout", "statement_timeout", "'5s'"))
        XCTAssertEqual(classify("/* app */ SET myapp.tenant_id = 42"), set("myapp.tenant_id", "myapp.tenant_id", "42"))
        XCTAssertEqual(classify("SET \"MyApp\".x TO 'y'"), set("MyApp.x", "\"MyApp\".x", "'y'"))
        XCTAssertEqual(classify("SET SCHEMA 'app'"), set("search_path", "search_path", "'app'"))
        XCTAssertEqual(classify("SET ROLE reporting"), set("role", "role", "reporting"))
        XCTAssertEqual(classify("SET role TO reporting"), set("role", "role", "reporting"))
        XCTAssertEqual(classify("SET TIME ZONE 'UTC'"), set("timezone", "timezone", "'UTC'"))
        XCTAssertEqual(classify("SET work_mem TO DEFAULT"), .reset(key: "work_mem"))
        XCTAssertEqual(classify("RESET search_path"), .reset(key: "search_path"))
        XCTAssertEqual(classify("RESET \"search_path\";"), .reset(key: "search_path"))
        XCTAssertEqual(classify("RESET ROLE"), .reset(key: "role"))
        XCTAssertEqual(classify("RESET TIME ZONE"), .reset(key: "timezone"))
        XCTAssertEqual(classify("RESET ALL"), .resetAll)
        XCTAssertEqual(classify("discard all;"), .resetAll)
    }

    func testOthersAreNotFollowed() {
        for text in ["SET LOCAL search_path TO x", "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
                     "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", "SET SESSION AUTHORIZATION bob",
                     "SET CONSTRAINTS ALL DEFERRED", "SET search_path TO x; DROP TABLE t", "SET search_path FROM CURRENT",
                     "SET work_mem", "SET work_mem TO", "SELECT set_config('a.b', 'c', false)", "RESET SESSION AUTHORIZATION",
                     "DISCARD PLANS", "RESET a b", "SHOW search_path"] {
            XCTAssertEqual(classify(text), .other, text)
        }
    }

    private func tag(_ p: inout PendingSessionCommands, _ t: String) {
        Array(t.utf8).withUnsafeBytes { p.commandComplete($0) }
    }

    func testSettledOnSuccessOutsideTransactionsAndAtCommit() {
        var p = PendingSessionCommands()
        // Outside a transaction block: holds once it succeeded.
        p.sent(set("a", "a", "1"), inTransaction: false)
        tag(&p, "SET")
        XCTAssertEqual(p.readyForQuery(UInt8(ascii: "I")), [set("a", "a", "1")])
        XCTAssertTrue(p.isEmpty)
        // An error (no CommandComplete): forgotten.
        p.sent(set("a", "a", "bad"), inTransaction: false)
        XCTAssertEqual(p.readyForQuery(UInt8(ascii: "I")), [])
        // Inside a transaction: waits for COMMIT...
        p.sent(set("b", "b", "2"), inTransaction: true)
        tag(&p, "SET")
        XCTAssertEqual(p.readyForQuery(UInt8(ascii: "T")), [])
        p.sent(.reset(key: "c"), inTransaction: true)
        tag(&p, "RESET")
        XCTAssertEqual(p.readyForQuery(UInt8(ascii: "T")), [])
        tag(&p, "COMMIT")
        XCTAssertEqual(p.readyForQuery(UInt8(ascii: "I")), [set("b", "b", "2"), .reset(key: "c")])
        // ...and a rollback, or a COMMIT of a failed transaction (tag ROLLBACK), drops it.
        p.sent(set("d", "d", "3"), inTransaction: true)
        tag(&p, "SET")
        XCTAssertEqual(p.readyForQuery(UInt8(ascii: "E")), [])
        tag(&p, "ROLLBACK")
        XCTAssertEqual(p.readyForQuery(UInt8(ascii: "I")), [])
        XCTAssertTrue(p.isEmpty)
    }

    func testSyncStatements() {
        var client = SessionSettings(), server = SessionSettings()
        set("search_path", "search_path", "app").apply(to: &client)
        set("work_mem", "work_mem", "'64MB'").apply(to: &server)
        set("search_path", "search_path", "other").apply(to: &server)
        XCTAssertEqual(SessionCommand.sync(from: server, to: client), "SET search_path TO app;RESET work_mem;")
        XCTAssertEqual(SessionCommand.sync(from: client, to: client), "")
        SessionCommand.resetAll.apply(to: &client)
        XCTAssertTrue(client.isEmpty)
    }
}

/// The cheap scan that marks statements after which the server is asked for pinning state.
final class SessionPinsTests: XCTestCase {
    private func mayPin(_ text: String) -> Bool { Array(text.utf8).withUnsafeBytes(SessionPins.mayPin) }

    func testCandidates() {
        for text in ["SELECT pg_advisory_lock(1)", "select PG_TRY_ADVISORY_LOCK_SHARED($1)", "CREATE TEMP TABLE t (x int)",
                     "create temporary table t as select 1", "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
                     "SELECT temperature FROM weather"] {  // a false positive only costs a check
            XCTAssertTrue(mayPin(text), text)
        }
        for text in ["SELECT pg_advisory_xact_lock(1)", "SELECT pg_advisory_unlock(1)", "SELECT 1", "INSERT INTO t VALUES (1)",
                     "", "advisory_loc"] {
            XCTAssertFalse(mayPin(text), text)
        }
    }
}

/// Session pooling resets only servers whose client may have changed their state.
final class DirtySessionTests: XCTestCase {
    private func mayChange(_ text: String) -> Bool { Array(text.utf8).withUnsafeBytes(DirtySession.mayChange) }

    func testScan() {
        for text in ["SET work_mem = '8MB'", "select set_config('a.b', 'c', false)", "RESET ALL", "PREPARE p AS SELECT 1",
                     "LISTEN ch", "CREATE TEMP TABLE t (x int)", "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
                     "SELECT pg_advisory_lock(1)", "LOAD 'auto_explain'", "SELECT nextval('s')",
                     "UPDATE t SET x = 1"] {  // a false positive only costs a reset
            XCTAssertTrue(mayChange(text), text)
        }
        for text in ["SELECT 1", "SELECT abalance FROM pgbench_accounts WHERE aid = $1", "INSERT INTO t VALUES (1)",
                     "BEGIN", "COMMIT", "DELETE FROM t WHERE x = 2", "NOTIFY ch, 'x'"] {
            XCTAssertFalse(mayChange(text), text)
        }
    }

    func testResetOnlyWhenDirtyUnlessAlways() {
        let idle = TransactionTracker()
        XCTAssertEqual(ReleasePolicy.onClientGone(mode: .session, tracker: idle, unsentBytes: false, resetQuery: "DISCARD ALL",
                                                  resetAlways: false, dirty: false), .reuse(resetQuery: nil))
        XCTAssertEqual(ReleasePolicy.onClientGone(mode: .session, tracker: idle, unsentBytes: false, resetQuery: "DISCARD ALL",
                                                  resetAlways: false, dirty: true), .reuse(resetQuery: "DISCARD ALL"))
        XCTAssertEqual(ReleasePolicy.onClientGone(mode: .session, tracker: idle, unsentBytes: false, resetQuery: "DISCARD ALL",
                                                  resetAlways: true, dirty: false), .reuse(resetQuery: "DISCARD ALL"))
    }
}
