import XCTest
@testable import PgmuxCore

final class AuthenticatorTests: XCTestCase {
    let cache = SCRAMKeyCache()
    lazy var scramSecret: String = cache.keys(password: bytes("pw1"), salt: Array(repeating: 3, count: 16),
                                              iterations: 512)!.secret.encoded
    let md5Secret = MD5Password.secret(password: "pw1", user: "alice")

    func login(method: ClientAuthMethod, stored: String?, password: String?, keys: SCRAMPassThroughKeys? = nil,
               file: StaticString = #filePath, line: UInt = #line) -> (LoginOutcome, ClientAuthenticator) {
        var verifier = ClientAuthenticator(method: method, user: "alice", storedSecret: stored, keyCache: cache,
                                           scramIterations: 256)
        var prover = ServerAuthenticator(user: "alice", password: password, passThroughKeys: keys, keyCache: cache)
        let outcome = runLogin(verifier: &verifier, prover: &prover, file: file, line: line)
        return (outcome, verifier)
    }

    func testPlainMethodAgainstEveryStoredForm() {
        for stored in ["pw1", md5Secret, scramSecret] {
            XCTAssertEqual(login(method: .plain, stored: stored, password: "pw1").0, .bothAuthenticated, stored)
            XCTAssertEqual(login(method: .plain, stored: stored, password: "pw2").0,
                           .clientSideFailed("password authentication failed"), stored)
        }
        XCTAssertEqual(login(method: .plain, stored: nil, password: "pw1").0,
                       .clientSideFailed("password authentication failed"))
        XCTAssertEqual(login(method: .plain, stored: "", password: "x").0,
                       .clientSideFailed("password authentication failed"))
    }

    func testMD5Method() {
        for stored in ["pw1", md5Secret] {
            XCTAssertEqual(login(method: .md5, stored: stored, password: "pw1").0, .bothAuthenticated)
            // the prover may itself only know the md5 secret
            XCTAssertEqual(login(method: .md5, stored: stored, password: md5Secret).0, .bothAuthenticated)
            XCTAssertEqual(login(method: .md5, stored: stored, password: "nope").0,
                           .clientSideFailed("password authentication failed"))
        }
        // unknown user: same challenge, same failure text
        XCTAssertEqual(login(method: .md5, stored: nil, password: "pw1").0,
                       .clientSideFailed("password authentication failed"))
    }

    func testMD5SwitchesToSCRAMForSCRAMSecret() {
        var v = ClientAuthenticator(method: .md5, user: "alice", storedSecret: scramSecret, keyCache: cache)
        XCTAssertEqual(v.method, .scramSHA256)
        XCTAssertEqual(v.startSync(), .sendAuthenticationSASL(mechanisms: ["SCRAM-SHA-256"]))
        let (outcome, verifier) = login(method: .md5, stored: scramSecret, password: "pw1")
        XCTAssertEqual(outcome, .bothAuthenticated)
        XCTAssertNotNil(verifier.passThroughKeys)
    }

    func testSCRAMMethod() {
        // ad-hoc verifier from a plain password: no pass-through keys exposed
        let (ok, v1) = login(method: .scramSHA256, stored: "pw1", password: "pw1")
        XCTAssertEqual(ok, .bothAuthenticated)
        XCTAssertNil(v1.passThroughKeys)
        let (ok2, v2) = login(method: .scramSHA256, stored: scramSecret, password: "pw1")
        XCTAssertEqual(ok2, .bothAuthenticated)
        XCTAssertNotNil(v2.passThroughKeys)
        XCTAssertEqual(login(method: .scramSHA256, stored: scramSecret, password: "pw2").0,
                       .clientSideFailed("SASL authentication failed"))
        XCTAssertEqual(login(method: .scramSHA256, stored: "pw1", password: "pw2").0,
                       .clientSideFailed("SASL authentication failed"))
        // unknown user, md5 secret, broken SCRAM secret: mock exchange, same failure
        for stored in [nil, md5Secret, "SCRAM-SHA-256$bogus", ""] as [String?] {
            let (out, v) = login(method: .scramSHA256, stored: stored, password: "pw1")
            XCTAssertEqual(out, .clientSideFailed("SASL authentication failed"), String(describing: stored))
            XCTAssertFalse(v.isAuthenticated)
            XCTAssertNil(v.passThroughKeys)
        }
    }

