import COpenSSL

/// Thin, allocation-friendly wrappers over OpenSSL for the login path.
///
/// Why: every primitive (hashes, HMAC, PBKDF2, base64, randomness, constant-time compare) must come
/// from OpenSSL — no home-grown crypto. `[UInt8]` in and out keeps callers simple; this is not the
/// relay hot path.
///
/// Failures of OpenSSL itself with valid arguments (allocation failure, an unseedable RNG) cannot be
/// handled meaningfully by an authenticator and are treated as fatal (`precondition`). Every
/// *input-dependent* check (lengths, iteration counts, base64 syntax) is done by the callers or
/// reported through return values, so untrusted input never reaches a trap.
public enum Crypto {
    public static let sha256Length = 32

    /// Calls `body` with a non-nil pointer even for an empty array: OpenSSL treats a NULL key in
    /// `HMAC()` specially, so empty inputs get a pointer to a dummy byte with length 0.
    @inline(__always)
    private static func withBytes<R>(_ bytes: [UInt8], _ body: (UnsafePointer<UInt8>, Int) -> R) -> R {
        if bytes.isEmpty {
            var dummy: UInt8 = 0
            return withUnsafePointer(to: &dummy) { body($0, 0) }
        }
        return bytes.withUnsafeBufferPointer { buf in
            guard let base = buf.baseAddress else { preconditionFailure("non-empty array without storage") }
            return body(base, buf.count)
        }
    }

    /// Algorithms fetched from OpenSSL's provider store once. Its one-shot calls (`HMAC()`, which
    /// is `EVP_Q_mac`, and `EVP_Digest` with `EVP_sha256()`) look the algorithm up by name on every
    /// call, which cost more than the hashing itself of a SCRAM login (callgrind: about half of
    /// the login's crypto instructions). Both objects are immutable after creation; the HMAC
    /// template is only ever duplicated, which reads it, so sharing them across threads is safe.
    private struct Fetched: @unchecked Sendable {
        let sha256: OpaquePointer
        let hmacSHA256: OpaquePointer

        init() {
            guard let md = EVP_MD_fetch(nil, "SHA256", nil), let mac = EVP_MAC_fetch(nil, "HMAC", nil),
                  let ctx = EVP_MAC_CTX_new(mac) else { preconditionFailure("OpenSSL has no SHA256/HMAC") }
            EVP_MAC_free(mac)  // the context holds its own reference
            // A context is duplicable only once keyed; every use re-keys its own copy.
            var dummyKey: UInt8 = 0
            let ok = "digest".withCString { name in
                "SHA256".withCString { value in
                    var params = [OSSL_PARAM_construct_utf8_string(name, UnsafeMutablePointer(mutating: value), 0),
                                  OSSL_PARAM_construct_end()]
                    return EVP_MAC_init(ctx, &dummyKey, 1, &params)
                }
            }
            precondition(ok == 1, "EVP_MAC_init failed")
            sha256 = md
            hmacSHA256 = ctx
        }
    }
    private static let fetched = Fetched()
    static var hmacTemplate: OpaquePointer { fetched.hmacSHA256 }

    private static func digest(_ data: [UInt8], _ md: OpaquePointer?, length: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var outLen: UInt32 = 0
        let ok = withBytes(data) { p, n in
            out.withUnsafeMutableBufferPointer { EVP_Digest(p, n, $0.baseAddress, &outLen, md, nil) }
        }
        precondition(ok == 1 && Int(outLen) == length, "EVP_Digest failed")
        return Array(out.prefix(length))
    }

    /// SHA-256 via `EVP_Digest` (the one-shot `SHA256()` is deprecated in OpenSSL 3).
    public static func sha256(_ data: [UInt8]) -> [UInt8] {
        digest(data, fetched.sha256, length: sha256Length)
    }

    /// Raw MD5 via `EVP_Digest`; only for PostgreSQL's legacy md5 password scheme.
    public static func md5(_ data: [UInt8]) -> [UInt8] {
        digest(data, EVP_md5(), length: 16)
    }

    /// Lower-case hex MD5, the form PostgreSQL's md5 secrets and responses use.
    public static func md5Hex(_ data: [UInt8]) -> String {
        hex(md5(data))
    }

