import Foundation
import XCTest
@testable import PgmuxCore

final class HBATests: XCTestCase {
    // MARK: helpers

    private func parse(_ text: String, files: [String: String] = [:], file: String = "/etc/pgmux/hba.conf") throws -> HBAFile {
        try HBAFile.parse(text: text, file: file) { (path: String) throws(ConfigError) -> String in
            guard let t = files[path] else { throw ConfigError(file: path, line: 0, message: "no such file") }
            return t
        }
    }

    private func parseError(_ text: String, files: [String: String] = [:], file: StaticString = #filePath, line: UInt = #line) -> ConfigError? {
        configError({ () throws(ConfigError) in
            try HBAFile.parse(text: text, file: "hba.conf") { (path: String) throws(ConfigError) -> String in
                guard let t = files[path] else { throw ConfigError(file: path, line: 0, message: "no such file") }
                return t
            }
        }, file: file, line: line)
    }

    private func assertError(_ text: String, line: Int, contains fragment: String, files: [String: String] = [:],
                             file: StaticString = #filePath, sourceLine: UInt = #line) {
        guard let err = parseError(text, files: files, file: file, line: sourceLine) else { return }
        XCTAssertEqual(err.file, "hba.conf", text, file: file, line: sourceLine)
        XCTAssertEqual(err.line, line, "\(text) -> \(err)", file: file, line: sourceLine)
        XCTAssertTrue(err.message.contains(fragment), "\(err.message) lacks \(fragment)", file: file, line: sourceLine)
    }

    private func ip(_ s: String) -> [UInt8] {
        guard let b = HBAAddress.parse(s) else {
            XCTFail("bad test address \(s)")
            return []
        }
        return b
    }

    /// TCP match shortcut: method of the first matching rule.
    private func tcp(_ hba: HBAFile, _ addr: String, tls: Bool = false, db: String = "app", user: String = "alice",
                     replication: Bool = false) -> HBAMethod? {
        hba.match(type: .host, tls: tls, database: db, user: user, address: ip(addr), replication: replication)?.method
    }

    private func local(_ hba: HBAFile, db: String = "app", user: String = "alice", replication: Bool = false) -> HBAMethod? {
        hba.match(type: .local, tls: false, database: db, user: user, address: nil, replication: replication)?.method
    }

    // MARK: syntax

    func testParsesAllFieldsCommentsAndBlankLines() throws {
        let hba = try parse("""
        # full-line comment

        local   all        all                     peer map=socketmap   # trailing comment
        host    app,other  alice,bob  10.0.0.0/8   md5
        hostssl all        all        ::1/128      scram-sha-256
        hostnossl all      all        all          password
        host    all        all        192.168.1.0 255.255.255.0 trust
        \t host all all 0.0.0.0/0 reject\r
        host all all 10.0.0.0/8 cert map=certmap
        """)
        XCTAssertEqual(hba.rules.count, 7)
        XCTAssertEqual(hba.rules.map(\.line), [3, 4, 5, 6, 7, 8, 9])
        XCTAssertEqual(hba.rules.map(\.type), [.local, .host, .hostssl, .hostnossl, .host, .host, .host])
        XCTAssertEqual(hba.rules.map(\.method), [.peer, .md5, .scramSHA256, .password, .trust, .reject, .cert])
        XCTAssertEqual(hba.rules[0].options, ["map": "socketmap"])
        XCTAssertEqual(hba.rules[0].identMap, "socketmap")
        XCTAssertNil(hba.rules[0].address)
        XCTAssertEqual(hba.rules[1].databases, HBANameMatcher(names: ["app", "other"]))
        XCTAssertEqual(hba.rules[1].users, HBANameMatcher(names: ["alice", "bob"]))
        XCTAssertEqual(hba.rules[1].address, .network(HBANetwork(address: [10, 0, 0, 0], prefixLength: 8)!))
        XCTAssertEqual(hba.rules[3].address, .all)
        XCTAssertEqual(hba.rules[4].address, .network(HBANetwork(address: [192, 168, 1, 0], prefixLength: 24)!))
        XCTAssertEqual(hba.rules[6].identMap, "certmap")
        XCTAssertEqual(hba.file, "/etc/pgmux/hba.conf")
    }

