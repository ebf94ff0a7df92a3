import XCTest
@testable import PgmuxCore

/// RFC 7677 §3 example: user "user", password "pencil".
enum RFC7677 {
    static let clientNonce = "rOprNGfwEbeRWgbNEkqO"
    static let serverNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    static let salt = "W22ZaJ0SNY7soEsUEjb6gQ=="
    static let clientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    static let serverFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    static let proof = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    static let clientFinal = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=" + proof
    static let serverSignature = "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    static let serverFinal = "v=" + serverSignature
}

final class SCRAMVectorTests: XCTestCase {
    func rfcKeys(_ cache: SCRAMKeyCache) -> SCRAMKeys {
        cache.keys(password: bytes("pencil"), salt: Crypto.base64Decode(RFC7677.salt)!, iterations: 4096)!
    }

    func testClientSideProducesRFCProofAndAcceptsRFCSignature() throws {
        let cache = SCRAMKeyCache()
        var client = SCRAMClientExchange(password: "pencil", cache: cache, nonceSource: { bytes(RFC7677.clientNonce) })
        client.username = bytes("user")
        XCTAssertEqual(text(client.clientFirstMessage()), RFC7677.clientFirst)
        let final = try unwrapSuccess(client.serverFirst(bytes(RFC7677.serverFirst)))
        XCTAssertEqual(text(final), RFC7677.clientFinal)
        XCTAssertNoThrow(try client.serverFinal(bytes(RFC7677.serverFinal)).get())
        XCTAssertEqual(failure(client.serverFinal(bytes("v=" + RFC7677.proof))), .serverSignatureMismatch)
    }

    func testServerSideAcceptsRFCProofAndProducesRFCSignature() throws {
        let cache = SCRAMKeyCache()
        let keys = rfcKeys(cache)
        var server = SCRAMServerExchange(secret: keys.secret, nonceSource: { bytes(RFC7677.serverNonce) })
        XCTAssertEqual(text(try unwrapSuccess(server.clientFirst(bytes(RFC7677.clientFirst)))), RFC7677.serverFirst)
        XCTAssertEqual(text(try unwrapSuccess(server.clientFinal(bytes(RFC7677.clientFinal)))), RFC7677.serverFinal)
        XCTAssertEqual(server.clientKey, keys.clientKey)
        XCTAssertEqual(server.serverKey, keys.serverKey)
        XCTAssertTrue(server.isSucceeded)
        // a second client-final is out of order
        XCTAssertEqual(failure(server.clientFinal(bytes(RFC7677.clientFinal))), .outOfOrder)
    }

    func testRFCProofWithWrongPasswordFails() throws {
        let keys = SCRAMKeys.derive(password: bytes("pencil2"), salt: Crypto.base64Decode(RFC7677.salt)!, iterations: 4096)!
        var server = SCRAMServerExchange(secret: keys.secret, nonceSource: { bytes(RFC7677.serverNonce) })
        _ = try unwrapSuccess(server.clientFirst(bytes(RFC7677.clientFirst)))
        XCTAssertEqual(failure(server.clientFinal(bytes(RFC7677.clientFinal))), .authenticationFailed)
        XCTAssertNil(server.clientKey)
    }
}

final class SCRAMSecretTests: XCTestCase {
    let salt = Crypto.base64Encode(Array(repeating: 7, count: 16))
    let key = Crypto.base64Encode(Array(repeating: 1, count: 32))
    let key31 = Crypto.base64Encode(Array(repeating: 1, count: 31))

    func testParseValidAndRoundTrip() throws {
        let s = "SCRAM-SHA-256$4096:\(salt)$\(key):\(key)"
        let parsed = try XCTUnwrap(SCRAMSecret(parsing: s))
        XCTAssertEqual(parsed.iterations, 4096)
        XCTAssertEqual(parsed.salt, Array(repeating: 7, count: 16))
        XCTAssertEqual(parsed.encoded, s)
        XCTAssertTrue(SCRAMSecret.isSCRAMSecret(s))
        let derived = SCRAMKeys.derive(password: bytes("pw"), salt: [1, 2, 3], iterations: 10)!
        XCTAssertEqual(SCRAMSecret(parsing: derived.secret.encoded), derived.secret)
        XCTAssertNotNil(SCRAMSecret(parsing: "SCRAM-SHA-256$100000:\(salt)$\(key):\(key)"))
        XCTAssertNil(SCRAMSecret(parsing: "SCRAM-SHA-256$100001:\(salt)$\(key):\(key)"), "above the iteration cap")
    }

