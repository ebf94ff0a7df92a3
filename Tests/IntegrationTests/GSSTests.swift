import Foundation
import Glibc
import XCTest

/// gss in the hba file against a real MIT KDC, with libpq (psql) as the Kerberos client.
final class GSSTests: XCTestCase {
    private var kdc: KerberosKDC!

    override func setUpWithError() throws {
        switch KerberosKDC.shared {
        case .success(let k): kdc = k
        case .failure(let why): throw XCTSkip(why.description)
        }
    }

    private func pgmux(_ rule: String, settings: [String: String] = [:]) throws -> PgmuxProcess {
        let path = kdc.dir + "/hba-\(UInt32.random(in: 0...UInt32.max)).conf"
        try (rule + "\n").write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, 0o644)
        let env = ["/usr/bin/env", "KRB5_CONFIG=\(kdc.config)", "KRB5RCACHETYPE=none"]
        return try PgmuxProcess(settings: ["auth_type": "hba", "auth_hba_file": path, "krb_server_keyfile": kdc.keytab]
                                    .merging(settings) { $1 }, launcher: env)
    }

    /// psql through pgmux at host=localhost (the service principal is postgres/localhost).
    private func psql(_ p: PgmuxProcess, user: String = PostgresCluster.scramUser.0, ticket: Bool = true) throws -> (Int32, String) {
        var env = kdc.environment
        if !ticket { env["KRB5CCNAME"] = "FILE:\(kdc.dir)/no-such-ccache" }
        env["PGCONNECT_TIMEOUT"] = "10"
        let r = try Shell.runStatus("/usr/bin/psql", ["host=localhost port=\(p.port) user=\(user) dbname=\(PostgresCluster.database) krbsrvname=postgres",
                                                      "-Atc", "SELECT current_user"], env: env)
        return (r.status, r.output.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    func testTicketLogsInWithoutPassword() throws {
        let p = try pgmux("host all all 127.0.0.1/32 gss include_realm=0 krb_realm=\(KerberosKDC.realm)")
        let (status, output) = try psql(p)
        XCTAssertEqual(status, 0, output + p.log)
        XCTAssertEqual(output, PostgresCluster.scramUser.0)
        let (noTicket, why) = try psql(p, ticket: false)
        XCTAssertNotEqual(noTicket, 0, why)
        XCTAssertTrue(p.isRunning)
    }

    func testPrincipalMustMatchTheLoginName() throws {
        // include_realm=1 (the default): scram_user@PGMUX.TEST is not scram_user.
        let withRealm = try pgmux("host all all 127.0.0.1/32 gss")
        let (status, output) = try psql(withRealm)
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(output.contains("GSSAPI authentication failed for user \"scram_user\""), output)
        XCTAssertTrue(withRealm.log.contains("provided user name (scram_user) and authenticated user name (scram_user@PGMUX.TEST) do not match"),
                      withRealm.log)
        // Another user's name with scram_user's ticket.
        let stripped = try pgmux("host all all 127.0.0.1/32 gss include_realm=0")
        XCTAssertNotEqual(try psql(stripped, user: PostgresCluster.md5User.0).0, 0)
        // A realm other than the ticket's.
        let otherRealm = try pgmux("host all all 127.0.0.1/32 gss include_realm=0 krb_realm=OTHER.TEST")
        XCTAssertNotEqual(try psql(otherRealm).0, 0)
        XCTAssertTrue(otherRealm.log.contains("GSSAPI realm (PGMUX.TEST) and configured realm (OTHER.TEST) don't match"), otherRealm.log)
    }

    func testIdentMapLetsThePrincipalUseAnotherName() throws {
        let ident = kdc.dir + "/ident.conf"
        try "krb  scram_user@\(KerberosKDC.realm)  \(PostgresCluster.md5User.0)\n".write(toFile: ident, atomically: false, encoding: .utf8)
        chmod(ident, 0o644)
        let p = try pgmux("host all all 127.0.0.1/32 gss map=krb", settings: ["auth_ident_file": ident])
        let (status, output) = try psql(p, user: PostgresCluster.md5User.0)
        XCTAssertEqual(status, 0, output + p.log)
        XCTAssertEqual(output, PostgresCluster.md5User.0)
        XCTAssertNotEqual(try psql(p).0, 0, "the map does not list scram_user itself")
    }
}
