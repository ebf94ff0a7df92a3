import Foundation
import XCTest
@testable import PgmuxCore

/// auth_ident_file: parsing (PgBouncer's subset of pg_ident.conf, plus `/regex` and `\1`) and
/// the decision a cert or peer login with `map=` gets.
final class IdentMapTests: XCTestCase {
    private func parse(_ text: String) throws -> IdentFile {
        try IdentFile.parse(text: text, file: "ident.conf")
    }

    private func assertError(_ text: String, line: Int, contains fragment: String,
                             file: StaticString = #filePath, sourceLine: UInt = #line) {
        guard let err = configError({ () throws(ConfigError) in try IdentFile.parse(text: text, file: "ident.conf") },
                                    file: file, line: sourceLine) else { return }
        XCTAssertEqual(err.file, "ident.conf", file: file, line: sourceLine)
        XCTAssertEqual(err.line, line, "\(text) -> \(err)", file: file, line: sourceLine)
        XCTAssertTrue(err.message.contains(fragment), "\(err.message) lacks \(fragment)", file: file, line: sourceLine)
        XCTAssertTrue(err.description.hasPrefix("ident.conf:\(line): "), err.description, file: file, line: sourceLine)
    }

    func testLinesGroupByMapInFileOrder() throws {
        let f = try parse("""
            # MAPNAME  SYSTEM-USERNAME  DATABASE-USERNAME

            admins   alice   postgres     # trailing comment
            admins   bob     postgres
            \tapp    "john smith"   "app user"
            app      svc     all
            app      carol   "all"
            """)
        XCTAssertEqual(Set(f.maps.keys), ["admins", "app"])
        XCTAssertEqual(f["admins"]!.mappings.map(\.line), [3, 4])
        XCTAssertEqual(f["app"]!.mappings.map(\.line), [5, 6, 7])
        XCTAssertEqual(f["app"]!.mappings[1].database, .all)
        // Quoted "all" is a name, not the keyword.
        XCTAssertEqual(f["app"]!.mappings[2].database, .name("all"))
        XCTAssertNil(f["missing"])
    }

    func testLiteralMatching() throws {
        let f = try parse("""
            m alice postgres
            m alice alice
            m "john smith" "app user"
            m svc all
            """)
        let m = f["m"]!
        XCTAssertEqual(m.match(systemUser: "alice", databaseUser: "postgres")?.line, 1)
        XCTAssertEqual(m.match(systemUser: "alice", databaseUser: "alice")?.line, 2)
        XCTAssertNil(m.match(systemUser: "alice", databaseUser: "bob"))
        XCTAssertNil(m.match(systemUser: "Alice", databaseUser: "postgres"), "case-sensitive")
        XCTAssertNotNil(m.match(systemUser: "john smith", databaseUser: "app user"))
        XCTAssertNotNil(m.match(systemUser: "svc", databaseUser: "anything"))
        // Being listed as a database user does not let that OS user in under other names.
        XCTAssertNil(m.match(systemUser: "postgres", databaseUser: "alice"))
        XCTAssertNil(m.match(systemUser: "nobody", databaseUser: "nobody"), "a map replaces the same-name rule")
    }

