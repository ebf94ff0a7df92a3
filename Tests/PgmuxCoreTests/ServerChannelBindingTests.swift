import XCTest
@testable import PgmuxCore

/// server_channel_binding: pgmux's SCRAM login to PostgreSQL, bound to the TLS session or not,
/// checked against pgmux's own SCRAM verifier (which checks PLUS the way PostgreSQL does).
final class ServerChannelBindingTests: XCTestCase {
    let cache = SCRAMKeyCache()
    let endPoint = Array(repeating: UInt8(7), count: 32)

    func login(serverBinding: [UInt8]?, pgmuxBinding: [UInt8]?, mode: ServerChannelBinding,
               password: String = "pw1") -> (LoginOutcome, [UInt8]) {
        var verifier = ClientAuthenticator(method: .scramSHA256, user: "alice", storedSecret: "pw1", keyCache: cache,
                                           scramIterations: 256, channelBinding: serverBinding)
        var prover = ServerAuthenticator(user: "alice", password: password, keyCache: cache, tlsEndPoint: pgmuxBinding,
                                         channelBinding: mode)
        // The first message pgmux sends, to see which gs2 header it chose.
        var probe = prover, probeVerifier = verifier
        var first: [UInt8] = []
        if let body = authRequestBody(probeVerifier.startSync()),
           case .sendSASLInitial(let m, let data) = probe.receiveSync(body) {
            first = Array(m.utf8) + [0] + data
        }
        return (runLogin(verifier: &verifier, prover: &prover), first)
    }

    func testPreferBindsWhenTheServerOffersPlus() {
        let (outcome, first) = login(serverBinding: endPoint, pgmuxBinding: endPoint, mode: .prefer)
        XCTAssertEqual(outcome, .bothAuthenticated)
        XCTAssertTrue(first.starts(with: Array("SCRAM-SHA-256-PLUS\0p=tls-server-end-point,,".utf8)),
                      String(decoding: first, as: UTF8.self))
        // Another certificate than the one the server holds (a man in the middle): refused.
        let mitm = login(serverBinding: endPoint, pgmuxBinding: Array(repeating: 8, count: 32), mode: .prefer).0
        XCTAssertNotEqual(mitm, .bothAuthenticated)
        XCTAssertEqual(login(serverBinding: endPoint, pgmuxBinding: endPoint, mode: .require, password: "nope").0,
                       .clientSideFailed("SASL authentication failed"))
    }

    func testPreferWithoutPlusSaysItCouldBind() {
        let (outcome, first) = login(serverBinding: nil, pgmuxBinding: endPoint, mode: .prefer)
        XCTAssertEqual(outcome, .bothAuthenticated)
        XCTAssertTrue(first.starts(with: Array("SCRAM-SHA-256\0y,,".utf8)), String(decoding: first, as: UTF8.self))
        let (plain, plainFirst) = login(serverBinding: nil, pgmuxBinding: nil, mode: .prefer)
        XCTAssertEqual(plain, .bothAuthenticated)
        XCTAssertTrue(plainFirst.starts(with: Array("SCRAM-SHA-256\0n,,".utf8)))
    }

    func testDisableNeverBinds() {
        let (outcome, first) = login(serverBinding: endPoint, pgmuxBinding: endPoint, mode: .disable)
        XCTAssertEqual(outcome, .bothAuthenticated)
        XCTAssertTrue(first.starts(with: Array("SCRAM-SHA-256\0n,,".utf8)), String(decoding: first, as: UTF8.self))
    }

    func testRequireRefusesEveryUnboundLogin() {
        XCTAssertEqual(login(serverBinding: endPoint, pgmuxBinding: endPoint, mode: .require).0, .bothAuthenticated)
        XCTAssertEqual(login(serverBinding: nil, pgmuxBinding: endPoint, mode: .require).0,
                       .serverSideFailed("channel binding is required, but server did not offer an authentication "
                                         + "method that supports channel binding"))
        XCTAssertEqual(login(serverBinding: nil, pgmuxBinding: nil, mode: .require).0,
                       .serverSideFailed("channel binding required, but SSL not in use"))
        // trust (AuthenticationOk at once), cleartext and md5 requests: nothing is sent.
        for request: [UInt8] in [[0, 0, 0, 0], [0, 0, 0, 3], [0, 0, 0, 5, 1, 2, 3, 4]] {
            var prover = ServerAuthenticator(user: "alice", password: "pw1", keyCache: cache, tlsEndPoint: endPoint,
                                             channelBinding: .require)
            guard case .failed(let why) = prover.receive(request) else { return XCTFail("\(request) accepted") }
            XCTAssertTrue(why.hasPrefix("channel binding required"), why)
        }
        var trusting = ServerAuthenticator(user: "alice", password: "pw1", keyCache: cache, tlsEndPoint: endPoint,
                                           channelBinding: .prefer)
        XCTAssertEqual(trusting.receive([0, 0, 0, 0]), .authenticated, "prefer accepts a server that trusts")
    }
}
