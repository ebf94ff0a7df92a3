import XCTest
@testable import PgmuxCore

/// gss in the hba file: the token exchange and PostgreSQL's principal rules.
final class GSSExchangeTests: XCTestCase {
    func authenticator() -> ClientAuthenticator {
        ClientAuthenticator(method: .gss, user: "alice", storedSecret: nil, keyCache: SCRAMKeyCache())
    }

    func testTokensGoOutUntilTheContextIsComplete() {
        var a = authenticator()
        XCTAssertEqual(a.start(), .sendAuthenticationGSS)
        XCTAssertEqual(a.receivePassword([1, 2, 3]), .acceptGSSToken([1, 2, 3]))
        XCTAssertEqual(a.gssStep(output: [9], complete: false, principalAllowed: false), .sendGSSContinue([9]))
        XCTAssertEqual(a.receivePassword([4]), .acceptGSSToken([4]))
        XCTAssertEqual(a.gssStep(output: [], complete: true, principalAllowed: true), .succeeded)
        XCTAssertTrue(a.isAuthenticated)
    }

    func testRefusals() {
        let failed = ClientAuthAction.failed(message: "GSSAPI authentication failed for user \"alice\"")
        var refusedToken = authenticator()
        _ = refusedToken.start()
        _ = refusedToken.receivePassword([1])
        XCTAssertEqual(refusedToken.gssStep(output: nil, complete: false, principalAllowed: false), failed)
        var wrongName = authenticator()
        _ = wrongName.start()
        _ = wrongName.receivePassword([1])
        XCTAssertEqual(wrongName.gssStep(output: [], complete: true, principalAllowed: false), failed)
        XCTAssertFalse(wrongName.isAuthenticated)
        var empty = authenticator()
        _ = empty.start()
        XCTAssertEqual(empty.receivePassword([]), failed)
        var stuck = authenticator()
        _ = stuck.start()
        _ = stuck.receivePassword([1])
        XCTAssertEqual(stuck.gssStep(output: [], complete: false, principalAllowed: false), failed, "no token to go on with")
        var early = authenticator()
        XCTAssertEqual(early.gssStep(output: [], complete: true, principalAllowed: true),
                       .failed(message: ClientAuthenticator.unexpectedMessage))
    }

    func testPrincipalNames() {
        XCTAssertEqual(GSSPrincipal.systemUser("alice@EXAMPLE.NET", includeRealm: true, requiredRealm: nil), .success("alice@EXAMPLE.NET"))
        XCTAssertEqual(GSSPrincipal.systemUser("alice@EXAMPLE.NET", includeRealm: false, requiredRealm: "EXAMPLE.NET"), .success("alice"))
        XCTAssertEqual(GSSPrincipal.systemUser("alice@OTHER.NET", includeRealm: false, requiredRealm: "EXAMPLE.NET"),
                       .failure(.init(reason: "GSSAPI realm (OTHER.NET) and configured realm (EXAMPLE.NET) don't match")))
        XCTAssertEqual(GSSPrincipal.systemUser("alice", includeRealm: false, requiredRealm: "EXAMPLE.NET"),
                       .failure(.init(reason: "GSSAPI did not return realm but realm matching was requested")))
        XCTAssertEqual(GSSPrincipal.systemUser("alice", includeRealm: true, requiredRealm: nil), .success("alice"))
    }

    func testHBARules() throws {
        let include: (String) throws(ConfigError) -> String = { _ throws(ConfigError) in "" }
        let hba = try HBAFile.parse(text: "host all all 127.0.0.1/32 gss include_realm=0 krb_realm=EXAMPLE.NET\n",
                                    file: "hba.conf", includeFile: include)
        XCTAssertEqual(hba.rules[0].method, .gss)
        XCTAssertEqual(hba.rules[0].options["include_realm"], "0")
        XCTAssertEqual(hba.rules[0].options["krb_realm"], "EXAMPLE.NET")
        XCTAssertThrowsError(try HBAFile.parse(text: "local all all gss\n", file: "hba.conf", includeFile: include))
        XCTAssertThrowsError(try HBAFile.parse(text: "host all all all gss include_realm=yes\n", file: "hba.conf", includeFile: include))
        XCTAssertThrowsError(try HBAFile.parse(text: "host all all all md5 krb_realm=X\n", file: "hba.conf", includeFile: include))
    }
}
