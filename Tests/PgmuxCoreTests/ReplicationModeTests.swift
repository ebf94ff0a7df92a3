import XCTest
@testable import PgmuxCore

final class ReplicationModeTests: XCTestCase {
    func testValuesAsPostgreSQLReadsThem() {
        XCTAssertEqual(ReplicationMode.parse("database"), .logical)
        for v in ["true", "TRUE", "t", "tr", "yes", "y", "on", "On", "1"] {
            XCTAssertEqual(ReplicationMode.parse(v), .physical, v)
        }
        for v in ["false", "f", "no", "n", "off", "of", "0"] {
            XCTAssertEqual(ReplicationMode.parse(v), ReplicationMode.none, v)
        }
        // "Database" is not the keyword (PostgreSQL compares it exactly); "o" is ambiguous.
        for v in ["", "o", "Database", "2", "truee", "physical", " true"] {
            XCTAssertNil(ReplicationMode.parse(v), v)
        }
        XCTAssertEqual(ReplicationMode.invalidValueMessage("x"), "invalid value for parameter \"replication\": \"x\"")
    }

    func testNamesInLogsAndAdminColumns() {
        XCTAssertEqual(ReplicationMode.allCases.map(\.startupValue), ["no", "database", "yes"])
        XCTAssertEqual(ReplicationMode.allCases.map(\.adminValue.rawValue), ["none", "logical", "physical"])
    }

    func testServerStartupCarriesReplicationClientParametersAndOptions() {
        let base = [("database", "db"), ("user", "u"), ("application_name", "pool-app"), ("DateStyle", "German")]
        let p = ReplicationMode.logical.serverStartup(base: base, clientParameters: ["application_name": "sub1"],
                                                      options: "-c extra_float_digits=3")
        XCTAssertEqual(p.map { "\($0.0)=\($0.1)" }, ["database=db", "user=u", "DateStyle=German", "replication=database",
                                                     "application_name=sub1", "options=-c extra_float_digits=3"])
        let physical = ReplicationMode.physical.serverStartup(base: base, clientParameters: [:], options: nil)
        XCTAssertEqual(physical.last.map { "\($0.0)=\($0.1)" }, "replication=yes")
        XCTAssertEqual(physical.count, base.count + 1)
        XCTAssertEqual(ReplicationMode.none.serverStartup(base: base, clientParameters: ["a": "b"], options: "x").count,
                       base.count, "a normal pool's startup is untouched")
    }
}
