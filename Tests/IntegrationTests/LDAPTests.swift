import Foundation
import Glibc
import XCTest

/// ldap in the hba file and auth_type = ldap, against a real slapd.
final class LDAPTests: XCTestCase {
    private var slapd: Slapd!

    override func setUpWithError() throws {
        switch Slapd.shared {
        case .success(let s): slapd = s
        case .failure(let why): throw XCTSkip(why.description)
        }
    }

    private func hbaFile(_ text: String) throws -> String {
        let path = PostgresCluster.shared.dir + "/ldap-hba-\(UInt32.random(in: 0...UInt32.max)).conf"
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, 0o644)
        return path
    }

    /// auth_file lists only the console user: the server login uses the password LDAP accepted.
    private func pgmux(hba: String, settings: [String: String] = [:], launcher: [String] = []) throws -> PgmuxProcess {
        try PgmuxProcess(settings: ["auth_type": "hba", "auth_hba_file": try hbaFile(hba)].merging(settings) { $1 },
                         userlist: [("postgres", "unused")], launcher: launcher)
    }

    func testSimpleBindRightWrongAndUnknown() throws {
        let p = try pgmux(hba: """
            host all all 127.0.0.1/32 ldap ldapserver=127.0.0.1 ldapport=\(slapd.port) ldapprefix="uid=" ldapsuffix=",\(Slapd.peopleDN)"
            """)
        let c = try PQConnection(p.conninfo())
        XCTAssertEqual(try c.scalar("SELECT current_user"), PostgresCluster.scramUser.0, "server login with the proven password")
        XCTAssertThrowsError(try PQConnection(p.conninfo(password: "wrong"))) { error in
            XCTAssertTrue("\(error)".contains("LDAP authentication failed"), "\(error)")
        }
        XCTAssertThrowsError(try PQConnection(p.conninfo(user: "nobody_here", password: "x"))) { error in
            XCTAssertTrue("\(error)".contains("LDAP authentication failed"), "\(error)")
        }
        XCTAssertEqual(cleartextLoginSQLState(port: p.port, user: PostgresCluster.scramUser.0, database: PostgresCluster.database,
                                              password: "wrong"), "28000", "PostgreSQL's auth_failed for LDAP")
        XCTAssertTrue(p.log.contains("LDAP login failed for user uid=scram_user,\(Slapd.peopleDN)"), p.log)
        XCTAssertEqual(try c.scalar("SELECT 'still here'"), "still here")
    }

    func testSearchBindWithAttributeFilterAndURL() throws {
        let base = "ldapserver=127.0.0.1 ldapport=\(slapd.port) ldapbasedn=\"\(Slapd.baseDN)\""
        for options in [
            base + " ldapbinddn=\"\(Slapd.adminDN)\" ldapbindpasswd=\(Slapd.adminPassword)",
            base + " ldapsearchattribute=cn",
            base + " ldapsearchfilter=\"(mail=$username@example.net)\"",
            "ldapurl=\"ldap://127.0.0.1:\(slapd.port)/\(Slapd.peopleDN)?uid?one\"",
        ] {
            let p = try pgmux(hba: "host all all 127.0.0.1/32 ldap \(options)\n")
            XCTAssertEqual(try PQConnection(p.conninfo()).scalar("SELECT 1"), "1", options)
            XCTAssertEqual(try PQConnection(p.conninfo(user: PostgresCluster.md5User.0, password: PostgresCluster.md5User.1))
                            .scalar("SELECT current_user"), PostgresCluster.md5User.0, options)
            XCTAssertThrowsError(try PQConnection(p.conninfo(password: "wrong")), options)
            XCTAssertThrowsError(try PQConnection(p.conninfo(user: "nobody_here", password: "x")), options)
            XCTAssertTrue(p.log.contains("LDAP user \"nobody_here\" does not exist"), p.log)
        }
    }

    func testAuthTypeLdapWithAuthLdapOptions() throws {
        let options = "ldapserver=127.0.0.1 ldapport=\(slapd.port) ldapbasedn=\"\(Slapd.baseDN)\""
        let p = try PgmuxProcess(settings: ["auth_type": "ldap", "auth_ldap_options": options], userlist: [("postgres", "unused")])
        XCTAssertEqual(try PQConnection(p.conninfo()).scalar("SELECT 1"), "1")
        XCTAssertThrowsError(try PQConnection(p.conninfo(password: "wrong")))
        let unset = try PgmuxProcess(settings: ["auth_type": "ldap"])
        XCTAssertThrowsError(try PQConnection(unset.conninfo())) { XCTAssertTrue("\($0)".contains("bouncer config error"), "\($0)") }
        XCTAssertTrue(unset.log.contains("auth_ldap_options is null"), unset.log)
    }

    /// ldaptls=1 (StartTLS) and ldapscheme=ldaps, with the CA given to OpenLDAP through the
    /// environment (LDAPTLS_CACERT, as ldap.conf's TLS_CACERT); without it, no TLS session.
    func testStartTLSAndLdaps() throws {
        let suffix = "ldapprefix=\"uid=\" ldapsuffix=\",\(Slapd.peopleDN)\""
        let trustCA = ["/usr/bin/env", "LDAPTLS_CACERT=\(PostgresCluster.shared.tlsDir)/ca.crt"]
        for options in ["ldapserver=127.0.0.1 ldapport=\(slapd.port) ldaptls=1 \(suffix)",
                        "ldapserver=127.0.0.1 ldapport=\(slapd.tlsPort) ldapscheme=ldaps \(suffix)",
                        "ldapurl=\"ldaps://127.0.0.1:\(slapd.tlsPort)/\(Slapd.peopleDN)?uid\""] {
            let p = try pgmux(hba: "host all all 127.0.0.1/32 ldap \(options)\n", launcher: trustCA)
            XCTAssertEqual(try PQConnection(p.conninfo()).scalar("SELECT 1"), "1", options + p.log)
            XCTAssertThrowsError(try PQConnection(p.conninfo(password: "wrong")), options)
        }
        let untrusted = try pgmux(hba: "host all all 127.0.0.1/32 ldap ldapserver=127.0.0.1 ldapport=\(slapd.port) ldaptls=1 \(suffix)\n",
                                  launcher: ["/usr/bin/env", "LDAPTLS_CACERT=/etc/ssl/certs/ca-certificates.crt"])
        XCTAssertThrowsError(try PQConnection(untrusted.conninfo())) { XCTAssertTrue("\($0)".contains("LDAP authentication failed"), "\($0)") }
        XCTAssertTrue(untrusted.log.contains("could not start LDAP TLS session"), untrusted.log)
    }

    /// An LDAP server that accepts connections and never answers: its logins fail after the
    /// operation timeout (LDAPTIMEOUT=2 here) with a clear error; other LDAP logins and other
    /// clients go on meanwhile.
    func testHangingServerStallsNobodyElse() throws {
        let hanging = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(hanging) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(hanging, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        listen(hanging, 16)  // the kernel completes the handshakes; nobody ever reads
        var bound = sockaddr_in(), length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            getsockname(hanging, $0, &length) } }
        let hangingPort = Int(UInt16(bigEndian: bound.sin_port))
        let p = try pgmux(hba: """
            host all \(PostgresCluster.md5User.0) 127.0.0.1/32 ldap ldapserver=127.0.0.1 ldapport=\(hangingPort) ldapprefix="uid=" ldapsuffix=",\(Slapd.peopleDN)"
            host all all 127.0.0.1/32 ldap ldapserver=127.0.0.1 ldapport=\(slapd.port) ldapprefix="uid=" ldapsuffix=",\(Slapd.peopleDN)"
            """, launcher: ["/usr/bin/env", "LDAPTIMEOUT=2"])
        let hungDone = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var hungError = ""
        let hungConninfo = p.conninfo(user: PostgresCluster.md5User.0, password: PostgresCluster.md5User.1)
        for _ in 0..<3 {
            Thread.detachNewThread {
                do { _ = try PQConnection(hungConninfo) } catch { hungError = "\(error)" }
                hungDone.signal()
            }
        }
        usleep(300_000)
        let start = Date()
        XCTAssertEqual(try PQConnection(p.conninfo()).scalar("SELECT 1"), "1")
        XCTAssertLessThan(Date().timeIntervalSince(start), 1.5, "an LDAP login beside hanging ones")
        XCTAssertEqual(hungDone.wait(timeout: .now() + 0.5), .timedOut, "the hanging binds were still waiting")
        for _ in 0..<3 { XCTAssertEqual(hungDone.wait(timeout: .now() + 15), .success) }
        XCTAssertTrue(hungError.contains("LDAP authentication failed"), hungError)
        XCTAssertTrue(p.log.contains("Timed out") || p.log.contains("Can't contact LDAP server"), p.log)
        XCTAssertTrue(p.isRunning)
    }
}
