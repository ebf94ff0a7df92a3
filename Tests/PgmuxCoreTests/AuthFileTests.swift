import XCTest
@testable import PgmuxCore

final class AuthFileTests: XCTestCase {
    func testParsesUsersCommentsAndEscapes() throws {
        let scram = "SCRAM-SHA-256$4096:c2FsdHNhbHQ=$c3RvcmVka2V5:c2VydmVya2V5"
        let text = [
            "; comment line",
            "\"alice\" \"plainpw\"",
            "",
            "  \"bob\"   \"md5\(String(repeating: "a", count: 32))\" trailing junk ignored",
            "\"say \"\"hi\"\"\" \"pa\"\"ss\"",
            "\"carol\" \"\(scram)\"",
            "\"dave\" \"\"",
        ].joined(separator: "\n")
        let users = try AuthFile.parse(text: text, file: "userlist.txt")
        XCTAssertEqual(users.count, 5)
        XCTAssertEqual(users["alice"], "plainpw")
        XCTAssertEqual(users["say \"hi\""], "pa\"ss")
        XCTAssertEqual(users["carol"], scram)
        XCTAssertEqual(users["dave"], "")
        XCTAssertEqual(SecretKind(secret: users["bob"]!), .md5)
        XCTAssertEqual(SecretKind(secret: scram), .scramSHA256)
        XCTAssertEqual(SecretKind(secret: "plainpw"), .plain)
        XCTAssertEqual(SecretKind(secret: "md5short"), .plain)
    }

    func testMalformedLines() {
        for (text, line) in [("\"alice\" \"pw\"\nalice pw\n", 2), ("\"alice\" pw\n", 1), ("\"alice\" \"pw\n", 1), ("\"alice\n", 1), ("\"alice\"\n", 1)] {
            let err = configError { () throws(ConfigError) in try AuthFile.parse(text: text, file: "u.txt") }
            XCTAssertEqual(err?.file, "u.txt", text)
            XCTAssertEqual(err?.line, line, text)
            XCTAssertTrue(err?.message.contains("broken auth file") ?? false, text)
        }
    }

    func testLengthLimits() throws {
        let name127 = String(repeating: "n", count: 127)
        let pw2047 = String(repeating: "p", count: 2047)
        XCTAssertEqual(try AuthFile.parse(text: "\"\(name127)\" \"\(pw2047)\"", file: "u")[name127], pw2047)
        let longName = configError { () throws(ConfigError) in
            try AuthFile.parse(text: "\"\(name127)x\" \"pw\"", file: "u")
        }
        XCTAssertTrue(longName?.message.contains("too long") ?? false)
        let longPw = configError { () throws(ConfigError) in
            try AuthFile.parse(text: "\"a\" \"\(pw2047)x\"", file: "u")
        }
        XCTAssertEqual(longPw?.key, "a")
        XCTAssertTrue(longPw?.message.contains("2047") ?? false)
    }

    func testLoadFromDiskAndMissingFile() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("pgmux-userlist-\(getpid()).txt").path
        try "\"u\" \"s\"\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        XCTAssertEqual(try AuthFile.load(path: path), ["u": "s"])
        let err = configError { () throws(ConfigError) in try AuthFile.load(path: "/nonexistent/userlist.txt") }
        XCTAssertEqual(err?.file, "/nonexistent/userlist.txt")
    }
}