    func testSCRAMPassThroughEndToEnd() throws {
        // 1. a client logs in to the pooler, which only has the SCRAM verifier
        let (outcome, verifier) = login(method: .scramSHA256, stored: scramSecret, password: "pw1")
        XCTAssertEqual(outcome, .bothAuthenticated)
        let keys = try XCTUnwrap(verifier.passThroughKeys)
        // 2. the pooler logs in to "PostgreSQL" (same verifier) with the stored secret + keys
        XCTAssertEqual(login(method: .scramSHA256, stored: scramSecret, password: scramSecret, keys: keys).0,
                       .bothAuthenticated)
        // without keys the pooler cannot log in
        guard case .serverSideFailed(let msg) = login(method: .scramSHA256, stored: scramSecret,
                                                      password: scramSecret).0 else {
            return XCTFail("expected server-side failure")
        }
        XCTAssertTrue(msg.contains("SCRAM keys"), msg)
        // an md5 secret only works with md5 servers; a SCRAM secret not with md5/cleartext servers
        XCTAssertEqual(login(method: .md5, stored: "pw1", password: scramSecret, keys: keys).0,
                       .serverSideFailed("cannot do MD5 authentication: wrong password type"))
        XCTAssertEqual(login(method: .plain, stored: "pw1", password: md5Secret).0,
                       .serverSideFailed("cannot do cleartext authentication with a hashed password"))
        XCTAssertEqual(login(method: .scramSHA256, stored: "pw1", password: md5Secret).0,
                       .serverSideFailed("cannot do SCRAM authentication: wrong password type"))
    }

    func testTrust() {
        var known = ClientAuthenticator(method: .trust, user: "alice", storedSecret: "", keyCache: cache)
        XCTAssertEqual(known.startSync(), .succeeded)
        XCTAssertTrue(known.isAuthenticated)
        var unknown = ClientAuthenticator(method: .trust, user: "ghost", storedSecret: nil, keyCache: cache)
        XCTAssertEqual(unknown.startSync(), .failed(message: "\"trust\" authentication failed"))
        XCTAssertFalse(unknown.isAuthenticated)
    }

    func testPasswordPacketParsing() {
        func run(_ method: ClientAuthMethod, _ payload: [UInt8]) -> ClientAuthAction {
            var v = ClientAuthenticator(method: method, user: "alice", storedSecret: "pw1", keyCache: cache)
            _ = v.startSync()
            return v.receivePasswordSync(payload)
        }
        XCTAssertEqual(run(.plain, bytes("pw1") + [0]), .succeeded)
        XCTAssertEqual(run(.plain, [0]), .failed(message: "empty password returned by client"))
        XCTAssertEqual(run(.md5, [0]), .failed(message: "empty password returned by client"))
        XCTAssertEqual(run(.plain, bytes("pw1")), .failed(message: "password authentication failed"))
        XCTAssertEqual(run(.plain, bytes("pw1") + [0, 0]), .failed(message: "password authentication failed"))
        XCTAssertEqual(run(.plain, []), .failed(message: "password authentication failed"))
        XCTAssertEqual(run(.plain, bytes("pw1\u{0}x") + [0]), .failed(message: "password authentication failed"))

        // out of order
        var v = ClientAuthenticator(method: .plain, user: "alice", storedSecret: "pw1", keyCache: cache)
        XCTAssertEqual(v.receivePasswordSync(bytes("pw1") + [0]), .failed(message: "unexpected password packet"))
        var done = ClientAuthenticator(method: .plain, user: "alice", storedSecret: "pw1", keyCache: cache)
        _ = done.startSync()
        XCTAssertEqual(done.receivePasswordSync(bytes("pw1") + [0]), .succeeded)
        XCTAssertEqual(done.receivePasswordSync(bytes("pw1") + [0]), .failed(message: "unexpected password packet"))
        XCTAssertFalse(done.isAuthenticated)
    }

