import XCTest
@testable import PgmuxCore

final class AdminParserTests: XCTestCase {
    private func ok(_ q: String, file: StaticString = #filePath, line: UInt = #line) -> AdminCommand? {
        switch AdminParser.parse(q) {
        case .success(let c): return c
        case .failure(let e): XCTFail("\(q): \(e.message)", file: file, line: line); return nil
        }
    }
    private func err(_ q: String, file: StaticString = #filePath, line: UInt = #line) -> AdminError? {
        switch AdminParser.parse(q) {
        case .success(let c): XCTFail("\(q) parsed as \(c)", file: file, line: line); return nil
        case .failure(let e): return e
        }
    }
    private func invalid(_ q: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(err(q, file: file, line: line), AdminError("invalid command '\(q)', use SHOW HELP;"), file: file, line: line)
    }

    func testSpecExamples() {
        XCTAssertEqual(ok("SHOW POOLS"), .show(.pools))
        XCTAssertEqual(ok("PAUSE mydb"), .pause("mydb"))
        XCTAssertEqual(ok("SHUTDOWN WAIT_FOR_CLIENTS"), .shutdown(.waitForClients))
        XCTAssertEqual(ok("shutdown wait_for_servers"), .shutdown(.waitForServers))
        XCTAssertEqual(ok("SHUTDOWN"), .shutdown(.immediate))
        XCTAssertEqual(ok("RELOAD"), .reload)
        XCTAssertEqual(ok("SUSPEND;"), .suspend)
        XCTAssertEqual(ok("PAUSE"), .pause(nil))
        XCTAssertEqual(ok("RESUME"), .resume(nil))
        XCTAssertEqual(ok("RESUME db1"), .resume("db1"))
        XCTAssertEqual(ok("KILL"), .kill(nil))
        XCTAssertEqual(ok("KILL db1"), .kill("db1"))
        XCTAssertEqual(ok("RECONNECT"), .reconnect(nil))
        XCTAssertEqual(ok("RECONNECT db1"), .reconnect("db1"))
        XCTAssertEqual(ok("WAIT_CLOSE"), .waitClose(nil))
        XCTAssertEqual(ok("WAIT_CLOSE db1"), .waitClose("db1"))
        XCTAssertEqual(ok("DISABLE db1"), .disable("db1"))
        XCTAssertEqual(ok("ENABLE db1"), .enable("db1"))
        XCTAssertEqual(ok("DISABLE"), .disable(nil))
        XCTAssertEqual(ok("KILL_CLIENT 42"), .killClient(42))
        XCTAssertEqual(ok("SET default_pool_size = 30"), .set(key: "default_pool_size", value: "30"))
    }

    func testEveryShowItemAndSelectAlias() {
        for item in AdminShowItem.allCases {
            XCTAssertEqual(ok("SHOW \(item.rawValue.uppercased())"), .show(item))
            XCTAssertEqual(ok("show \(item.rawValue)"), .show(item))
            XCTAssertEqual(ok("SELECT \(item.rawValue)"), .show(item))
        }
        XCTAssertEqual(ok("SeLeCt Stats_Totals ;"), .show(.statsTotals))
        invalid("SHOW")
        invalid("SELECT")
        invalid("SHOW nothing")
        invalid("SELECT 1 + 1")
    }

    func testCaseWhitespaceAndSemicolon() {
        XCTAssertEqual(ok("  \t\nshow\r\n\tpools  ;  \n"), .show(.pools))
        XCTAssertEqual(ok("show pools;"), .show(.pools))
        invalid("show pools;;")
        invalid("show ; pools")
        invalid("; show pools")
        invalid("show pools clients")
        invalid("")
        invalid("   ")
        invalid("show-pools")
        invalid("show pools x;")
    }

