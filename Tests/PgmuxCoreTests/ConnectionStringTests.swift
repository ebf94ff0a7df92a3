import XCTest
@testable import PgmuxCore

final class ConnectionStringTests: XCTestCase {
    private func parse(_ s: String) throws(ConfigError) -> [String] {
        try ConnectionString.parse(s, file: "c.ini", line: 3).map { "\($0.key)=\($0.value)" }
    }

    func testPlainQuotedAndEscaped() throws {
        XCTAssertEqual(try parse("host=localhost port=5433 dbname=app"), ["host=localhost", "port=5433", "dbname=app"])
        XCTAssertEqual(try parse("application_name='my app'  password='it''s'"), ["application_name=my app", "password=it's"])
        XCTAssertEqual(try parse("x=''''"), ["x='"])
        XCTAssertEqual(try parse("connect_query='SELECT 1; SET x = ''y'''"), ["connect_query=SELECT 1; SET x = 'y'"])
        XCTAssertEqual(try parse("  host = h   PORT =1 "), ["host=h", "port=1"])
        XCTAssertEqual(try parse("password=''"), ["password="])
        XCTAssertEqual(try parse(""), [])
    }

    func testErrorsNameTheKey() {
        let unterminated = configError { () throws(ConfigError) in try parse("host=h password='abc") }
        XCTAssertEqual(unterminated?.key, "password")
        XCTAssertEqual(unterminated?.line, 3)
        XCTAssertEqual(unterminated?.file, "c.ini")
        let noEquals = configError { () throws(ConfigError) in try parse("host") }
        XCTAssertEqual(noEquals?.key, "host")
        let junk = configError { () throws(ConfigError) in try parse("password='a'b") }
        XCTAssertEqual(junk?.key, "password")
        XCTAssertNotNil(configError { () throws(ConfigError) in try parse("bad-key=1") })
    }
}
