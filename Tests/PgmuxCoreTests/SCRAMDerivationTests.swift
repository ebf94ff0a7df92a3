import PgmuxCore
import XCTest

/// PBKDF2 is never run by the exchanges: on a cache miss they return the derivation to run, and
/// take its result as an event (issue 12, bug 4). A server asking for more iterations than the
/// cap fails the login with a clear message.
final class SCRAMDerivationTests: XCTestCase {
    private func saslContinue(_ a: ServerAuthAction, iterations: Int, salt: [UInt8] = Array(repeating: 9, count: 16)) -> [UInt8] {
        guard case .sendSASLInitial(_, let data) = a else { XCTFail("\(a)"); return [] }
        let nonce = String(decoding: data, as: UTF8.self).components(separatedBy: "r=").last ?? ""
        return int32BE(11) + bytes("r=\(nonce)srv,s=\(Crypto.base64Encode(salt)),i=\(iterations)")
    }

    func testServerLoginAsksForTheDerivationInsteadOfRunningIt() {
        let cache = SCRAMKeyCache()
        var auth = ServerAuthenticator(user: "u", password: "pw", keyCache: cache)
        let first = auth.receive(int32BE(10) + bytes("SCRAM-SHA-256") + [0, 0])
        let action = auth.receive(saslContinue(first, iterations: 50_000))
        guard case .deriveKeys(let request) = action else { return XCTFail("\(action)") }
        XCTAssertEqual(request.iterations, 50_000)
        XCTAssertEqual(request.password, bytes("pw"))
        XCTAssertEqual(cache.derivations, 0, "nothing derived inside the exchange")
        // Messages while the keys are being derived are out of order.
        var early = auth
        XCTAssertEqual(early.receive(int32BE(0)), .failed("server did not complete SCRAM authentication"))
        guard case .sendSASLResponse(let final) = auth.keysDerived(request.run()) else { return XCTFail() }
        XCTAssertTrue(String(decoding: final, as: UTF8.self).contains(",p="))
        XCTAssertEqual(cache.derivations, 1)
        // The next login with the same salt finds the keys cached: no derivation asked.
        var again = ServerAuthenticator(user: "u", password: "pw", keyCache: cache)
        let first2 = again.receive(int32BE(10) + bytes("SCRAM-SHA-256") + [0, 0])
        guard case .sendSASLResponse = again.receive(saslContinue(first2, iterations: 50_000)) else { return XCTFail() }
    }

    func testServerAskingForTooManyIterationsFailsTheLogin() {
        var auth = ServerAuthenticator(user: "u", password: "pw", keyCache: SCRAMKeyCache())
        let first = auth.receive(int32BE(10) + bytes("SCRAM-SHA-256") + [0, 0])
        XCTAssertEqual(auth.receive(saslContinue(first, iterations: 10_000_000)),
                       .failed("server asked for 10000000 SCRAM iterations, more than pgmux accepts (100000)"))
        var atCap = ServerAuthenticator(user: "u", password: "pw", keyCache: SCRAMKeyCache())
        let f2 = atCap.receive(int32BE(10) + bytes("SCRAM-SHA-256") + [0, 0])
        guard case .deriveKeys = atCap.receive(saslContinue(f2, iterations: SCRAMSecret.maxIterations)) else { return XCTFail() }
    }

    func testClientLoginDerivesTheAdHocVerifierOffTheExchange() {
        let cache = SCRAMKeyCache()
        var v = ClientAuthenticator(method: .scramSHA256, user: "alice", storedSecret: "plainpw", keyCache: cache,
                                    scramIterations: 64)
        guard case .deriveKeys(let request) = v.start() else { return XCTFail() }
        XCTAssertTrue(request.adHoc)
        XCTAssertEqual(cache.derivations, 0)
        XCTAssertEqual(v.keysDerived(request.run()), .sendAuthenticationSASL(mechanisms: ["SCRAM-SHA-256"]))
        // Cached now: the next client of this password starts the exchange at once, same salt.
        var w = ClientAuthenticator(method: .scramSHA256, user: "alice", storedSecret: "plainpw", keyCache: cache,
                                    scramIterations: 64)
        XCTAssertEqual(w.start(), .sendAuthenticationSASL(mechanisms: ["SCRAM-SHA-256"]))
        var z = ClientAuthenticator(method: .scramSHA256, user: "alice", storedSecret: "plainpw", keyCache: cache,
                                    scramIterations: 64)
        var prover = ServerAuthenticator(user: "alice", password: "plainpw", keyCache: cache)
        XCTAssertEqual(runLogin(verifier: &z, prover: &prover), .bothAuthenticated)
    }

    func testCleartextPasswordAgainstAVerifierIsCheckedByTheWorker() {
        let cache = SCRAMKeyCache()
        let secret = SCRAMKeys.derive(password: bytes("pw1"), salt: [4, 4, 4, 4], iterations: 32)!.secret.encoded
        for (password, expected) in [("pw1", ClientAuthAction.succeeded), ("nope", .failed(message: "password authentication failed"))] {
            var v = ClientAuthenticator(method: .plain, user: "alice", storedSecret: secret, keyCache: cache)
            XCTAssertEqual(v.start(), .sendAuthenticationCleartext)
            guard case .deriveKeys(let request) = v.receivePassword(bytes(password) + [0]) else { return XCTFail() }
            XCTAssertEqual(v.receivePassword(bytes(password) + [0]), .failed(message: "unexpected password packet"),
                           "no second password while the first is checked")
            var u = ClientAuthenticator(method: .plain, user: "alice", storedSecret: secret, keyCache: cache)
            _ = u.start()
            guard case .deriveKeys = u.receivePassword(bytes(password) + [0]) else { return XCTFail() }
            XCTAssertEqual(u.keysDerived(request.run()), expected)
        }
        // A derivation that failed is a failed login, not a hang.
        var x = ClientAuthenticator(method: .plain, user: "alice", storedSecret: secret, keyCache: SCRAMKeyCache())
        _ = x.start()
        _ = x.receivePassword(bytes("pw1") + [0])
        XCTAssertEqual(x.keysDerived(nil), .failed(message: "password authentication failed"))
    }
}
