import XCTest
@testable import PgmuxCore

final class IniParserTests: XCTestCase {
    func testSectionsCommentsAndValues() throws {
        let text = """
        ; comment
          # indented comment
        [PgBouncer]
        listen_port   =  6433  
        empty =
        auth_query = SELECT a ; not a comment

        [databases]
        "my db" = host=x
        'other' = host=y
        w*ld.card-x = dbname=z
        """
        let entries = try IniParser.parse(text: text, file: "a.ini", include: noIncludes)
        let keys = entries.filter { !$0.isSectionHeader }
        XCTAssertEqual(keys.map(\.key), ["listen_port", "empty", "auth_query", "my db", "other", "w*ld.card-x"])
        XCTAssertEqual(keys[0], IniEntry(file: "a.ini", line: 4, section: "pgbouncer", key: "listen_port", value: "6433"))
        XCTAssertEqual(keys[1].value, "")
        XCTAssertEqual(keys[2].value, "SELECT a ; not a comment")
        XCTAssertEqual(keys[3].section, "databases")
        XCTAssertEqual(keys[3].line, 9)
        XCTAssertEqual(entries.filter(\.isSectionHeader).map(\.line), [3, 8])
    }

    func testCRLFLines() throws {
        let entries = try IniParser.parse(text: "[pgbouncer]\r\nlisten_port = 1\r\n", file: "f", include: noIncludes)
        XCTAssertEqual(entries.last?.value, "1")
        XCTAssertEqual(entries.last?.line, 2)
    }

    func testSyntaxErrorsAreLocated() {
        let e1 = configError { () throws(ConfigError) in try IniParser.parse(text: "[pgbouncer\n", file: "f.ini", include: noIncludes) }
        XCTAssertEqual(e1?.line, 1)
        XCTAssertEqual(e1?.file, "f.ini")
        let e2 = configError { () throws(ConfigError) in try IniParser.parse(text: "[pgbouncer]\nfoo bar\n", file: "f.ini", include: noIncludes) }
        XCTAssertEqual(e2?.line, 2)
        XCTAssertEqual(e2?.key, "foo")
        let e3 = configError { () throws(ConfigError) in try IniParser.parse(text: "[x]\n!bad = 1\n", file: "f.ini", include: noIncludes) }
        XCTAssertEqual(e3?.line, 2)
        let e4 = configError { () throws(ConfigError) in try IniParser.parse(text: "key = 1\n", file: "f.ini", include: noIncludes) }
        XCTAssertEqual(e4?.description, "f.ini:1: key: key outside of any [section]")
        let e5 = configError { () throws(ConfigError) in try IniParser.parse(text: "[x]\n'open = 1\n", file: "f.ini", include: noIncludes) }
        XCTAssertEqual(e5?.line, 2)
    }

    func testIncludeKeepsSectionAndLocations() throws {
        let files = ["inc.ini": "pool_mode = transaction\n[databases]\nd = host=h\n"]
        let text = "[pgbouncer]\nlisten_port = 1\n%include inc.ini\ne = host=i\n"
        let entries = try IniParser.parse(text: text, file: "main.ini") { (p: String) throws(ConfigError) -> String in
            guard let t = files[p] else { throw ConfigError(file: p, line: 0, message: "missing") }
            return t
        }
        let keys = entries.filter { !$0.isSectionHeader }
        XCTAssertEqual(keys.map(\.key), ["listen_port", "pool_mode", "d", "e"])
        XCTAssertEqual(keys[1].file, "inc.ini")
        XCTAssertEqual(keys[1].section, "pgbouncer")
        XCTAssertEqual(keys[1].line, 1)
        XCTAssertEqual(keys[3].section, "databases", "a section opened in an include stays in effect")
        XCTAssertEqual(keys[3].file, "main.ini")
        XCTAssertEqual(keys[3].line, 4)
    }

    func testIncludeNestingLimit() {
        let err = configError { () throws(ConfigError) in
            try IniParser.parse(text: "[x]\n%include self.ini\n", file: "self.ini") { (_: String) throws(ConfigError) -> String in
                "[x]\n%include self.ini\n"
            }
        }
        XCTAssertEqual(err?.key, "%include")
        XCTAssertEqual(err?.line, 2)
        XCTAssertTrue(err?.message.contains("limit 10") ?? false, err?.message ?? "")
    }

    func testIncludeDepthTenIsAllowed() throws {
        // main -> f1 -> ... -> f10: ten levels of nesting are fine.
        let entries = try IniParser.parse(text: "[x]\n%include f1\n", file: "main") { (p: String) throws(ConfigError) -> String in
            let n = Int(p.dropFirst())!
            return n < 10 ? "%include f\(n + 1)\n" : "k = deep\n"
        }
        XCTAssertEqual(entries.last?.value, "deep")
        XCTAssertEqual(entries.last?.file, "f10")
    }

    func testFilesAndIncludeRelativeToIncludingFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pgmux-ini-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try "[pgbouncer]\n%include extra.ini\n".write(to: dir.appendingPathComponent("main.ini"), atomically: true, encoding: .utf8)
        try "listen_port = 7000\n".write(to: dir.appendingPathComponent("extra.ini"), atomically: true, encoding: .utf8)
        let mainPath = dir.appendingPathComponent("main.ini").path
        let entries = try IniParser.parse(path: mainPath)
        XCTAssertEqual(entries.last?.key, "listen_port")
        XCTAssertEqual(entries.last?.file, dir.appendingPathComponent("extra.ini").path)
        XCTAssertEqual(try Config.load(path: mainPath).settings.listenPort, 7000)

        try "[pgbouncer]\n%include nowhere.ini\n".write(to: dir.appendingPathComponent("bad.ini"), atomically: true, encoding: .utf8)
        let err = configError { () throws(ConfigError) in try IniParser.parse(path: dir.appendingPathComponent("bad.ini").path) }
        XCTAssertEqual(err?.line, 2)
        XCTAssertTrue(err?.message.contains("nowhere.ini") ?? false)
    }

    func testMissingFileNamesPath() {
        let err = configError { () throws(ConfigError) in try IniParser.parse(path: "/nonexistent/pgmux.ini") }
        XCTAssertEqual(err?.file, "/nonexistent/pgmux.ini")
        XCTAssertTrue(err?.description.contains("/nonexistent/pgmux.ini") ?? false)
        XCTAssertTrue(err?.message.contains("No such file") ?? false, err?.message ?? "")
    }
}