    func testParseRejectsMalformed() {
        let cases = [
            "", "SCRAM-SHA-256", "SCRAM-SHA-256$", "SCRAM-SHA-256$$",
            "SCRAM-SHA-1$4096:\(salt)$\(key):\(key)",
            "scram-sha-256$4096:\(salt)$\(key):\(key)",
            "SCRAM-SHA-256$4096:\(salt)$\(key):\(key)$",
            "SCRAM-SHA-256$4096:\(salt)$\(key)",
            "SCRAM-SHA-256$4096:\(salt)$\(key):\(key):\(key)",
            "SCRAM-SHA-256$4096$\(key):\(key)",
            "SCRAM-SHA-256$4096:\(salt):x$\(key):\(key)",
            "SCRAM-SHA-256$0:\(salt)$\(key):\(key)",
            "SCRAM-SHA-256$-1:\(salt)$\(key):\(key)",
            "SCRAM-SHA-256$+4096:\(salt)$\(key):\(key)",
            "SCRAM-SHA-256$10000001:\(salt)$\(key):\(key)",
            "SCRAM-SHA-256$99999999999999999999999:\(salt)$\(key):\(key)",
            "SCRAM-SHA-256$4096x:\(salt)$\(key):\(key)",
            "SCRAM-SHA-256$ 4096:\(salt)$\(key):\(key)",
            "SCRAM-SHA-256$:\(salt)$\(key):\(key)",
            "SCRAM-SHA-256$4096:$\(key):\(key)",
            "SCRAM-SHA-256$4096:!!!!$\(key):\(key)",
            "SCRAM-SHA-256$4096:\(salt)$\(key31):\(key)",
            "SCRAM-SHA-256$4096:\(salt)$\(key):\(key31)",
            "SCRAM-SHA-256$4096:\(salt)$\(key):",
            "SCRAM-SHA-256$4096:\(salt)$\(key):\(key.dropLast())",
            "SCRAM-SHA-256$4096:\(salt)$\(key) :\(key)",
        ]
        for c in cases { XCTAssertNil(SCRAMSecret(parsing: c), "accepted \(c.debugDescription)") }
    }

    func testKeyCacheMemoizesAndEvicts() {
        let cache = SCRAMKeyCache(capacity: 2)
        let a1 = cache.keys(password: bytes("a"), salt: [1], iterations: 16)
        let a2 = cache.keys(password: bytes("a"), salt: [1], iterations: 16)
        XCTAssertEqual(a1, a2)
        XCTAssertEqual(cache.derivations, 1)
        _ = cache.keys(password: bytes("a"), salt: [2], iterations: 16)
        _ = cache.keys(password: bytes("a"), salt: [1], iterations: 17)
        XCTAssertEqual(cache.derivations, 3)
        XCTAssertEqual(cache.count, 2)
        _ = cache.keys(password: bytes("a"), salt: [1], iterations: 16)  // evicted (oldest) → derived again
        XCTAssertEqual(cache.derivations, 4)
        XCTAssertNil(cache.keys(password: bytes("a"), salt: [1], iterations: 0))
        XCTAssertNil(cache.keys(password: bytes("a"), salt: [], iterations: 16))
        XCTAssertNil(cache.keys(password: bytes("a"), salt: [1], iterations: SCRAMSecret.maxIterations + 1))
        // ad-hoc: same salt on reuse, one derivation
        let big = SCRAMKeyCache()
        let h1 = big.adHocKeys(password: bytes("pw"), iterations: 32)!
        let h2 = big.adHocKeys(password: bytes("pw"), iterations: 32)!
        XCTAssertEqual(h1, h2)
        XCTAssertEqual(big.derivations, 1)
        XCTAssertEqual(h1.salt.count, 16)
        XCTAssertNotEqual(big.adHocKeys(password: bytes("pw2"), iterations: 32)!.salt, h1.salt)
    }
}

