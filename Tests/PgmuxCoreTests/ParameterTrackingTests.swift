import XCTest
@testable import PgmuxCore

final class ParameterTrackingTests: XCTestCase {
    private func opts(_ s: String) -> [String]? {
        ParameterTracking.parseOptions(s)?.map { "\($0.0)=\($0.1)" }
    }

    func testDashCSeparate() {
        XCTAssertEqual(opts("-c a=b"), ["a=b"])
        XCTAssertEqual(opts("-c search_path=public -c statement_timeout=5s"), ["search_path=public", "statement_timeout=5s"])
    }

    func testDashCJoined() {
        XCTAssertEqual(opts("-ca=b"), ["a=b"])
        XCTAssertEqual(opts("-cdatestyle=ISO,MDY  -c\ttimezone=UTC"), ["datestyle=ISO,MDY", "timezone=UTC"])
    }

    func testDoubleDashConvertsDashesToUnderscores() {
        XCTAssertEqual(opts("--a-b=c"), ["a_b=c"])
        XCTAssertEqual(opts("--client-encoding=UTF-8"), ["client_encoding=UTF-8"])
        XCTAssertEqual(opts("-c application-name=x-y"), ["application_name=x-y"])
    }

    func testEscapedSpaceInValue() {
        XCTAssertEqual(opts(#"-c search_path=a\ b"#), ["search_path=a b"])
        XCTAssertEqual(opts(#"-c application_name=back\\slash"#), [#"application_name=back\slash"#])
    }

    func testValueMayContainEquals() {
        XCTAssertEqual(opts("-c a=b=c"), ["a=b=c"])
        XCTAssertEqual(opts("-c a="), ["a="])
    }

    func testEmptyOptions() {
        XCTAssertEqual(opts(""), [])
        XCTAssertEqual(opts("   "), [])
    }

    func testGarbageIsNil() {
        XCTAssertNil(opts("garbage"))
        XCTAssertNil(opts("-c a=b garbage"))
        XCTAssertNil(opts("-x a=b"))
        XCTAssertNil(opts("-c noequals"))
        XCTAssertNil(opts("-c =value"))
        XCTAssertNil(opts("--=x"))
        XCTAssertNil(opts("--"))
    }

    func testMissingValueAfterDashCIsNil() {
        XCTAssertNil(opts("-c"))
        XCTAssertNil(opts("-c a=b -c"))
        XCTAssertNil(opts("-c   "))
    }

    func testTrackedSet() {
        let s = ParameterTracking.trackedSet(extra: ["IntervalStyle", "search_path"])
        XCTAssertEqual(s, ["client_encoding", "datestyle", "timezone", "standard_conforming_strings",
                           "application_name", "intervalstyle", "search_path"])
        XCTAssertEqual(ParameterTracking.trackedSet(extra: []), ParameterTracking.always)
    }
}

/// Issue 13, items 5 and 13: the pure rules behind client caps and `options`.
final class ParityRulesTests: XCTestCase {
    func testOptionsTrackedSettingsApplyEvenWhenOptionsIsIgnored() {
        let tracked: (String) -> Bool = { ParameterTracking.always.contains($0) }
        XCTAssertEqual(ParameterTracking.evaluateOptions("-c TimeZone=UTC -c geqo=off", isTracked: tracked, ignored: ["options"]),
                       .accepted(["timezone": "UTC"]))
        XCTAssertEqual(ParameterTracking.evaluateOptions("-c geqo=off", isTracked: tracked, ignored: ["geqo"]), .accepted([:]))
        XCTAssertEqual(ParameterTracking.evaluateOptions("-c geqo=off", isTracked: tracked, ignored: []),
                       .unsupported(name: "geqo", value: "off"))
        XCTAssertEqual(ParameterTracking.evaluateOptions("-X", isTracked: tracked, ignored: ["options"]), .malformed)
    }

    func testClientLimitFallbacksAndAdminExemption() {
        XCTAssertEqual(ClientLimits.effective(nil, global: 5), 5)
        XCTAssertEqual(ClientLimits.effective(0, global: 5), 5)
        XCTAssertEqual(ClientLimits.effective(3, global: 5), 3)
        XCTAssertTrue(ClientLimits.databaseAllows(count: 2, limit: 2, consoleAdmin: false))
        XCTAssertFalse(ClientLimits.databaseAllows(count: 3, limit: 2, consoleAdmin: false))
        XCTAssertTrue(ClientLimits.databaseAllows(count: 3, limit: 2, consoleAdmin: true))
        XCTAssertTrue(ClientLimits.databaseAllows(count: 1000, limit: 0, consoleAdmin: false))
        XCTAssertFalse(ClientLimits.userAllows(count: 2, limit: 1, consoleAdmin: false))
        XCTAssertTrue(ClientLimits.userAllows(count: 2, limit: 1, consoleAdmin: true))
    }

    func testAuthDbnameNamingTheConsoleIsAConfigurationError() {
        var s = Settings()
        XCTAssertThrowsError(try s.apply(key: "auth_dbname", value: "pgbouncer", file: "f", line: 3)) { error in
            XCTAssertEqual("\(error)", "f:3: auth_dbname: cannot use the reserved \"pgbouncer\" database as an auth_dbname")
        }
        XCTAssertNoThrow(try s.apply(key: "auth_dbname", value: "postgres", file: "f", line: 4))
        XCTAssertEqual(s.authDbname, "postgres")
    }
}