    func testSASLInitialResponseParsing() {
        let first = bytes("n,,n=,r=abcdef")
        let valid = bytes("SCRAM-SHA-256") + [0] + int32BE(Int32(first.count)) + first
        func run(_ payload: [UInt8]) -> ClientAuthAction {
            var v = ClientAuthenticator(method: .scramSHA256, user: "alice", storedSecret: scramSecret, keyCache: cache)
            _ = v.startSync()
            return v.receivePasswordSync(payload)
        }
        guard case .sendSASLContinue = run(valid) else { return XCTFail("valid SASLInitialResponse refused") }
        for n in 0..<valid.count {
            guard case .failed = run(Array(valid.prefix(n))) else { return XCTFail("prefix \(n) accepted") }
        }
        XCTAssertEqual(run(bytes("SCRAM-SHA-256-PLUS") + [0] + int32BE(Int32(first.count)) + first),
                       .failed(message: "client selected an invalid SASL authentication mechanism"))
        XCTAssertEqual(run(bytes("SCRAM-SHA-256") + [0] + int32BE(-1)), .failed(message: "SASL authentication failed"))
        XCTAssertEqual(run(bytes("SCRAM-SHA-256") + [0] + int32BE(-2) + first), .failed(message: "SASL authentication failed"))
        XCTAssertEqual(run(bytes("SCRAM-SHA-256") + [0] + int32BE(Int32.max) + first),
                       .failed(message: "SASL authentication failed"))
        XCTAssertEqual(run(valid + [0]), .failed(message: "SASL authentication failed"))
        XCTAssertEqual(run(bytes("SCRAM-SHA-256") + [0] + int32BE(Int32(first.count - 1)) + first),
                       .failed(message: "SASL authentication failed"))
        let p = bytes("p=tls-server-end-point,,n=,r=abc")
        XCTAssertEqual(run(bytes("SCRAM-SHA-256") + [0] + int32BE(Int32(p.count)) + p),
                       .failed(message: "SASL authentication failed"))
        // random garbage
        var rng = SplitMix64(state: 7)
        for _ in 0..<500 {
            let tail = (0..<Int.random(in: 0...24, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            _ = run(bytes("SCRAM-SHA-256") + [0] + tail)
            _ = run(tail)
        }
    }

    func testSASLResponseTruncationsFail() throws {
        // drive manually to get a valid client-final, then truncate it
        var verifier = ClientAuthenticator(method: .scramSHA256, user: "alice", storedSecret: scramSecret, keyCache: cache)
        var prover = ServerAuthenticator(user: "alice", password: "pw1", keyCache: cache)
        let a1 = prover.receiveSync(authRequestBody(verifier.startSync())!)
        let a2 = verifier.receivePasswordSync(passwordBody(a1)!)
        let a3 = prover.receiveSync(authRequestBody(a2)!)
        guard case .sendSASLResponse(let final) = a3 else { return XCTFail("no SASLResponse") }
        for n in 0..<final.count {
            var v = verifier
            XCTAssertEqual(v.receivePasswordSync(Array(final.prefix(n))), .failed(message: "SASL authentication failed"))
            XCTAssertFalse(v.isAuthenticated)
        }
        var v = verifier
        guard case .sendSASLFinal(let serverFinal) = v.receivePasswordSync(final) else { return XCTFail("valid final refused") }
        XCTAssertTrue(v.isAuthenticated)
        // the prover verifies the server signature; a tampered one is refused
        var tampered = serverFinal
        tampered[tampered.count - 3] ^= 1
        var p1 = prover
        guard case .failed = p1.receiveSync(int32BE(12) + tampered) else { return XCTFail("tampered signature accepted") }
        var p2 = prover
        XCTAssertEqual(p2.receiveSync(int32BE(12) + serverFinal), .none)
        XCTAssertEqual(p2.receiveSync(int32BE(0)), .authenticated)
    }

    func testServerAuthenticatorEdgeCases() {
        func fresh(_ password: String? = "pw1") -> ServerAuthenticator {
            ServerAuthenticator(user: "alice", password: password, keyCache: cache)
        }
        var a = fresh()
        XCTAssertEqual(a.receiveSync(int32BE(0)), .authenticated)
        var b = fresh(nil)
        XCTAssertEqual(b.receiveSync(int32BE(3)), .failed("no password for server login"))
        var b2 = fresh("")
        XCTAssertEqual(b2.receiveSync(int32BE(5) + [1, 2, 3, 4]), .failed("no password for server login"))
        var b3 = fresh(nil)
        XCTAssertEqual(b3.receiveSync(int32BE(10) + bytes("SCRAM-SHA-256") + [0, 0]), .failed("no password for server login"))
        var c = fresh()
        XCTAssertEqual(c.receiveSync(int32BE(3)), .sendPassword("pw1"))
        var d = fresh()
        XCTAssertEqual(d.receiveSync(int32BE(5) + [1, 2, 3, 4]),
                       .sendPassword(MD5Password.response(secret: MD5Password.secret(password: "pw1", user: "alice"),
                                                          salt: [1, 2, 3, 4])))
        var e = fresh()
        XCTAssertEqual(e.receiveSync(int32BE(5) + [1, 2, 3]), .failed("malformed MD5 authentication request"))
        var f = fresh()
        XCTAssertEqual(f.receiveSync(int32BE(7)), .failed("unsupported authentication method: 7"))
        var g = fresh()
        XCTAssertEqual(g.receiveSync([0, 0]), .failed("malformed authentication request"))
        var h = fresh()
        XCTAssertEqual(h.receiveSync(int32BE(10) + bytes("SCRAM-SHA-256-PLUS") + [0, 0]),
                       .failed("none of the server's SASL authentication mechanisms are supported"))
        var i = fresh()
        XCTAssertEqual(i.receiveSync(int32BE(10) + bytes("SCRAM-SHA-256")), .failed("malformed SASL mechanism list"))
        var j = fresh()
        guard case .sendSASLInitial(let mech, let data) = j.receiveSync(int32BE(10) + bytes("SCRAM-SHA-256-PLUS") + [0]
                                                                   + bytes("SCRAM-SHA-256") + [0, 0]) else {
            return XCTFail("SASL not started")
        }
        XCTAssertEqual(mech, "SCRAM-SHA-256")
        XCTAssertTrue(text(data).hasPrefix("n,,n=,r="))
        // AuthenticationOk before the SCRAM exchange completed: refused (no mutual auth skipping)
        var k = j
        XCTAssertEqual(k.receiveSync(int32BE(0)), .failed("server did not complete SCRAM authentication"))
        XCTAssertEqual(k.receiveSync(int32BE(0)), .failed("unexpected authentication request"))
        var l = fresh()
        XCTAssertEqual(l.receiveSync(int32BE(11) + bytes("r=x,s=AAAA,i=1")), .failed("unexpected SASLContinue message"))
        var m = fresh()
        XCTAssertEqual(m.receiveSync(int32BE(12) + bytes("v=AAAA")), .failed("unexpected SASLFinal message"))
        var n = j
        guard case .failed = n.receiveSync(int32BE(11) + bytes("r=zzz,s=AAAA,i=1")) else { return XCTFail("bad nonce accepted") }
        var o = j
        guard case .failed(let msg) = o.receiveSync(int32BE(11) + bytes("e=nope")) else { return XCTFail() }
        XCTAssertTrue(msg.contains("nope"))
        // garbage bodies never trap
        var rng = SplitMix64(state: 9)
        for _ in 0..<1000 {
            let code = Int32.random(in: -1...13, using: &rng)
            let tail = (0..<Int.random(in: 0...20, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            var x = j
            _ = x.receiveSync(int32BE(code) + tail)
            var y = fresh()
            _ = y.receiveSync(int32BE(code) + tail)
        }
    }
}