final class SCRAMExchangeTests: XCTestCase {
    let cache = SCRAMKeyCache()
    lazy var secret: SCRAMSecret = cache.keys(password: bytes("s3cr3t"), salt: Array(repeating: 5, count: 16),
                                              iterations: 256)!.secret

    /// Runs client ↔ server; returns the server exchange after success.
    @discardableResult
    func roundTrip(client: inout SCRAMClientExchange, server: inout SCRAMServerExchange,
                   file: StaticString = #filePath, line: UInt = #line) throws -> SCRAMServerExchange {
        let sf = try unwrapSuccess(server.clientFirst(client.clientFirstMessage()), file: file, line: line)
        let cf = try unwrapSuccess(client.serverFirst(sf), file: file, line: line)
        let fin = try unwrapSuccess(server.clientFinal(cf), file: file, line: line)
        try client.serverFinal(fin).get()
        return server
    }

    func testRoundTripWithParsedSecret() throws {
        var client = SCRAMClientExchange(password: "s3cr3t", cache: cache)
        var server = SCRAMServerExchange(secret: SCRAMSecret(parsing: secret.encoded)!)
        try roundTrip(client: &client, server: &server)
        XCTAssertNotNil(server.clientKey)
        XCTAssertEqual(server.serverKey, secret.serverKey)
    }

    func testRoundTripWithPlainPasswordAdHocSecret() throws {
        let before = cache.derivations
        var server = try XCTUnwrap(SCRAMServerExchange(password: "plainpw", iterations: 128, cache: cache))
        XCTAssertTrue(server.isAdHoc)
        var client = SCRAMClientExchange(password: "plainpw", cache: cache)
        try roundTrip(client: &client, server: &server)
        // ad-hoc derivation + client derivation with the same salt (different cache slots) → at most 2
        XCTAssertLessThanOrEqual(cache.derivations - before, 2)
        // second login: no PBKDF2 at all
        let mid = cache.derivations
        var server2 = try XCTUnwrap(SCRAMServerExchange(password: "plainpw", iterations: 128, cache: cache))
        var client2 = SCRAMClientExchange(password: "plainpw", cache: cache)
        try roundTrip(client: &client2, server: &server2)
        XCTAssertEqual(cache.derivations, mid)
        XCTAssertNil(SCRAMServerExchange(password: "x", iterations: 0, cache: cache))
    }

    func testPassThroughKeysReusedForServerLogin() throws {
        var client = SCRAMClientExchange(password: "s3cr3t", cache: cache)
        var server = SCRAMServerExchange(secret: secret)
        try roundTrip(client: &client, server: &server)
        let keys = try XCTUnwrap(server.passThroughKeys)
        // "PostgreSQL" with the same verifier; the pooler logs in without the password
        var pooler = SCRAMClientExchange(passThrough: keys)
        var postgres = SCRAMServerExchange(secret: secret)
        try roundTrip(client: &pooler, server: &postgres)
        // keys without salt/iterations info also work (PgBouncer's assumption)
        var bare = SCRAMClientExchange(passThrough: SCRAMPassThroughKeys(clientKey: keys.clientKey, serverKey: keys.serverKey))
        var postgres2 = SCRAMServerExchange(secret: secret)
        try roundTrip(client: &bare, server: &postgres2)
    }

    func testPassThroughWithDifferentSaltFails() throws {
        var client = SCRAMClientExchange(password: "s3cr3t", cache: cache)
        var server = SCRAMServerExchange(secret: secret)
        try roundTrip(client: &client, server: &server)
        let keys = try XCTUnwrap(server.passThroughKeys)
        let otherSecret = cache.keys(password: bytes("s3cr3t"), salt: [1, 2, 3, 4], iterations: 256)!.secret
        // with salt info: refused before sending a proof
        var pooler = SCRAMClientExchange(passThrough: keys)
        var postgres = SCRAMServerExchange(secret: otherSecret)
        let sf = try unwrapSuccess(postgres.clientFirst(pooler.clientFirstMessage()))
        XCTAssertEqual(failure(pooler.serverFirst(sf)), .passThroughMismatch)
        // without salt info: the server rejects the proof
        var bare = SCRAMClientExchange(passThrough: SCRAMPassThroughKeys(clientKey: keys.clientKey, serverKey: keys.serverKey))
        var postgres2 = SCRAMServerExchange(secret: otherSecret)
        let sf2 = try unwrapSuccess(postgres2.clientFirst(bare.clientFirstMessage()))
        let cf2 = try unwrapSuccess(bare.serverFirst(sf2))
        XCTAssertEqual(failure(postgres2.clientFinal(cf2)), .authenticationFailed)
    }

