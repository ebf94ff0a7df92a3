import XCTest
@testable import PgmuxCore

final class CryptoTests: XCTestCase {
    func testSHA256Vectors() {
        XCTAssertEqual(Crypto.hex(Crypto.sha256(bytes("abc"))),
                       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(Crypto.hex(Crypto.sha256([])),
                       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    func testHMACVectors() {
        // RFC 4231 test case 2
        XCTAssertEqual(Crypto.hex(Crypto.hmacSHA256(key: bytes("Jefe"), data: bytes("what do ya want for nothing?"))),
                       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        // empty key and data (Python: hmac.new(b"", b"", sha256))
        XCTAssertEqual(Crypto.hex(Crypto.hmacSHA256(key: [], data: [])),
                       "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad")
    }

    func testPBKDF2Vectors() {
        XCTAssertEqual(Crypto.hex(Crypto.pbkdf2SHA256(password: bytes("password"), salt: bytes("salt"), iterations: 1)),
                       "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b")
        XCTAssertEqual(Crypto.hex(Crypto.pbkdf2SHA256(password: bytes("password"), salt: bytes("salt"), iterations: 4096)),
                       "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a")
        XCTAssertEqual(Crypto.pbkdf2SHA256(password: [], salt: bytes("salt"), iterations: 1).count, 32)
    }

    func testMD5() {
        XCTAssertEqual(Crypto.md5Hex([]), "d41d8cd98f00b204e9800998ecf8427e")
        XCTAssertEqual(Crypto.md5Hex(bytes("abc")), "900150983cd24fb0d6963f7d28e17f72")
    }

    func testBase64RoundTripAndPadding() {
        XCTAssertEqual(Crypto.base64Encode([]), "")
        XCTAssertEqual(Crypto.base64Encode(bytes("f")), "Zg==")
        XCTAssertEqual(Crypto.base64Encode(bytes("fo")), "Zm8=")
        XCTAssertEqual(Crypto.base64Encode(bytes("foo")), "Zm9v")
        XCTAssertEqual(Crypto.base64Decode("Zg=="), bytes("f"))
        XCTAssertEqual(Crypto.base64Decode("Zm8="), bytes("fo"))
        XCTAssertEqual(Crypto.base64Decode("Zm9v"), bytes("foo"))
        XCTAssertEqual(Crypto.base64Decode("Zm9vYmFy"), bytes("foobar"))
        XCTAssertEqual(Crypto.base64Decode(""), [])
        var rng = SplitMix64(state: 1)
        for n in 0..<70 {
            let data = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            XCTAssertEqual(Crypto.base64Decode(Crypto.base64Encode(data)), data, "length \(n)")
        }
    }

    func testBase64RejectsInvalid() {
        for bad in ["Zg", "Zg=", "Z===", "====", "=Zg=", "Zg==Zg==", "Z=g=", "Zm9v\n", " Zm9v", "Zm 9v",
                    "Zm9-", "Zm9_", "Zm9v=", "Zm9\u{e9}", "*abc", "Zh==", "Zm9=", "Zm8/Zh=="] {
            XCTAssertNil(Crypto.base64Decode(bad), "accepted \(bad.debugDescription)")
        }
    }

    /// Every padded final group is accepted exactly when it is the canonical encoding of what it
    /// decodes to (the rule the decoder checks bit by bit instead of re-encoding).
    func testBase64PaddedGroupsAcceptedOnlyWhenCanonical() {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        for a in alphabet {
            for b in alphabet {
                let two = [a, b] + Array("==".utf8)
                XCTAssertEqual(Crypto.base64Decode(two) != nil, canonical(two), String(decoding: two, as: UTF8.self))
                for c in [alphabet[0], alphabet[1], alphabet[2], alphabet[3], alphabet[63]] {
                    let three = [a, b, c] + Array("=".utf8)
                    XCTAssertEqual(Crypto.base64Decode(three) != nil, canonical(three), String(decoding: three, as: UTF8.self))
                }
            }
        }
    }

    /// Reference: decode leniently with OpenSSL's alphabet, re-encode, compare.
    private func canonical(_ group: [UInt8]) -> Bool {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        let pad = group.filter { $0 == UInt8(ascii: "=") }.count
        var bits = 0
        for c in group.prefix(4 - pad) { bits = bits << 6 | alphabet.firstIndex(of: c)! }
        bits <<= 6 * pad
        let bytes = [UInt8(bits >> 16 & 0xff), UInt8(bits >> 8 & 0xff), UInt8(bits & 0xff)].prefix(3 - pad)
        return Array(Crypto.base64Encode(Array(bytes)).utf8) == group
    }

    /// A key made ready once signs exactly as the one-shot HMAC, repeatedly, empty key included.
    func testHMACKeyMatchesOneShotHMAC() {
        var rng = SplitMix64(state: 7)
        for n in [0, 1, 32, 64, 65, 200] {
            let key = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let prepared = HMACKey(key)
            for m in [0, 5, 64, 300] {
                let data = (0..<m).map { _ in UInt8.random(in: 0...255, using: &rng) }
                XCTAssertEqual(prepared.mac(data), Crypto.hmacSHA256(key: key, data: data), "key \(n) data \(m)")
                XCTAssertEqual(prepared.mac(data), Crypto.hmacSHA256(key: key, data: data), "reused key \(n)")
            }
        }
    }

    func testConstantTimeEqualsAndXor() {
        XCTAssertTrue(Crypto.constantTimeEquals([1, 2, 3], [1, 2, 3]))
        XCTAssertFalse(Crypto.constantTimeEquals([1, 2, 3], [1, 2, 4]))
        XCTAssertFalse(Crypto.constantTimeEquals([1, 2, 3], [1, 2]))
        XCTAssertTrue(Crypto.constantTimeEquals([], []))
        XCTAssertEqual(Crypto.xor([0xff, 0x0f], [0x0f, 0x0f]), [0xf0, 0x00])
        XCTAssertNil(Crypto.xor([1], [1, 2]))
    }

    func testRandomBytes() {
        let a = Crypto.randomBytes(32), b = Crypto.randomBytes(32)
        XCTAssertEqual(a.count, 32)
        XCTAssertNotEqual(a, b)
        XCTAssertEqual(Crypto.randomBytes(0), [])
        let nonce = SCRAMNonce.random()
        XCTAssertEqual(nonce.count, 24)
        XCTAssertFalse(nonce.contains(UInt8(ascii: ",")))
    }
}

final class MD5PasswordTests: XCTestCase {
    func testVector() {
        let secret = MD5Password.secret(password: "secret", user: "alice")
        XCTAssertEqual(secret, "md5" + Crypto.md5Hex(bytes("secretalice")))
        XCTAssertTrue(MD5Password.isSecret(secret))
        XCTAssertEqual(MD5Password.response(secret: secret, salt: [1, 2, 3, 4]), "md598a0412b9c31436fc53776e863350083")
    }

    func testVerify() {
        let salt: [UInt8] = [1, 2, 3, 4]
        let good = bytes("md598a0412b9c31436fc53776e863350083")
        let md5Secret = MD5Password.secret(password: "secret", user: "alice")
        XCTAssertTrue(MD5Password.verify(response: good, storedSecret: "secret", user: "alice", salt: salt))
        XCTAssertTrue(MD5Password.verify(response: good, storedSecret: md5Secret, user: "alice", salt: salt))
        XCTAssertFalse(MD5Password.verify(response: good, storedSecret: "secret", user: "bob", salt: salt))
        XCTAssertFalse(MD5Password.verify(response: good, storedSecret: "secret", user: "alice", salt: [1, 2, 3, 5]))
        XCTAssertFalse(MD5Password.verify(response: good, storedSecret: "wrong", user: "alice", salt: salt))
        XCTAssertFalse(MD5Password.verify(response: Array(good.dropLast()), storedSecret: "secret", user: "alice", salt: salt))
        XCTAssertFalse(MD5Password.verify(response: good, storedSecret: "", user: "alice", salt: salt))
        let scram = SCRAMKeys.derive(password: bytes("secret"), salt: [9, 9], iterations: 1)!.secret.encoded
        XCTAssertFalse(MD5Password.verify(response: good, storedSecret: scram, user: "alice", salt: salt))
        XCTAssertFalse(MD5Password.isSecret("md5abc"))
        XCTAssertFalse(MD5Password.isSecret("secret"))
    }
}
