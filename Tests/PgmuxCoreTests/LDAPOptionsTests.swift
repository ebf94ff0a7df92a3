import XCTest
@testable import PgmuxCore

/// ldap hba options and auth_ldap_options: PostgreSQL's names, PgBouncer's checks and texts.
final class LDAPOptionsTests: XCTestCase {
    func parse(_ pairs: [(String, String)]) throws -> LDAPOptions {
        try LDAPOptions.parse(pairs.map { (name: $0.0, value: $0.1) })
    }

    func assertInvalid(_ pairs: [(String, String)], _ text: String, line: UInt = #line) {
        XCTAssertThrowsError(try parse(pairs), line: line) { XCTAssertEqual("\($0)", text, line: line) }
    }

    func testSimpleBind() throws {
        let o = try parse([("ldapserver", "ldap1 ldap2"), ("ldapport", "1389"), ("ldapprefix", "uid="),
                           ("ldapsuffix", ",ou=people,dc=example,dc=net")])
        XCTAssertFalse(o.searchesFirst)
        XCTAssertEqual(o.uris, "ldap://ldap1:1389 ldap://ldap2:1389")
        XCTAssertEqual(o.bindDN(for: "alice"), "uid=alice,ou=people,dc=example,dc=net")
        XCTAssertEqual(try parse([("ldapserver", "h"), ("ldapscheme", "ldaps"), ("ldapsuffix", "@corp")]).uris, "ldaps://h:636")
    }

    func testSearchBindFilters() throws {
        let o = try parse([("ldapserver", "h"), ("ldapbasedn", "dc=example,dc=net"), ("ldapbinddn", "cn=admin"),
                           ("ldapbindpasswd", "pw")])
        XCTAssertTrue(o.searchesFirst)
        XCTAssertEqual(o.uris, "ldap://h:389")
        XCTAssertEqual(o.searchFilter(for: "alice"), "(uid=alice)")
        XCTAssertEqual(o.searchAttributes, ["uid"])
        let custom = try parse([("ldapserver", "h"), ("ldapbasedn", "dc=x"), ("ldapsearchfilter", "(|(uid=$username)(mail=$username))")])
        XCTAssertEqual(custom.searchFilter(for: "bob"), "(|(uid=bob)(mail=bob))")
        XCTAssertEqual(custom.searchAttributes, ["1.1"])
        // Characters that would change the filter are refused, as PostgreSQL does.
        for name in ["a*", "a(b", "a)b", "a\\b", "a/b"] { XCTAssertNil(o.searchFilter(for: name), name) }
    }

    func testURL() throws {
        let o = try parse([("ldapurl", "ldap://ldap.example.net:1389/dc=example,dc=net?cn?one")])
        XCTAssertEqual(o.servers, ["ldap.example.net"])
        XCTAssertEqual(o.port, 1389)
        XCTAssertEqual(o.baseDN, "dc=example,dc=net")
        XCTAssertEqual(o.searchAttribute, "cn")
        XCTAssertEqual(o.scope, .one)
        let filtered = try parse([("ldapurl", "ldap://h/dc=x??base?(uid=$username)")])
        XCTAssertEqual(filtered.searchFilter(for: "u"), "(uid=u)")
        XCTAssertEqual(filtered.scope, .base)
        assertInvalid([("ldapurl", "ldap://h/dc=x?cn??(cn=$username)")], "cannot use ldapsearchattribute together with ldapsearchfilter")
        let plain = try parse([("ldapurl", "ldaps://h/ou=people%2Cdc=x")])
        XCTAssertEqual(plain.uris, "ldaps://h:636")
        XCTAssertEqual(plain.baseDN, "ou=people,dc=x")
        XCTAssertEqual(plain.scope, .subtree)
        assertInvalid([("ldapurl", "http://h/dc=x")], "unsupported LDAP URL scheme: http")
        assertInvalid([("ldapurl", "ldap://h/dc=x?uid?everything")], "could not parse LDAP URL \"ldap://h/dc=x?uid?everything\"")
    }

    func testMixesAndBadValuesAreRefused() {
        assertInvalid([("ldapserver", "h"), ("ldapprefix", "uid="), ("ldapbasedn", "dc=x")],
                      "cannot mix options for simple bind and search+bind modes")
        assertInvalid([("ldapserver", "h")],
                      "authentication method \"ldap\" requires argument \"ldapbasedn\", \"ldapprefix\", or \"ldapsuffix\" to be set")
        assertInvalid([("ldapserver", "h"), ("ldapbasedn", "dc=x"), ("ldapsearchattribute", "cn"), ("ldapsearchfilter", "(cn=$username)")],
                      "cannot use ldapsearchattribute together with ldapsearchfilter")
        assertInvalid([("ldapserver", "h"), ("ldapprefix", "x"), ("ldapport", "0")], "invalid LDAP port number: \"0\"")
        assertInvalid([("ldapserver", "h"), ("ldapprefix", "x"), ("ldapscheme", "http")], "invalid ldapscheme value: \"http\"")
        assertInvalid([("ldapserver", "h"), ("ldapprefix", "x"), ("ldapfoo", "1")], "invalid LDAP option: \"ldapfoo\"")
        assertInvalid([("ldapprefix", "x")], "LDAP server not specified (ldapserver or ldapurl)")
    }

    func testAuthLdapOptionsTextAndHBARules() throws {
        let o = try LDAPOptions.parse(text: "ldapserver=127.0.0.1 ldapport=3890 ldapbasedn=\"dc=example,dc=net\" ldaptls=1")
        XCTAssertEqual(o.baseDN, "dc=example,dc=net")
        XCTAssertTrue(o.startTLS)
        let hba = try HBAFile.parse(text: """
            host all all 127.0.0.1/32 ldap ldapserver=127.0.0.1 ldapprefix="uid=" ldapsuffix=",dc=x"
            """, file: "hba.conf") { _ throws(ConfigError) in "" }
        XCTAssertEqual(hba.rules[0].method, .ldap)
        XCTAssertEqual(hba.rules[0].ldap?.bindDN(for: "u"), "uid=u,dc=x")
        XCTAssertThrowsError(try HBAFile.parse(text: "host all all all ldap ldapserver=h\n", file: "hba.conf") { _ throws(ConfigError) in "" }) {
            XCTAssertTrue("\($0)".contains("requires argument \"ldapbasedn\""), "\($0)")
        }
        XCTAssertThrowsError(try HBAFile.parse(text: "host all all all md5 ldapserver=h\n", file: "hba.conf") { _ throws(ConfigError) in "" })
    }
}