    func testEmptyAndCommentOnlyFiles() throws {
        XCTAssertEqual(try parse("").rules, [])
        XCTAssertEqual(try parse("\n\n   \n# x\n\t# y\n").rules, [])
        XCTAssertNil(local(try parse("# nothing\n")))
    }

    func testCommaListsAllowSpacesAroundCommas() throws {
        let hba = try parse("host a , b,c   u1 ,u2 all md5\n")
        XCTAssertEqual(hba.rules[0].databases.names, ["a", "b", "c"])
        XCTAssertEqual(hba.rules[0].users.names, ["u1", "u2"])
        XCTAssertEqual(hba.rules[0].method, .md5)
    }

    func testQuotedWordsAreLiteralNames() throws {
        let hba = try parse(#"""
        host "all" "all" all md5
        host "my db","sameuser" "we ""quote""" all trust
        host "replication" all all password
        host all "@notafile","+notagroup" all reject
        """#)
        XCTAssertEqual(hba.rules[0].databases, HBANameMatcher(names: ["all"]))
        XCTAssertEqual(hba.rules[0].users, HBANameMatcher(names: ["all"]))
        XCTAssertEqual(hba.rules[1].databases, HBANameMatcher(names: ["my db", "sameuser"]))
        XCTAssertEqual(hba.rules[1].users.names, ["we \"quote\""])
        XCTAssertEqual(hba.rules[2].databases, HBANameMatcher(names: ["replication"]))
        XCTAssertEqual(hba.rules[3].users.names, ["@notafile", "+notagroup"])

        // Quoted "all" matches only a database / user literally named all.
        XCTAssertEqual(tcp(hba, "1.2.3.4", db: "all", user: "all"), .md5)
        XCTAssertEqual(tcp(hba, "1.2.3.4", db: "my db", user: "we \"quote\""), .trust)
        XCTAssertEqual(tcp(hba, "1.2.3.4", db: "sameuser", user: "we \"quote\""), .trust)
        XCTAssertNotEqual(tcp(hba, "1.2.3.4", db: "bob", user: "bob"), .trust) // "sameuser" is not the keyword
        XCTAssertEqual(tcp(hba, "1.2.3.4", db: "replication", user: "x"), .password)
        XCTAssertEqual(tcp(hba, "1.2.3.4", db: "app", user: "@notafile"), .reject)
        XCTAssertNil(tcp(hba, "1.2.3.4", db: "app", user: "alice"))
        // Quoted "replication" is a database name, not the replication keyword.
        XCTAssertNil(tcp(hba, "1.2.3.4", db: "x", user: "x", replication: true))
    }

    func testQuotedCommaAndHashAreLiteral() throws {
        let hba = try parse("host \"a,b#c\" all all md5 # comment\n")
        XCTAssertEqual(hba.rules[0].databases.names, ["a,b#c"])
    }

    func testNamesAreCaseSensitiveButKeywordsAreNot() throws {
        let hba = try parse("local App alice trust\n")
        XCTAssertEqual(local(hba, db: "App"), .trust)
        XCTAssertNil(local(hba, db: "app"))
        // "ALL" is a plain name (PostgreSQL keywords are case-sensitive lowercase).
        let upper = try parse("local ALL all trust\n")
        XCTAssertNil(local(upper, db: "app"))
        XCTAssertEqual(local(upper, db: "ALL"), .trust)
    }

    func testAtFileListsRelativeToHBADirectory() throws {
        let files = [
            "/etc/pgmux/dbs.txt": "# databases\napp1, app2\n  app3 \"quoted db\" # trailing\n\n",
            "/etc/pgmux/sub/users": "alice bob\n@more\n",
            "/etc/pgmux/sub/more": "carol,\"all\"\n",
            "/abs/admins": "root\r\n",
        ]
        let hba = try parse("""
        host @dbs.txt @sub/users 10.0.0.0/8 md5
        host all @/abs/admins,dave all trust
        """, files: files)
        XCTAssertEqual(hba.rules[0].databases.names, ["app1", "app2", "app3", "quoted db"])
        XCTAssertEqual(hba.rules[0].users.names, ["alice", "bob", "carol", "all"])
        XCTAssertFalse(hba.rules[0].users.all)
        XCTAssertEqual(hba.rules[1].users.names, ["root", "dave"])
        XCTAssertEqual(tcp(hba, "10.1.1.1", db: "quoted db", user: "carol"), .md5)
        XCTAssertEqual(tcp(hba, "10.1.1.1", db: "app4", user: "root"), .trust)
        XCTAssertNil(tcp(hba, "10.1.1.1", db: "app4", user: "alice"))
    }

    func testAtFileKeywordsKeepTheirMeaning() throws {
        let hba = try parse("local @dbs all trust\n", files: ["/etc/pgmux/dbs": "sameuser\nreplication\n"])
        XCTAssertTrue(hba.rules[0].databases.sameUser)
        XCTAssertTrue(hba.rules[0].databases.replication)
        XCTAssertEqual(local(hba, db: "alice", user: "alice"), .trust)
        XCTAssertNil(local(hba, db: "bob", user: "alice"))
        XCTAssertEqual(local(hba, db: "", user: "alice", replication: true), .trust)
    }

    func testIncludeFileWithoutDirectoryIsUsedAsIs() throws {
        let hba = try HBAFile.parse(text: "local @names all trust", file: "hba.conf") { (p: String) throws(ConfigError) -> String in
            XCTAssertEqual(p, "names")
            return "x"
        }
        XCTAssertEqual(hba.rules[0].databases.names, ["x"])
    }

    // MARK: matching

    func testFirstMatchWins() throws {
        let hba = try parse("""
        host app alice 10.1.0.0/16 reject
        host app all   10.0.0.0/8  md5
        host all all   all         scram-sha-256
        host app alice 10.1.0.0/16 trust
        """)
        XCTAssertEqual(hba.match(type: .host, tls: false, database: "app", user: "alice", address: ip("10.1.2.3"), replication: false)?.line, 1)
        XCTAssertEqual(tcp(hba, "10.1.2.3"), .reject)
        XCTAssertEqual(tcp(hba, "10.2.0.1"), .md5)
        XCTAssertEqual(tcp(hba, "10.1.2.3", user: "bob"), .md5)
        XCTAssertEqual(tcp(hba, "11.0.0.1"), .scramSHA256)
        XCTAssertEqual(hba.match(type: .host, tls: false, database: "x", user: "y", address: ip("11.0.0.1"), replication: false)?.line, 3)
    }

    func testNoMatchIsNil() throws {
        let hba = try parse("host app alice 10.0.0.0/8 md5\n")
        XCTAssertNil(tcp(hba, "10.0.0.1", db: "other"))
        XCTAssertNil(tcp(hba, "10.0.0.1", user: "bob"))
        XCTAssertNil(tcp(hba, "11.0.0.1"))
        XCTAssertNil(local(hba))
        XCTAssertNil(try parse("").match(type: .host, tls: true, database: "a", user: "b", address: [1, 2, 3, 4], replication: false))
    }

    func testLocalVersusHostRules() throws {
        let hba = try parse("""
        local all all peer
        host  all all all md5
        """)
        XCTAssertEqual(local(hba), .peer)
        XCTAssertEqual(tcp(hba, "127.0.0.1"), .md5)
        XCTAssertEqual(tcp(hba, "127.0.0.1", tls: true), .md5)
        // Unix socket never matches host rules, even "all" addresses.
        let hostOnly = try parse("host all all all trust\nhostssl all all all trust\nhostnossl all all all trust\n")
        XCTAssertNil(local(hostOnly))
        // TCP never matches local rules.
        XCTAssertNil(tcp(try parse("local all all trust\n"), "127.0.0.1"))
        // The address is ignored for local connections.
        XCTAssertEqual(try parse("local all all trust\n").match(type: .local, tls: false, database: "a", user: "b",
                                                              address: [1, 2, 3, 4], replication: false)?.method, .trust)
    }

    func testHostSSLAndHostNoSSLFollowTLSFlag() throws {
        let hba = try parse("""
        hostssl   all all all scram-sha-256
        hostnossl all all all md5
        host      all all all reject
        """)
        XCTAssertEqual(tcp(hba, "1.2.3.4", tls: true), .scramSHA256)
        XCTAssertEqual(tcp(hba, "1.2.3.4", tls: false), .md5)
        // Passing the specific type overrides the flag.
        XCTAssertEqual(hba.match(type: .hostssl, tls: false, database: "a", user: "b", address: ip("1.2.3.4"), replication: false)?.method, .scramSHA256)
        XCTAssertEqual(hba.match(type: .hostnossl, tls: true, database: "a", user: "b", address: ip("1.2.3.4"), replication: false)?.method, .md5)

        let sslOnly = try parse("hostssl all all all trust\n")
        XCTAssertNil(tcp(sslOnly, "1.2.3.4", tls: false))
        XCTAssertEqual(tcp(sslOnly, "1.2.3.4", tls: true), .trust)
        let noSSLOnly = try parse("hostnossl all all all trust\n")
        XCTAssertNil(tcp(noSSLOnly, "1.2.3.4", tls: true))
        XCTAssertEqual(tcp(noSSLOnly, "1.2.3.4", tls: false), .trust)
        let host = try parse("host all all all trust\n")
        XCTAssertEqual(tcp(host, "1.2.3.4", tls: true), .trust)
        XCTAssertEqual(tcp(host, "1.2.3.4", tls: false), .trust)
    }

    func testSameUser() throws {
        let hba = try parse("host sameuser all all trust\nhost sameuser,shared all all md5\n")
        XCTAssertEqual(tcp(hba, "1.1.1.1", db: "alice", user: "alice"), .trust)
        XCTAssertNil(tcp(hba, "1.1.1.1", db: "alice", user: "Alice"))
        XCTAssertEqual(tcp(hba, "1.1.1.1", db: "shared", user: "bob"), .md5)
    }

    func testReplicationMatchesOnlyReplicationConnections() throws {
        let hba = try parse("""
        host replication repl 10.0.0.0/8 scram-sha-256
        host all         all  all        md5
        """)
        XCTAssertEqual(tcp(hba, "10.0.0.1", db: "replication", user: "repl", replication: true), .scramSHA256)
        XCTAssertEqual(tcp(hba, "10.0.0.1", db: "anything", user: "repl", replication: true), .scramSHA256)
        // "all" does not cover physical replication; no other rule matches.
        XCTAssertNil(tcp(hba, "11.0.0.1", db: "replication", user: "repl", replication: true))
        XCTAssertNil(tcp(hba, "10.0.0.1", db: "x", user: "other", replication: true))
        // The replication keyword does not match an ordinary connection to a db named replication.
        XCTAssertEqual(tcp(hba, "10.0.0.1", db: "replication", user: "repl"), .md5)
        XCTAssertEqual(try parse("host replication all all trust\n").rules[0].databases, HBANameMatcher(replication: true))
        XCTAssertNil(tcp(try parse("host replication all all trust\n"), "1.1.1.1", db: "replication"))
    }

    // MARK: addresses

    func testIPv4CIDREdges() throws {
        let zero = try parse("host all all 0.0.0.0/0 trust\n")
        XCTAssertEqual(tcp(zero, "0.0.0.0"), .trust)
        XCTAssertEqual(tcp(zero, "255.255.255.255"), .trust)
        XCTAssertNil(tcp(zero, "::1"), "an IPv4 rule never matches a genuine IPv6 client")

        let one = try parse("host all all 192.168.1.7/32 trust\n")
        XCTAssertEqual(tcp(one, "192.168.1.7"), .trust)
        XCTAssertNil(tcp(one, "192.168.1.6"))
        XCTAssertNil(tcp(one, "192.168.1.8"))

        let odd = try parse("host all all 172.16.0.0/12 trust\n")
        XCTAssertEqual(tcp(odd, "172.16.0.0"), .trust)
        XCTAssertEqual(tcp(odd, "172.31.255.255"), .trust)
        XCTAssertNil(tcp(odd, "172.32.0.0"))
        XCTAssertNil(tcp(odd, "172.15.255.255"))

        let slash31 = try parse("host all all 10.0.0.2/31 trust\n")
        XCTAssertEqual(tcp(slash31, "10.0.0.3"), .trust)
        XCTAssertNil(tcp(slash31, "10.0.0.4"))
    }

    func testIPv6CIDREdges() throws {
        let zero = try parse("host all all ::/0 trust\n")
        XCTAssertEqual(tcp(zero, "::"), .trust)
        XCTAssertEqual(tcp(zero, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), .trust)
        XCTAssertNil(tcp(zero, "1.2.3.4"), "an IPv6 rule never matches a plain IPv4 client")

        let one = try parse("host all all ::1/128 trust\n")
        XCTAssertEqual(tcp(one, "::1"), .trust)
        XCTAssertEqual(tcp(one, "0:0:0:0:0:0:0:1"), .trust)
        XCTAssertNil(tcp(one, "::2"))
        XCTAssertNil(tcp(one, "127.0.0.1"))

        let net = try parse("host all all 2001:db8:abcd::/49 trust\n")
        XCTAssertEqual(tcp(net, "2001:db8:abcd:7fff::1"), .trust)
        XCTAssertNil(tcp(net, "2001:db8:abcd:8000::1"))
        XCTAssertNil(tcp(net, "2001:db9:abcd::1"))
    }

    func testHostBitsAreMaskedOff() throws {
        let hba = try parse("host all all 10.1.2.3/8 trust\nhost all all fe80::1/10 md5\n")
        guard case .network(let v4)? = hba.rules[0].address, case .network(let v6)? = hba.rules[1].address else {
            return XCTFail("expected networks")
        }
        XCTAssertEqual(v4.address, [10, 0, 0, 0])
        XCTAssertTrue(v4.hadHostBits)
        XCTAssertEqual(v4.description, "10.0.0.0/8")
        XCTAssertEqual(v6.description, "fe80::/10")
        XCTAssertTrue(v6.hadHostBits)
        XCTAssertEqual(tcp(hba, "10.200.0.1"), .trust)
        XCTAssertEqual(tcp(hba, "febf::9"), .md5)
        XCTAssertNil(tcp(hba, "fec0::1"))
        XCTAssertFalse(HBANetwork.parse(cidr: "10.0.0.0/8")!.hadHostBits)
    }

    func testAddressAndNetmaskForm() throws {
        let hba = try parse("""
        host all all 10.20.0.0 255.255.0.0 md5
        host all all 2001:db8:: ffff:ffff:: trust
        host all all 0.0.0.0 0.0.0.0 reject
        """)
        XCTAssertEqual(hba.rules[0].address, .network(HBANetwork(address: [10, 20, 0, 0], prefixLength: 16)!))
        if case .network(let n)? = hba.rules[1].address { XCTAssertEqual(n.prefixLength, 32) } else { XCTFail() }
        XCTAssertEqual(hba.rules[0].method, .md5)
        XCTAssertEqual(tcp(hba, "10.20.99.1"), .md5)
        XCTAssertEqual(tcp(hba, "2001:db8:1::1"), .trust)
        XCTAssertEqual(tcp(hba, "10.21.0.1"), .reject)
        XCTAssertNil(tcp(hba, "2001:db9::1"))
    }

    func testIPv4MappedClientsMatchIPv4Rules() throws {
        let hba = try parse("""
        host all all 10.0.0.0/8 md5
        host all all ::ffff:192.168.0.0/112 trust
        """)
        XCTAssertEqual(tcp(hba, "::ffff:10.9.8.7"), .md5)
        XCTAssertEqual(tcp(hba, "::ffff:192.168.3.4"), .trust, "mapped client still matches IPv6 rules")
        XCTAssertNil(tcp(hba, "::ffff:11.0.0.1"))
        // Not mapped: ::10.9.8.7 (deprecated compatible form) and 64:ff9b::/96 do not count.
        XCTAssertNil(tcp(hba, "::a09:807"))
        XCTAssertNil(tcp(hba, "64:ff9b::10.9.8.7"))
        // A plain IPv4 client does not match an IPv6 mapped-range rule.
        XCTAssertNil(tcp(hba, "192.168.3.4"))

        let all4 = try parse("host all all 0.0.0.0/0 trust\nhost all all 127.0.0.1/32 reject\n")
        XCTAssertEqual(tcp(all4, "::ffff:127.0.0.1"), .trust)
        XCTAssertEqual(HBAAddress.unmappedIPv4(ip("::ffff:1.2.3.4")), [1, 2, 3, 4])
        XCTAssertNil(HBAAddress.unmappedIPv4(ip("::fffe:1.2.3.4")))
    }

    func testAllAddressAndMissingClientAddress() throws {
        let hba = try parse("host all all 10.0.0.0/8 md5\nhost all all all trust\n")
        XCTAssertEqual(tcp(hba, "::1"), .trust)
        XCTAssertEqual(tcp(hba, "10.0.0.1"), .md5)
        // TCP connection whose address is unknown: only "all" can match.
        XCTAssertEqual(hba.match(type: .host, tls: false, database: "a", user: "b", address: nil, replication: false)?.method, .trust)
        // Malformed client address lengths never match a network.
        XCTAssertFalse(HBANetwork.parse(cidr: "0.0.0.0/0")!.contains([1, 2, 3]))
        XCTAssertFalse(HBANetwork.parse(cidr: "::/0")!.contains([1, 2, 3, 4, 5]))
    }

    func testCIDRParsing() {
        XCTAssertEqual(HBANetwork.parse(cidr: "1.2.3.4/32")?.prefixLength, 32)
        XCTAssertEqual(HBANetwork.parse(cidr: "::/128")?.prefixLength, 128)
        XCTAssertEqual(HBANetwork.parse(cidr: "1.2.3.0/024")?.prefixLength, 24)
        for bad in ["1.2.3.4/33", "::/129", "1.2.3.4/", "1.2.3.4/-1", "1.2.3.4/+8", "1.2.3.4/8/8", "1.2.3/24", "1.2.3.4.5/8",
                    "256.0.0.0/8", "01.2.3.4/8", "1.2.3.4/ 8", "host.example/8", "/8", "1.2.3.4/1000", "::g/8", "fe80::1%eth0/64"] {
            XCTAssertNil(HBANetwork.parse(cidr: bad), bad)
        }
        XCTAssertNil(HBANetwork(address: [1, 2, 3, 4], netmask: [255, 0, 255, 0]))
        XCTAssertNil(HBANetwork(address: [1, 2, 3, 4], netmask: [255, 255, 255]))
        XCTAssertEqual(HBANetwork(address: [1, 2, 3, 4], netmask: [255, 255, 240, 0])?.prefixLength, 20)
        XCTAssertEqual(HBANetwork.mask(bytes: 4, prefixLength: 20), [255, 255, 240, 0])
        XCTAssertEqual(HBAAddress.format([127, 0, 0, 1]), "127.0.0.1")
        XCTAssertEqual(HBAAddress.format(ip("::1")), "::1")
    }

    // MARK: errors

    func testUnknownAndUnsupportedMethods() {
        assertError("host all all all md6\n", line: 1, contains: "unknown authentication method \"md6\"")
        assertError("# c\nhost all all all MD5\n", line: 2, contains: "unknown authentication method")
        for m in ["ident", "sspi", "radius", "bsd"] {
            assertError("\nlocal all all \(m)\n", line: 2, contains: "authentication method \(m) is not supported")
        }
        assertError("host all all all md5 pamservice=x\n", line: 1, contains: "authentication option \"pamservice\" is not supported")
        assertError("host all all all pam pamservice=\n", line: 1, contains: "pamservice= needs a PAM service name")
        assertError("host all all all \"md5\"\n", line: 1, contains: "unknown authentication method")
        assertError("host all all all md5,trust\n", line: 1, contains: "cannot be a list")
    }

    func testBadAddresses() {
        assertError("host all all 10.0.0.0/33 md5\n", line: 1, contains: "invalid CIDR address \"10.0.0.0/33\"")
        assertError("host all all ::1/129 md5\n", line: 1, contains: "invalid CIDR")
        assertError("host all all 10.0.0/8 md5\n", line: 1, contains: "invalid CIDR")
        assertError("host all all 10.0.0.0/x md5\n", line: 1, contains: "invalid CIDR")
        assertError("host all all db.example.com md5\n", line: 1, contains: "host names are not supported")
        assertError("host all all .example.com md5\n", line: 1, contains: "host names are not supported")
        assertError("host all all \"all\" md5\n", line: 1, contains: "invalid IP address \"all\"")
        assertError("host all all 10.0.0.1 md5\n", line: 1, contains: "invalid netmask \"md5\"")
        assertError("host all all 10.0.0.1\n", line: 1, contains: "needs a /prefix length or a separate netmask")
        assertError("host all all 10.0.0.0 ffff:: md5\n", line: 1, contains: "invalid netmask")
        assertError("host all all 10.0.0.0 255.0.255.0 md5\n", line: 1, contains: "not contiguous")
        assertError("host all all 10.0.0.0/8,11.0.0.0/8 md5\n", line: 1, contains: "address field cannot be a list")
        assertError("host all all samehost md5\n", line: 1, contains: "samehost is not supported")
        assertError("host all all samenet md5\n", line: 1, contains: "samenet is not supported")
    }

    func testMissingFields() {
        assertError("host\n", line: 1, contains: "missing database field")
        assertError("host all\n", line: 1, contains: "missing user field")
        assertError("# c\nx all all trust\n", line: 2, contains: "unknown connection type \"x\"")
        assertError("host all all\n", line: 1, contains: "missing address field")
        assertError("host all all all\n", line: 1, contains: "missing authentication method field")
        assertError("local all all\n", line: 1, contains: "missing authentication method field")
        assertError("hostssl all all 10.0.0.0/8\n", line: 1, contains: "missing authentication method field")
    }

    func testUnsupportedKeywordsAndTypes() {
        assertError("local all +admins trust\n", line: 1, contains: "group membership (+admins) is not supported")
        assertError("local samerole all trust\n", line: 1, contains: "samerole is not supported")
        assertError("local samegroup all trust\n", line: 1, contains: "samegroup is not supported")
        assertError("local /^app.*$ all trust\n", line: 1, contains: "regular expressions")
        assertError("local all /^a trust\n", line: 1, contains: "regular expressions")
        assertError("hostgssenc all all all trust\n", line: 1, contains: "hostgssenc is not supported")
        assertError("include other.conf\n", line: 1, contains: "include directives are not supported")
        assertError("Host all all all trust\n", line: 1, contains: "unknown connection type \"Host\"")
        assertError("\"local\" all all trust\n", line: 1, contains: "unknown connection type")
        assertError("local,host all all trust\n", line: 1, contains: "connection type field cannot be a list")
    }

    func testOptions() {
        assertError("local all all peer map\n", line: 1, contains: "options are written name=value")
        assertError("local all all peer =x\n", line: 1, contains: "options are written name=value")
        assertError("local all all peer map=\n", line: 1, contains: "needs a map name")
        assertError("local all all trust map=x\n", line: 1, contains: "only valid for methods cert, peer and gss")
        assertError("hostssl all all all md5 clientcert=verify-full\n", line: 1, contains: "option \"clientcert\" is not supported")
        assertError("host all all all md5 trust\n", line: 1, contains: "unexpected field \"trust\"")
    }

    func testMethodTypeCombinations() throws {
        assertError("host all all all peer\n", line: 1, contains: "peer authentication is only supported on local")
        assertError("local all all cert\n", line: 1, contains: "cert authentication needs TLS")
        assertError("hostnossl all all all cert\n", line: 1, contains: "cert authentication needs TLS")
        XCTAssertEqual(try parse("hostssl all all all cert map=m\n").rules[0].options, ["map": "m"])
        XCTAssertEqual(try parse("local all all peer map=\"my map\"\n").rules[0].identMap, "my map")
    }

    func testLexicalErrors() {
        assertError("local \"unterminated all trust\n", line: 1, contains: "unterminated quoted string")
        assertError("local a,,b all trust\n", line: 1, contains: "empty entry")
        assertError("local a, all trust,\n", line: 1, contains: "comma at end of line")
        assertError("local all , ,b all trust\n", line: 1, contains: "empty entry")
    }

    func testAtFileErrors() {
        assertError("\nlocal @missing all trust\n", line: 2, contains: "cannot read database list @missing")
        assertError("local all @ trust\n", line: 1, contains: "@ must be followed by a file name")
        assertError("local @loop all trust\n", line: 1, contains: "nesting deeper", files: ["loop": "@loop\n"])
        assertError("local all @u trust\n", line: 1, contains: "in user list @u: u:2: unterminated quoted string",
                    files: ["u": "ok\n\"bad\n"])
        assertError("local all @u trust\n", line: 1, contains: "group membership", files: ["u": "+grp\n"])
        // An empty list file is allowed and matches nothing.
        XCTAssertNoThrow(try parse("local @empty all trust\n", files: ["/etc/pgmux/empty": "# none\n"]))
        XCTAssertNil(local(try parse("local @empty all trust\n", files: ["/etc/pgmux/empty": ""])))
    }

    func testErrorDescriptionIsLocated() {
        let err = parseError("local all all trust\nhost all all 1.2.3.4/40 md5\n")
        XCTAssertEqual(err?.description.hasPrefix("hba.conf:2: invalid CIDR"), true, err?.description ?? "")
        XCTAssertNil(err?.key)
    }

    // MARK: load from disk

    func testLoadResolvesAtFilesNextToTheHBAFile() throws {
        let dirURL = FileManager.default.temporaryDirectory.appendingPathComponent("pgmux-hba-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dirURL, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dirURL) }
        let dir = dirURL.path
        func write(_ name: String, _ contents: String) throws {
            try contents.write(toFile: dir + "/" + name, atomically: true, encoding: .utf8)
        }
        try write("hba.conf", "local @users.txt all trust\nhost all all ::1/128 md5\n")
        try write("users.txt", "app1\napp2\n")
        let hba = try HBAFile.load(path: dir + "/hba.conf")
        XCTAssertEqual(hba.rules.count, 2)
        XCTAssertEqual(hba.rules[0].databases.names, ["app1", "app2"])

        let missing = configError { () throws(ConfigError) in try HBAFile.load(path: dir + "/nope.conf") }
        XCTAssertEqual(missing?.line, 0)
        XCTAssertTrue(missing?.message.contains("cannot open hba file") ?? false)

        try write("bad.conf", "local @absent all trust\n")
        let absent = configError { () throws(ConfigError) in try HBAFile.load(path: dir + "/bad.conf") }
        XCTAssertEqual(absent?.file, dir + "/bad.conf")
        XCTAssertEqual(absent?.line, 1)
        XCTAssertTrue(absent?.message.contains(dir + "/absent") ?? false, absent?.message ?? "")
    }
}

extension HBATests {
    /// pam is a pgmux extension of PgBouncer's hba syntax, with PostgreSQL's pamservice= option.
    func testPamMethodAndItsService() throws {
        let hba = try parse("host all all 127.0.0.1/32 pam pamservice=pgmux-db\nlocal all all pam\n")
        XCTAssertEqual(hba.rules.map(\.method), [.pam, .pam])
        XCTAssertEqual(hba.rules[0].options["pamservice"], "pgmux-db")
        XCTAssertNil(hba.rules[1].options["pamservice"])
    }
}