    func testWrongPasswordFails() throws {
        var client = SCRAMClientExchange(password: "wrong", cache: cache)
        var server = SCRAMServerExchange(secret: secret)
        let sf = try unwrapSuccess(server.clientFirst(client.clientFirstMessage()))
        let cf = try unwrapSuccess(client.serverFirst(sf))
        XCTAssertEqual(failure(server.clientFinal(cf)), .authenticationFailed)
        XCTAssertNil(server.clientKey)
        XCTAssertNil(server.passThroughKeys)
    }

    func testMockExchangeAlwaysFails() throws {
        for password in ["", "s3cr3t", "anything"] {
            var server = SCRAMServerExchange.mock(user: "ghost")
            XCTAssertTrue(server.isMock)
            var client = SCRAMClientExchange(password: password, cache: cache)
            let sf = try unwrapSuccess(server.clientFirst(client.clientFirstMessage()))
            XCTAssertTrue(text(sf).contains(",s="))
            XCTAssertTrue(text(sf).hasSuffix(",i=4096"))
            let cf = try unwrapSuccess(client.serverFirst(sf))
            XCTAssertEqual(failure(server.clientFinal(cf)), .authenticationFailed)
        }
        // stable mock salt per user with a mock key
        let key = Crypto.randomBytes(32)
        func saltOf(_ user: String) throws -> String {
            var s = SCRAMServerExchange.mock(user: user, mockSaltKey: key)
            let sf = text(try unwrapSuccess(s.clientFirst(bytes("n,,n=,r=abc"))))
            return String(sf.split(separator: ",")[1])
        }
        XCTAssertEqual(try saltOf("ghost"), try saltOf("ghost"))
        XCTAssertNotEqual(try saltOf("ghost"), try saltOf("ghost2"))
    }

    func testChannelBindingRefusedAndYFlagAccepted() throws {
        var server = SCRAMServerExchange(secret: secret)
        XCTAssertEqual(failure(server.clientFirst(bytes("p=tls-server-end-point,,n=,r=abc"))), .channelBindingNotSupported)
        XCTAssertEqual(failure(server.clientFirst(bytes("n,,n=,r=abc"))), .outOfOrder)  // failures are final

        // 'y' flag: the client-final must echo "y,," (eSws)
        let keys = cache.keys(password: bytes("s3cr3t"), salt: secret.salt, iterations: secret.iterations)!
        var y = SCRAMServerExchange(secret: secret, nonceSource: { bytes("SN") })
        let sf = try unwrapSuccess(y.clientFirst(bytes("y,,n=,r=CN")))
        XCTAssertEqual(text(sf), "r=CNSN,s=\(Crypto.base64Encode(secret.salt)),i=256")
        let withoutProof = "c=eSws,r=CNSN"
        let auth = bytes("n=,r=CN,") + sf + bytes("," + withoutProof)
        let proof = Crypto.xor(keys.clientKey, Crypto.hmacSHA256(key: keys.storedKey, data: auth))!
        _ = try unwrapSuccess(y.clientFinal(bytes(withoutProof + ",p=" + Crypto.base64Encode(proof))))

        // authzid is ignored, but the channel binding must echo the whole header
        var a = SCRAMServerExchange(secret: secret, nonceSource: { bytes("SN") })
        _ = try unwrapSuccess(a.clientFirst(bytes("n,a=bob,n=,r=CN")))
        let wp = "c=\(Crypto.base64Encode(bytes("n,a=bob,"))),r=CNSN"
        let auth2 = bytes("n=,r=CN,") + sf + bytes("," + wp)
        let proof2 = Crypto.xor(keys.clientKey, Crypto.hmacSHA256(key: keys.storedKey, data: auth2))!
        _ = try unwrapSuccess(a.clientFinal(bytes(wp + ",p=" + Crypto.base64Encode(proof2))))

        // c=biws after a 'y' header is a mismatch
        var mism = SCRAMServerExchange(secret: secret, nonceSource: { bytes("SN") })
        _ = try unwrapSuccess(mism.clientFirst(bytes("y,,n=,r=CN")))
        XCTAssertNotNil(failure(mism.clientFinal(bytes("c=biws,r=CNSN,p=" + Crypto.base64Encode(proof)))))
    }

