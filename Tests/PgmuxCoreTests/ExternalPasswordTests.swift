import XCTest
@testable import PgmuxCore

/// auth_type pam / ldap: the client's cleartext password goes out to be checked, the verdict
/// comes back; PgBouncer's texts on failure.
final class ExternalPasswordTests: XCTestCase {
    func authenticator(_ method: ClientAuthMethod) -> ClientAuthenticator {
        ClientAuthenticator(method: method, user: "alice", storedSecret: nil, keyCache: SCRAMKeyCache())
    }

    func testPasswordIsHandedOutAndTheVerdictDecides() {
        for (method, failure) in [(ClientAuthMethod.pam, "PAM authentication failed"), (.ldap, "LDAP authentication failed")] {
            var ok = authenticator(method)
            XCTAssertEqual(ok.start(), .sendAuthenticationCleartext)
            XCTAssertEqual(ok.receivePassword(bytes("s3cret") + [0]), .verifyExternally(password: bytes("s3cret")))
            XCTAssertEqual(ok.externalVerdict(true), .succeeded)
            XCTAssertTrue(ok.isAuthenticated)
            XCTAssertEqual(ok.verifiedPassword, bytes("s3cret"))

            var refused = authenticator(method)
            _ = refused.start()
            _ = refused.receivePassword(bytes("wrong") + [0])
            XCTAssertEqual(refused.externalVerdict(false), .failed(message: failure))
            XCTAssertFalse(refused.isAuthenticated)
            XCTAssertNil(refused.verifiedPassword)
        }
    }

    func testEmptyMalformedAndOutOfOrderPasswords() {
        var empty = authenticator(.pam)
        _ = empty.start()
        XCTAssertEqual(empty.receivePassword([0]), .failed(message: ClientAuthenticator.emptyPassword))
        var unterminated = authenticator(.ldap)
        _ = unterminated.start()
        XCTAssertEqual(unterminated.receivePassword(bytes("pw")), .failed(message: "LDAP authentication failed"))
        var early = authenticator(.pam)
        XCTAssertEqual(early.externalVerdict(true), .failed(message: ClientAuthenticator.unexpectedMessage))
        XCTAssertFalse(early.isAuthenticated)
        var twice = authenticator(.pam)
        _ = twice.start()
        _ = twice.receivePassword(bytes("pw") + [0])
        XCTAssertEqual(twice.receivePassword(bytes("pw") + [0]), .failed(message: ClientAuthenticator.unexpectedMessage))
        XCTAssertEqual(twice.externalVerdict(true), .failed(message: ClientAuthenticator.unexpectedMessage))
    }
}
