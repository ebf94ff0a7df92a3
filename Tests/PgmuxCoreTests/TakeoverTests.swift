import XCTest
@testable import PgmuxCore

final class TakeoverTests: XCTestCase {
    private let client = TakeoverClient(
        id: 0x1234_5678_9abc, isUnix: false, user: "alice", database: "app", cancelKey: 0x7fff_0000_0000_0001,
        params: ["application_name": "pgbench", "timezone": "UTC"],
        settings: ["search_path": SessionSetting(name: "search_path", value: "app, public"),
                   "work_mem": SessionSetting(name: "Work_Mem", value: "'7MB'")],
        statements: [TakeoverStatement(name: "s1", definition: .parse(Array("SELECT $1\0\0\u{1}\0\0\0\u{17}".utf8))),
                     TakeoverStatement(name: "ß", definition: .sql(" AS SELECT 1"))])

    private var all: [TakeoverMessage] {
        [.hello(version: TakeoverMessage.version),
         .registry(first: 12, [.parse(Array("SELECT 1\0\0\0".utf8)), .sql(" AS SELECT 2"), .parse([])]),
         .registry(first: 0, []),
         .listeners([TakeoverListener(kind: .pooler, description: "127.0.0.1:6432", unixPath: nil),
                     TakeoverListener(kind: .pooler, description: "unix:/tmp/.s.PGSQL.6432", unixPath: "/tmp/.s.PGSQL.6432"),
                     TakeoverListener(kind: .metrics, description: "metrics", unixPath: nil)]),
         .listeners([]),
         .ready,
         .client(client),
         .client(TakeoverClient(id: 1, isUnix: true, user: "", database: "", cancelKey: 0, params: [:], statements: [])),
         .client(TakeoverClient(id: 2, isUnix: false, user: "bob", database: "app", cancelKey: 9, params: [:], pinned: true,
                                statements: [],
                                server: TakeoverServer(database: "app", user: "bob", hostName: "db", hostPort: 5433,
                                                       backendKey: 77, parameters: [], reportedOrder: [],
                                                       settings: ["role": SessionSetting(name: "role", value: "r")],
                                                       dirty: true,
                                                       statements: [.init(id: 1, definition: .sql(" AS SELECT 1"))]))),
         .server(TakeoverServer(database: "app", user: "alice", hostName: "/var/run/postgresql", hostPort: 5432,
                                backendKey: 0xdead_beef_0000_0042,
                                parameters: [.init(key: "timezone", name: "TimeZone", value: "UTC"),
                                             .init(key: "server_version", name: "server_version", value: "15.4")],
                                reportedOrder: ["server_version", "timezone"],
                                settings: ["role": SessionSetting(name: "ROLE", value: "reader")],
                                statements: [.init(id: 3, definition: .parse(Array("SELECT 1\0\0\0".utf8))),
                                             .init(id: 0, definition: .sql(" AS SELECT 2"))])),
         .server(TakeoverServer(database: "", user: "", hostName: "", hostPort: 0, backendKey: 0, parameters: [],
                                reportedOrder: [], statements: [])),
         .ack(id: .max),
         .cancel(key: 0x1234),
         .refused(reason: "takeover already in progress")]
    }

    func testEveryMessageRoundTrips() throws {
        for m in all { XCTAssertEqual(try TakeoverMessage.decode(m.encode()), m) }
    }

    func testDescriptorCounts() {
        XCTAssertEqual(all.map(\.descriptorCount), [0, 0, 0, 3, 0, 0, 1, 1, 2, 1, 1, 0, 0, 0])
    }

    /// Every truncation and every extra byte is refused, never misread.
    func testTruncatedOrLongRecordsAreMalformed() {
        for m in all {
            let bytes = m.encode()
            for n in 0..<bytes.count {
                XCTAssertThrowsError(try TakeoverMessage.decode(Array(bytes[..<n])), "\(m) cut at \(n)")
            }
            XCTAssertThrowsError(try TakeoverMessage.decode(bytes + [0]), "\(m) with a trailing byte")
        }
    }

    func testForgedCountsAndKindsAreMalformed() {
        // A count of 2^32-1 listeners in a 5-byte record: refused before any allocation.
        XCTAssertThrowsError(try TakeoverMessage.decode([UInt8(ascii: "L"), 0xff, 0xff, 0xff, 0xff]))
        XCTAssertThrowsError(try TakeoverMessage.decode([UInt8(ascii: "L"), 0, 0, 0, 1, 9, 0, 0, 0, 0, 0]))
        XCTAssertThrowsError(try TakeoverMessage.decode([UInt8(ascii: "Z")]))
        XCTAssertThrowsError(try TakeoverMessage.decode([UInt8(ascii: "X"), 0, 0, 0, 1, 0xff]))  // not UTF-8
        var bytes = TakeoverMessage.listeners([TakeoverListener(kind: .pooler, description: "", unixPath: "x")]).encode()
        bytes[10] = 2  // presence byte
        XCTAssertThrowsError(try TakeoverMessage.decode(bytes))
    }