    func testMalformedClientFirstMessages() {
        let cases = ["", "n", "n,", "n,,", "x,,n=,r=a", "n,,r=abc", "n,,n=,", "n,,n=,r=", "n,,n=,r=a,",
                     "n,,n=,r=a b", "n,,m=x,n=,r=abc", "n,,n=,r=abc,,", "n,,n=,r=abc,x", "n,,n=,r=abc,1=x",
                     "n,a=x", "n,a=x,", "nn,,n=,r=a", ",,n=,r=a", "n,,n=,r=a\u{7f}", "y,n=,r=a"]
        for c in cases {
            var server = SCRAMServerExchange(secret: secret)
            XCTAssertNotNil(failure(server.clientFirst(bytes(c))), "accepted \(c.debugDescription)")
        }
        var ok = SCRAMServerExchange(secret: secret)
        XCTAssertNil(failure(ok.clientFirst(bytes("n,,n=,r=abc,x=ext"))))  // extensions are allowed
    }

    /// Every truncation and every single-byte corruption of each message fails without trapping.
    func testTruncationsAndCorruptionsAtEveryStep() throws {
        var client = SCRAMClientExchange(password: "s3cr3t", cache: cache, nonceSource: { bytes("clientnonce") })
        let cFirst = client.clientFirstMessage()
        var server = SCRAMServerExchange(secret: secret, nonceSource: { bytes("servernonce") })
        let sFirst = try unwrapSuccess(server.clientFirst(cFirst))
        let cFinal = try unwrapSuccess(client.serverFirst(sFirst))
        let serverAtFinal = server
        let sFinal = try unwrapSuccess(server.clientFinal(cFinal))

        // client-first: prefixes up to an empty nonce must fail; longer ones yield a shorter nonce,
        // which the original client-final must then not satisfy.
        let nonceStart = text(cFirst).count - "clientnonce".count
        for n in 0..<cFirst.count {
            var s = SCRAMServerExchange(secret: secret, nonceSource: { bytes("servernonce") })
            let r = s.clientFirst(Array(cFirst.prefix(n)))
            if n <= nonceStart {
                XCTAssertNotNil(failure(r), "client-first prefix \(n) accepted")
            } else if case .success = r {
                XCTAssertNotNil(failure(s.clientFinal(cFinal)), "prefix \(n) then original final accepted")
            }
        }
        // client-final: every strict prefix and every byte corruption fails
        for n in 0..<cFinal.count {
            var s = serverAtFinal
            XCTAssertNotNil(failure(s.clientFinal(Array(cFinal.prefix(n)))), "client-final prefix \(n) accepted")
        }
        for i in 0..<cFinal.count {
            for delta: UInt8 in [1, 0x20, 0x80] {
                var m = cFinal
                m[i] ^= delta
                var s = serverAtFinal
                XCTAssertNotNil(failure(s.clientFinal(m)), "client-final corrupted at \(i) accepted")
            }
        }
        XCTAssertNotNil(failure({ var s = serverAtFinal; return s.clientFinal(cFinal + bytes(",")) }()))
        XCTAssertNotNil(failure({ var s = serverAtFinal; return s.clientFinal(cFinal + bytes(",x=1")) }()))

        // server-first (client side): prefixes cut before the iteration digits fail; prefixes
        // inside the digits change the iteration count and the proof must then be rejected.
        let digitsStart = sFirst.count - 3  // "256"
        for n in 0..<sFirst.count {
            var c = SCRAMClientExchange(password: "s3cr3t", cache: cache, nonceSource: { bytes("clientnonce") })
            let r = c.serverFirst(Array(sFirst.prefix(n)))
            if n <= digitsStart {
                XCTAssertNotNil(failure(r), "server-first prefix \(n) accepted")
            } else if case .success(let final) = r {
                var s = serverAtFinal
                XCTAssertNotNil(failure(s.clientFinal(final)), "proof from truncated iterations accepted")
            }
        }
        for i in 0..<sFirst.count {
            var m = sFirst
            m[i] ^= 0x01
            var c = SCRAMClientExchange(password: "s3cr3t", cache: cache, nonceSource: { bytes("clientnonce") })
            if case .success(let final) = c.serverFirst(m) {
                var s = serverAtFinal
                XCTAssertNotNil(failure(s.clientFinal(final)), "server-first corrupted at \(i) led to success")
            }
        }
        // server-final: every strict prefix and corruption fails; e= reports the server's text
        for n in 0..<sFinal.count {
            XCTAssertNotNil(failure(client.serverFinal(Array(sFinal.prefix(n)))), "server-final prefix \(n) accepted")
        }
        for i in 0..<sFinal.count {
            var m = sFinal
            m[i] ^= 0x01
            XCTAssertNotNil(failure(client.serverFinal(m)), "server-final corrupted at \(i) accepted")
        }
        XCTAssertEqual(failure(client.serverFinal(bytes("e=invalid-proof"))), .serverError("invalid-proof"))
        XCTAssertNoThrow(try client.serverFinal(sFinal).get())
    }

