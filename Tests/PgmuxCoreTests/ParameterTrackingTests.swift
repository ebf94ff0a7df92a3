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
