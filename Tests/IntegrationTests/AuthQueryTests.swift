import Foundation
import XCTest

/// auth_user + auth_query: users missing from auth_file are looked up in PostgreSQL, and a SCRAM
/// user logs in to PostgreSQL through pgmux without pgmux ever knowing the password.
final class AuthQueryTests: XCTestCase {
    override func setUpWithError() throws {
        _ = try? PostgresCluster.shared.psql("CREATE ROLE aq_user LOGIN PASSWORD 'aq_pw'")
        _ = try? PostgresCluster.shared.psql("GRANT ALL ON DATABASE \(PostgresCluster.database) TO aq_user")
    }

    func testScramUserAbsentFromAuthFileLogsInThroughAuthQuery() throws {
        let pgmux = try PgmuxProcess(settings: ["auth_user": PostgresCluster.scramUser.0, "auth_type": "scram-sha-256"])
        let c = try PQConnection(pgmux.conninfo(user: "aq_user", password: "aq_pw"))
        XCTAssertEqual(try c.scalar("SELECT current_user"), "aq_user")
        // A second client of the same user: cached answer, pooled server.
        XCTAssertEqual(try PQConnection(pgmux.conninfo(user: "aq_user", password: "aq_pw")).scalar("SELECT 1"), "1")
        XCTAssertThrowsError(try PQConnection(pgmux.conninfo(user: "aq_user", password: "wrong"))) { error in
            XCTAssertTrue("\(error)".contains("authentication failed"), "\(error)")
        }
        XCTAssertThrowsError(try PQConnection(pgmux.conninfo(user: "no_such_role", password: "x"))) { error in
            XCTAssertTrue("\(error)".contains("authentication failed"), "\(error)")
        }
    }

    func testAuthQueryFailureRefusesLoginWithoutHanging() throws {
        let pgmux = try PgmuxProcess(settings: ["auth_user": PostgresCluster.scramUser.0,
                                                "auth_query": "SELECT usename, passwd FROM no_such_table WHERE usename = $1"])
        let started = Date()
        XCTAssertThrowsError(try PQConnection(pgmux.conninfo(user: "aq_user", password: "aq_pw")))
        XCTAssertLessThan(Date().timeIntervalSince(started), 5)
        XCTAssertTrue(pgmux.log.contains("S: error in auth_query: ERROR: relation \"no_such_table\" does not exist"), pgmux.log)
    }
}