    func testQuotedWords() {
        XCTAssertEqual(ok("\"show\" \"pools\""), .show(.pools))
        XCTAssertEqual(ok("PAUSE \"My DB\""), .pause("My DB"))
        XCTAssertEqual(ok("PAUSE \"a\"\"b\""), .pause("a\"b"))
        XCTAssertEqual(ok("PAUSE \"\"\"\""), .pause("\""))
        XCTAssertEqual(ok("kill \"db;x\";"), .kill("db;x"))
        // A quoted empty argument is no argument, as in PgBouncer (arg[0] == 0).
        XCTAssertEqual(ok("PAUSE \"\""), .pause(nil))
        XCTAssertEqual(ok("RELOAD \"\""), .reload)
        XCTAssertEqual(ok("DISABLE \"\""), .disable(nil))
        // Non-ASCII only inside quotes.
        XCTAssertEqual(ok("PAUSE \"bäse\""), .pause("bäse"))
        invalid("PAUSE bäse")
        invalid("PAUSE \"unterminated")
        invalid("PAUSE \"a\"b")
        invalid("\"show\"pools")
        invalid("PAUSE 'db'")
    }

    func testCommandsWithoutArgumentsRejectOne() {
        invalid("RELOAD now")
        invalid("SUSPEND x")
        invalid("SHUTDOWN NOW")
        invalid("reload \"x\"")
    }

    func testUnknownCommandEchoesWholeQuery() {
        XCTAssertEqual(err("FOO")?.message, "invalid command 'FOO', use SHOW HELP;")
        XCTAssertEqual(err("  frobnicate  db ;")?.message, "invalid command '  frobnicate  db ;', use SHOW HELP;")
        XCTAssertEqual(err("SHOW POOLS; SHOW CLIENTS")?.message, "invalid command 'SHOW POOLS; SHOW CLIENTS', use SHOW HELP;")
        XCTAssertEqual(err("FOO")?.sqlstate, "08P01")
        invalid("set x")
        invalid("\"set\" x = 1")
        invalid("SET x = ")
        invalid("SET x 1")
        invalid("SET = 1")
    }

    func testLengthLimits() {
        // Command: at most 15 bytes, raw (quotes included); checked before lookup.
        invalid(String(repeating: "x", count: 15))
        XCTAssertEqual(err(String(repeating: "x", count: 16)), .badArguments)
        XCTAssertEqual(err("\"" + String(repeating: "x", count: 14) + "\""), .badArguments)
        XCTAssertEqual(err("WAIT_CLOSE_XXXXX db"), .badArguments)
        // Argument: at most 63 bytes raw.
        XCTAssertEqual(ok("PAUSE " + String(repeating: "d", count: 63)), .pause(String(repeating: "d", count: 63)))
        XCTAssertEqual(err("PAUSE " + String(repeating: "d", count: 64)), .badArguments)
        XCTAssertEqual(ok("PAUSE \"" + String(repeating: "d", count: 61) + "\""), .pause(String(repeating: "d", count: 61)))
        XCTAssertEqual(err("PAUSE \"" + String(repeating: "d", count: 62) + "\""), .badArguments)
        XCTAssertEqual(err("SHOW " + String(repeating: "p", count: 64)), .badArguments)
        // SET key ≤ 63, value ≤ 255 raw.
        let k63 = String(repeating: "k", count: 63)
        XCTAssertEqual(ok("SET \(k63) = 1"), .set(key: k63, value: "1"))
        XCTAssertEqual(err("SET \(k63)k = 1"), .badArguments)
        let v255 = String(repeating: "v", count: 255)
        XCTAssertEqual(ok("SET k = \(v255)"), .set(key: "k", value: v255))
        XCTAssertEqual(err("SET k = \(v255)v"), .badArguments)
        let v253 = String(repeating: "v", count: 253)
        XCTAssertEqual(ok("SET k = '\(v253)'"), .set(key: "k", value: v253))
        XCTAssertEqual(err("SET k = '\(v253)v'"), .badArguments)
        XCTAssertEqual(err("SET \"\" = 1"), .badArguments)
        XCTAssertEqual(AdminError.badArguments.message, "bad arguments")
    }