    func testServerFirstValidation() {
        func run(_ m: String) -> SCRAMFailure? {
            var c = SCRAMClientExchange(password: "pw", cache: cache, nonceSource: { bytes("abc") })
            return failure(c.serverFirst(bytes(m)))
        }
        XCTAssertEqual(run("r=xyz123,s=AAAA,i=1"), .nonceMismatch)
        XCTAssertEqual(run("r=abc,s=AAAA,i=1"), .nonceMismatch)  // server must add its own part
        XCTAssertNotNil(run("r=abcd,s=,i=1"))
        XCTAssertNotNil(run("r=abcd,s=A,i=1"))
        XCTAssertNotNil(run("r=abcd,s=AAAA,i=0"))
        XCTAssertNotNil(run("r=abcd,s=AAAA,i=-5"))
        XCTAssertNotNil(run("r=abcd,s=AAAA,i=10000001"))
        XCTAssertNotNil(run("r=abcd,s=AAAA,i=99999999999999999999"))
        XCTAssertNotNil(run("r=abcd,s=AAAA"))
        XCTAssertNotNil(run("s=AAAA,r=abcd,i=1"))
        XCTAssertNotNil(run("m=x,r=abcd,s=AAAA,i=1"))
        XCTAssertEqual(run("e=other-error"), .serverError("other-error"))
        XCTAssertNil(run("r=abcd,s=AAAA,i=1,x=ext"))
        let c = SCRAMClientExchange(password: "pw", cache: cache)
        XCTAssertEqual(failure(c.serverFinal(bytes("v=AAAA"))), .outOfOrder)
    }

    func testRandomGarbageNeverTraps() {
        var rng = SplitMix64(state: 42)
        let alphabet = bytes("nyp,=ra cisvex0129+/AZ\u{0}")
        for _ in 0..<2000 {
            let len = Int.random(in: 0...40, using: &rng)
            let m = (0..<len).map { _ in
                Bool.random(using: &rng) ? alphabet.randomElement(using: &rng)! : UInt8.random(in: 0...255, using: &rng)
            }
            var s = SCRAMServerExchange(secret: secret)
            if case .success = s.clientFirst(m) { _ = s.clientFinal(m) }
            var c = SCRAMClientExchange(password: "pw", cache: cache, nonceSource: { bytes("r") })
            if case .success = c.serverFirst(bytes("r=rX,s=AAAA,i=1")) { _ = c.serverFinal(m) }
            var c2 = SCRAMClientExchange(password: "pw", cache: cache, nonceSource: { bytes("r") })
            _ = c2.serverFirst(m)
            _ = SCRAMSecret(parsing: text(m))
            _ = Crypto.base64Decode(m)
        }
    }
}