    func testRegexAndBackreference() throws {
        let f = try parse(#"""
            m  /^(.*)@example\.com$     \1
            m  "/^adm-([a-z]+)$"        \1_admin
            m  /^ops[0-9]+$             all
            m  /^x(y)?z$                "pre\1post"
            m  /abc                     literal
            """#)
        let m = f["m"]!
        XCTAssertEqual(m.match(systemUser: "alice@example.com", databaseUser: "alice")?.line, 1)
        XCTAssertNil(m.match(systemUser: "alice@example.org", databaseUser: "alice"))
        XCTAssertNil(m.match(systemUser: "alice@example.com", databaseUser: "bob"))
        XCTAssertNil(m.match(systemUser: "alice@exampleXcom", databaseUser: "alice"), "\\. is a literal dot")
        XCTAssertEqual(m.match(systemUser: "adm-bob", databaseUser: "bob_admin")?.line, 2)
        XCTAssertNil(m.match(systemUser: "adm-bob", databaseUser: "bob"))
        XCTAssertNil(m.match(systemUser: "adm-Bob", databaseUser: "Bob_admin"))
        XCTAssertEqual(m.match(systemUser: "ops12", databaseUser: "whoever")?.line, 3)
        XCTAssertNil(m.match(systemUser: "ops", databaseUser: "whoever"))
        // A group that takes no part in the match is replaced by nothing.
        XCTAssertEqual(m.match(systemUser: "xyz", databaseUser: "preypost")?.line, 4)
        XCTAssertEqual(m.match(systemUser: "xz", databaseUser: "prepost")?.line, 4)
        // Unanchored, as regexec (and PostgreSQL): write ^...$ to match the whole name.
        XCTAssertEqual(m.match(systemUser: "zzabczz", databaseUser: "literal")?.line, 5)
        // A NUL cannot smuggle a prefix past the expression.
        XCTAssertNil(m.match(systemUser: "ops1\0evil", databaseUser: "x"))
    }

    func testSubstituteReplacesTheFirstBackreferenceOnly() {
        XCTAssertEqual(IdentMapping.substitute(#"\1-\1"#, "a"), #"a-\1"#)
        XCTAssertEqual(IdentMapping.substitute("plain", "a"), "plain")
    }

    func testErrorsNameFileAndLine() {
        assertError("m alice\n", line: 1, contains: "expected MAPNAME SYSTEM-USERNAME DATABASE-USERNAME")
        assertError("m\n", line: 1, contains: "expected MAPNAME")
        assertError("# ok\nm a b c\n", line: 2, contains: "unsupported parameters")
        assertError("m a,b c\n", line: 1, contains: "cannot be a comma list")
        assertError("m a \"b\n", line: 1, contains: "unterminated quoted string")
        assertError("m \"\" b\n", line: 1, contains: "empty system user name")
        assertError("\n\nm /a(b c\n", line: 3, contains: "invalid regular expression")
        assertError("m a \\1\n", line: 1, contains: "needs a regular expression")
        assertError("m /^abc$ \\1\n", line: 1, contains: "has no subexpressions as requested by backreference")
        assertError("m a +group\n", line: 1, contains: "group membership")
        assertError("m a /regex\n", line: 1, contains: "regular expressions")
    }

    func testEmptyAndCommentOnlyFiles() throws {
        XCTAssertTrue(try parse("").maps.isEmpty)
        XCTAssertTrue(try parse("# nothing\n\n   \r\n").maps.isEmpty)
    }

    func testLoadReportsAMissingFile() {
        let err = configError({ () throws(ConfigError) in try IdentFile.load(path: "/nonexistent/ident.conf") })
        XCTAssertEqual(err?.line, 0)
        XCTAssertTrue(err?.message.contains("could not open ident config file") ?? false, "\(String(describing: err))")
    }

    func testHBAMapsMustExistInTheIdentFile() throws {
        let hba = try HBAFile.parse(text: "local all all trust\nlocal all all peer map=ops\n", file: "hba.conf", includeFile: noIncludes)
        let ident = try parse("ops root postgres\n")
        XCTAssertNoThrow(try hba.checkIdentMaps(ident))
        let other = try parse("dev root postgres\n")
        let err = configError({ () throws(ConfigError) in try hba.checkIdentMaps(other) })
        XCTAssertEqual(err?.file, "hba.conf")
        XCTAssertEqual(err?.line, 2)
        XCTAssertTrue(err?.message.contains("Ident map ops is not found in ident config file") ?? false, "\(String(describing: err))")
        let unset = configError({ () throws(ConfigError) in try hba.checkIdentMaps(nil) })
        XCTAssertTrue(unset?.message.contains("auth_ident_file is not set") ?? false, "\(String(describing: unset))")
        // No map= anywhere: nothing to check.
        let plain = try HBAFile.parse(text: "local all all peer\n", file: "hba.conf", includeFile: noIncludes)
        XCTAssertNoThrow(try plain.checkIdentMaps(nil))
    }

    func testTheRuleCarriesItsMapName() throws {
        let hba = try HBAFile.parse(text: "hostssl all all all cert map=certs\n", file: "hba.conf", includeFile: noIncludes)
        let rule = hba.matchRule(type: .host, tls: true, database: "db", user: "u", address: [127, 0, 0, 1], replication: false)
        XCTAssertEqual(rule?.method, .cert)
        XCTAssertEqual(rule?.identMap, "certs")
    }
}