    func testSetForms() {
        XCTAssertEqual(ok("set max_client_conn=200"), .set(key: "max_client_conn", value: "200"))
        XCTAssertEqual(ok("SET max_client_conn TO 200;"), .set(key: "max_client_conn", value: "200"))
        XCTAssertEqual(ok("  SET\tserver_reset_query = 'DISCARD ALL'  ; "),
                       .set(key: "server_reset_query", value: "DISCARD ALL"))
        XCTAssertEqual(ok("SET x = 'it''s'"), .set(key: "x", value: "it's"))
        XCTAssertEqual(ok("SET x = ''"), .set(key: "x", value: ""))
        XCTAssertEqual(ok("SET x = \"a\"\"b\""), .set(key: "x", value: "a\"b"))
        XCTAssertEqual(ok("SET \"Mixed Key\" = 1"), .set(key: "Mixed Key", value: "1"))
        XCTAssertEqual(ok("SET Admin_Users = 'a, b'"), .set(key: "Admin_Users", value: "a, b"))
        XCTAssertEqual(ok("SET x to to"), .set(key: "x", value: "to"))
        // POSIX leftmost-longest: "to" can glue to an unquoted key or value.
        XCTAssertEqual(ok("set xto 1"), .set(key: "x", value: "1"))
        XCTAssertEqual(ok("set footo bar"), .set(key: "foo", value: "bar"))
        XCTAssertEqual(ok("set x tobar"), .set(key: "x", value: "bar"))
        XCTAssertEqual(ok("set atob to c"), .set(key: "atob", value: "c"))
        XCTAssertEqual(ok("SET x = a;"), .set(key: "x", value: "a"))
        XCTAssertEqual(AdminCommand.set(key: "Max_Client_Conn", value: "5").tag, "SET Max_Client_Conn=5")
    }

    func testFakeParameters() {
        XCTAssertEqual(ok("SHOW client_encoding"), .fakeShow(.clientEncoding))
        XCTAssertEqual(ok("show DateStyle"), .fakeShow(.dateStyle))
        XCTAssertEqual(ok("SELECT timezone"), .fakeShow(.timeZone))
        XCTAssertEqual(ok("SHOW \"standard_conforming_strings\""), .fakeShow(.standardConformingStrings))
        XCTAssertEqual(ok("SHOW default_transaction_isolation"), .fakeShow(.defaultTransactionIsolation))
        XCTAssertEqual(ok("SET client_encoding = 'UTF8'"), .fakeSet(.clientEncoding))
        XCTAssertEqual(ok("set TimeZone to 'UTC'"), .fakeSet(.timeZone))
        XCTAssertEqual(ok("SET datestyle = iso"), .fakeSet(.dateStyle))
        XCTAssertEqual(AdminFakeParameter.allCases.map(\.value), ["UTF-8", "read committed", "on", "ISO", "GMT"])
    }

    func testKillClientIdLikeSscanf() {
        XCTAssertEqual(ok("KILL_CLIENT 0"), .killClient(0))
        XCTAssertEqual(ok("kill_client 12abc"), .killClient(12))
        XCTAssertEqual(ok("KILL_CLIENT abc"), .killClient(nil))
        XCTAssertEqual(ok("KILL_CLIENT"), .killClient(nil))
        XCTAssertEqual(ok("KILL_CLIENT \" 7\""), .killClient(7))
        XCTAssertEqual(ok("KILL_CLIENT \"-1\""), .killClient(UInt64.max))
        XCTAssertEqual(ok("KILL_CLIENT 99999999999999999999999"), .killClient(UInt64.max))
    }

    func testTagsAndLogLines() {
        XCTAssertEqual(AdminCommand.show(.pools).tag, "SHOW")
        XCTAssertEqual(AdminCommand.fakeShow(.timeZone).tag, "SHOW")
        XCTAssertEqual(AdminCommand.fakeSet(.timeZone).tag, "SET")
        XCTAssertEqual(AdminCommand.killClient(1).tag, "KILL_CLIENT")
        XCTAssertEqual(AdminCommand.waitClose(nil).tag, "WAIT_CLOSE")
        XCTAssertEqual(AdminCommand.shutdown(.waitForClients).tag, "SHUTDOWN")
        XCTAssertEqual(AdminCommand.pause(nil).logMessage, "PAUSE command issued")
        XCTAssertEqual(AdminCommand.kill("db").logMessage, "KILL 'db' command issued")
        XCTAssertEqual(AdminCommand.reload.logMessage, "RELOAD command issued")
        XCTAssertEqual(AdminCommand.shutdown(.waitForServers).logMessage, "SHUTDOWN WAIT_FOR_SERVERS command issued")
        XCTAssertNil(AdminCommand.show(.pools).logMessage)
    }
}
