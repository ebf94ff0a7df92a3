/// PostgreSQL's legacy md5 password scheme.
///
/// Why it is still here: auth_file entries and old servers use it. The stored secret is
/// `"md5" + hex(md5(password + user))`; the wire response to a 4-byte salt is
/// `"md5" + hex(md5(hex32 + salt))`, where hex32 is the stored secret without its prefix.
public enum MD5Password {
    /// Length of `"md5"` + 32 hex digits.
    public static let secretLength = 35

    /// True for strings PostgreSQL/PgBouncer treat as md5 secrets: `md5` prefix and length 35
    /// (the same test as PostgreSQL's `isMD5()`; the hex digits are not checked there either).
    public static func isSecret(_ stored: String) -> Bool {
        stored.utf8.count == secretLength && stored.utf8.starts(with: "md5".utf8)
    }

    /// `"md5" + hex(md5(password + user))`, the form stored in pg_authid / auth_file.
    public static func secret(password: String, user: String) -> String {
        "md5" + Crypto.md5Hex(Array(password.utf8) + Array(user.utf8))
    }

    /// The client's answer to AuthenticationMD5Password: `"md5" + hex(md5(secret[3...] + salt))`.
    /// `secret` must be an md5 secret (see `isSecret`); its 32 hex digits are hashed as text.
    public static func response(secret: String, salt: [UInt8]) -> String {
        "md5" + Crypto.md5Hex(Array(secret.utf8.dropFirst(3)) + salt)
    }

    /// Checks a client's md5 response against the stored secret, which may be a plain password
    /// (hashed with the user name first) or an md5 secret. A SCRAM secret cannot verify md5
    /// (callers switch to SCRAM instead, as PgBouncer does); an empty stored secret never matches.
    public static func verify(response: [UInt8], storedSecret: String, user: String, salt: [UInt8]) -> Bool {
        guard !storedSecret.isEmpty, response.count == secretLength,
              !SCRAMSecret.isSCRAMSecret(storedSecret) else { return false }
        let md5Secret = isSecret(storedSecret) ? storedSecret : secret(password: storedSecret, user: user)
        let expected = Array(MD5Password.response(secret: md5Secret, salt: salt).utf8)
        return Crypto.constantTimeEquals(expected, response)
    }
}