    /// HMAC-SHA-256 on a copy of the pre-fetched keyed template (see `Fetched`).
    public static func hmacSHA256(key: [UInt8], data: [UInt8]) -> [UInt8] {
        guard let ctx = EVP_MAC_CTX_dup(fetched.hmacSHA256) else { preconditionFailure("EVP_MAC_CTX_dup failed") }
        defer { EVP_MAC_CTX_free(ctx) }
        precondition(keyMAC(ctx, key), "EVP_MAC_init failed")
        return finishMAC(ctx, data)
    }

    /// Keys a copy of the template (a NULL key would mean "keep the previous key" to OpenSSL).
    static func keyMAC(_ ctx: OpaquePointer, _ key: [UInt8]) -> Bool {
        withBytes(key) { kp, kn in EVP_MAC_init(ctx, kp, kn, nil) } == 1
    }

    /// Feeds `data` to a keyed context and returns the 32-byte MAC.
    static func finishMAC(_ ctx: OpaquePointer, _ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: sha256Length)
        var outLen = 0
        let ok = withBytes(data) { dp, dn in
            out.withUnsafeMutableBufferPointer { o in
                EVP_MAC_update(ctx, dp, dn) == 1 && EVP_MAC_final(ctx, o.baseAddress, &outLen, sha256Length) == 1
            }
        }
        precondition(ok && outLen == sha256Length, "HMAC failed")
        return out
    }

    /// PBKDF2-HMAC-SHA-256 with a 32-byte output (SCRAM's `Hi()`).
    /// Callers must validate `iterations` (1...Int32.max) and keep the password under Int32.max
    /// bytes; SCRAM code validates against `SCRAMSecret.maxIterations` before calling.
    public static func pbkdf2SHA256(password: [UInt8], salt: [UInt8], iterations: Int) -> [UInt8] {
        precondition(iterations > 0 && iterations <= Int(Int32.max), "PBKDF2 iterations out of range")
        precondition(password.count <= Int(Int32.max) && salt.count <= Int(Int32.max), "PBKDF2 input too long")
        var out = [UInt8](repeating: 0, count: sha256Length)
        let ok = password.withUnsafeBufferPointer { pw in
            withBytes(salt) { sp, sn in
                out.withUnsafeMutableBufferPointer { o in
                    pw.withMemoryRebound(to: CChar.self) { pwc in
                        // A NULL password pointer with length 0 is accepted by OpenSSL.
                        PKCS5_PBKDF2_HMAC(pwc.baseAddress, Int32(pwc.count), sp, Int32(sn), Int32(iterations),
                                          EVP_sha256(), Int32(sha256Length), o.baseAddress)
                    }
                }
            }
        }
        precondition(ok == 1, "PKCS5_PBKDF2_HMAC failed")
        return out
    }

    /// Cryptographically strong random bytes (`RAND_bytes`) for salts and nonces.
    public static func randomBytes(_ count: Int) -> [UInt8] {
        precondition(count >= 0 && count <= Int(Int32.max), "randomBytes count out of range")
        var out = [UInt8](repeating: 0, count: count)
        if count == 0 { return out }
        let ok = out.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32(count)) }
        precondition(ok == 1, "RAND_bytes failed: no usable entropy source")
        return out
    }

    /// Compares in time independent of the contents (`CRYPTO_memcmp`). Lengths are not secret:
    /// different lengths return false immediately.
    public static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        if a.isEmpty { return true }
        return a.withUnsafeBytes { pa in
            b.withUnsafeBytes { pb in CRYPTO_memcmp(pa.baseAddress, pb.baseAddress, a.count) == 0 }
        }
    }

    /// Standard base64 with padding (`EVP_EncodeBlock`).
    public static func base64Encode(_ data: [UInt8]) -> String {
        if data.isEmpty { return "" }
        precondition(data.count <= Int(Int32.max) / 2, "base64 input too long")
        let outCount = 4 * ((data.count + 2) / 3)
        var out = [UInt8](repeating: 0, count: outCount + 1)  // + NUL written by OpenSSL
        let written = withBytes(data) { p, n in
            out.withUnsafeMutableBufferPointer { EVP_EncodeBlock($0.baseAddress, p, Int32(n)) }
        }
        precondition(Int(written) == outCount, "EVP_EncodeBlock failed")
        return String(decoding: out.prefix(outCount), as: UTF8.self)
    }

    /// Strict standard base64 decoding. Returns nil unless the input is a whole number of 4-character
    /// groups from the standard alphabet with at most two `=` only at the very end (no whitespace,
    /// which `EVP_DecodeBlock` would otherwise tolerate) and canonical padding bits. `EVP_DecodeBlock`
    /// counts padding as zero bytes, so the padding count is subtracted.
    public static func base64Decode<S: Sequence>(_ encoded: S) -> [UInt8]? where S.Element == UInt8 {
        let input = encoded as? [UInt8] ?? Array(encoded)
        if input.isEmpty { return [] }
        guard input.count % 4 == 0, input.count <= Int(Int32.max) else { return nil }
        var padding = 0
        for (i, c) in input.enumerated() {
            if c == UInt8(ascii: "=") {
                // '=' only in the last two positions, and "x=y=" style gaps are invalid.
                guard i >= input.count - 2 else { return nil }
                padding += 1
            } else {
                guard padding == 0, base64Value(c) != nil else { return nil }
            }
        }
        // Canonical form only: the bits of the last character that fall into the padding must be
        // zero, so each byte string has exactly one accepted encoding (a proof or signature
        // cannot be re-spelled).
        if padding > 0, let last = base64Value(input[input.count - 1 - padding]),
           last & (padding == 2 ? 0x0f : 0x03) != 0 {
            return nil
        }
        var out = [UInt8](repeating: 0, count: input.count / 4 * 3)
        let n = input.withUnsafeBufferPointer { inp in
            out.withUnsafeMutableBufferPointer { EVP_DecodeBlock($0.baseAddress, inp.baseAddress, Int32(inp.count)) }
        }
        guard n >= 0, Int(n) == out.count else { return nil }
        out.removeLast(padding)
        return out
    }

    /// Convenience for base64 text held in a `String`.
    public static func base64Decode(_ encoded: String) -> [UInt8]? {
        base64Decode(Array(encoded.utf8))
    }

    /// The 6-bit value of a standard base64 character; nil outside the alphabet.
    @inline(__always)
    private static func base64Value(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): return c - UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): return c - UInt8(ascii: "a") + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0") + 52
        case UInt8(ascii: "+"): return 62
        case UInt8(ascii: "/"): return 63
        default: return nil
        }
    }

    /// Lower-case hex encoding (formatting only, not crypto).
    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Byte-wise XOR of two equal-length strings (SCRAM's ClientKey = proof XOR signature).
    /// Returns nil on a length mismatch instead of trapping.
    public static func xor(_ a: [UInt8], _ b: [UInt8]) -> [UInt8]? {
        guard a.count == b.count else { return nil }
        var out = a
        for i in out.indices { out[i] ^= b[i] }
        return out
    }
}

/// An HMAC-SHA-256 key made ready once: OpenSSL's keyed context (inner and outer pads already
/// hashed), copied for each message. For keys that sign on every login, the verifier's StoredKey
/// and ServerKey: keying costs as much as a short MAC itself. Immutable after init and only
/// ever copied, so it may be shared across threads (keys are derived on the crypto worker).
public final class HMACKey: @unchecked Sendable {
    private let ctx: OpaquePointer

    public init(_ key: [UInt8]) {
        guard let c = EVP_MAC_CTX_dup(Crypto.hmacTemplate) else { preconditionFailure("EVP_MAC_CTX_dup failed") }
        precondition(Crypto.keyMAC(c, key), "EVP_MAC_init failed")
        ctx = c
    }

    deinit { EVP_MAC_CTX_free(ctx) }

    /// HMAC(key, data), equal to `Crypto.hmacSHA256(key:data:)`.
    public func mac(_ data: [UInt8]) -> [UInt8] {
        guard let c = EVP_MAC_CTX_dup(ctx) else { preconditionFailure("EVP_MAC_CTX_dup failed") }
        defer { EVP_MAC_CTX_free(c) }
        return Crypto.finishMAC(c, data)
    }
}