    func testHandOverRule() {
        typealias F = HandOverRule.Facts
        XCTAssertEqual(HandOverRule.verdict(F(idle: true)), .now)
        XCTAssertEqual(HandOverRule.verdict(F(tls: true, idle: true)), .stays)
        XCTAssertEqual(HandOverRule.verdict(F(adminConsole: true, idle: true)), .stays)
        XCTAssertEqual(HandOverRule.verdict(F(replication: true, idle: true)), .stays)
        XCTAssertEqual(HandOverRule.verdict(F(idle: true, listens: true)), .stays)
        XCTAssertEqual(HandOverRule.verdict(F(tls: true, linked: true)), .stays)
        XCTAssertEqual(HandOverRule.verdict(F()), .later)  // logging in, waiting, in a transaction
        XCTAssertEqual(HandOverRule.verdict(F(idle: true, linked: true)), .later)  // session pooling
        XCTAssertEqual(HandOverRule.verdict(F(idle: true, bufferedBytes: true)), .later)
        XCTAssertEqual(HandOverRule.verdict(F(idle: true, partialMessage: true)), .later)
    }

    /// Session pooling: the client moves with its server when both are between transactions.
    func testSessionPairHandOverRule() {
        typealias F = HandOverRule.Facts
        typealias S = HandOverRule.ServerFacts
        XCTAssertEqual(HandOverRule.verdict(F(sessionServer: S(idle: true))), .now)
        XCTAssertEqual(HandOverRule.verdict(F(sessionServer: S(idle: true, openedDuringRestart: true))), .now)
        XCTAssertEqual(HandOverRule.verdict(F(sessionServer: S())), .later)  // in a transaction
        XCTAssertEqual(HandOverRule.verdict(F(sessionServer: S(idle: true), bufferedBytes: true)), .later)
        XCTAssertEqual(HandOverRule.verdict(F(sessionServer: S(tls: true, idle: true))), .stays)
        XCTAssertEqual(HandOverRule.verdict(F(sessionServer: S(idle: true, closing: true))), .stays)
        XCTAssertEqual(HandOverRule.verdict(F(tls: true, sessionServer: S(idle: true))), .stays)
    }

    func testServerHandOverRule() {
        typealias F = HandOverRule.ServerFacts
        XCTAssertEqual(HandOverRule.verdict(F(idle: true)), .now)
        XCTAssertEqual(HandOverRule.verdict(F()), .later)  // lent, running the pooler's own query, being canceled
        XCTAssertEqual(HandOverRule.verdict(F(tls: true, idle: true)), .stays)
        XCTAssertEqual(HandOverRule.verdict(F(replication: true, idle: true)), .stays)
        XCTAssertEqual(HandOverRule.verdict(F(idle: true, closing: true)), .stays)
        XCTAssertEqual(HandOverRule.verdict(F(idle: true, openedDuringRestart: true)), .stays)
    }

    func testServerStatementsInLeastRecentlyUsedOrder() {
        var cache = ServerStatementCache(capacity: 10)
        for id in [4, 7, 1] { _ = cache.insert(id) }
        cache.touch(4)
        XCTAssertEqual(cache.idsByLastUse, [7, 1, 4])
    }

    func testProgressExitRuleAndStateRows() {
        var p = TakeoverProgress()
        XCTAssertEqual(p.stateRows, [])
        XCTAssertFalse(p.oldProcessMayExit(remainingClients: 0, inFlight: 0))
        p.phase = .offered
        XCTAssertFalse(p.oldProcessMayExit(remainingClients: 0, inFlight: 0))
        p.phase = .handingOver
        XCTAssertFalse(p.oldProcessMayExit(remainingClients: 1, inFlight: 0))
        XCTAssertFalse(p.oldProcessMayExit(remainingClients: 0, inFlight: 1))
        XCTAssertTrue(p.oldProcessMayExit(remainingClients: 0, inFlight: 0))
        p.clients = 7
        p.servers = 2
        XCTAssertEqual(p.stateRows, [["restart", "handing over"], ["restart_clients", "7"], ["restart_servers", "2"]])
    }

    /// A statement registered in one process gets an id in another from its definition alone.
    func testRegistryDefinitionsMoveBetweenProcesses() {
        let old = PreparedStatementRegistry(), new = PreparedStatementRegistry()
        _ = old.id(for: Array("SELECT 0\0\0\0".utf8))
        let parse = old.id(for: Array("SELECT 1\0\0\0".utf8)), sql = old.id(forSQL: " AS SELECT 2")
        XCTAssertNil(old.definition(99))
        let moved = [parse, sql].map { new.id(for: old.definition($0)!) }
        XCTAssertEqual(moved, [0, 1])
        XCTAssertEqual(new.parseMessage(moved[0]), PreparedStatementRegistry.message(UInt8(ascii: "P"), Array("PGMUX_0\0SELECT 1\0\0\0".utf8)))
        XCTAssertEqual(new.sqlPrepare(moved[1]), "PREPARE \"PGMUX_1\" AS SELECT 2")
    }
}
