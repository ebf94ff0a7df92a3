/// A stored SCRAM-SHA-256 verifier, as in pg_authid and auth_file:
/// `SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>`.
///
/// Why a validated value type: auth_file and auth_query results are untrusted text; parsing once
/// into checked fields (32-byte keys, sane iteration count) means the exchanges never see garbage.
public struct SCRAMSecret: Equatable, Hashable, Sendable {
    public static let prefix = "SCRAM-SHA-256"
    /// Upper bound on iterations accepted from secrets, servers and scram_iterations. PBKDF2
    /// runs on the crypto worker thread, not the event loop, but its cost is chosen by a peer:
    /// 100,000 is 24 times PostgreSQL's default of 4096 and about 25 ms of one core per
    /// derivation, so a server demanding millions cannot occupy the worker for seconds per login
    /// attempt (10,000,000 took 9 s). A server asking for more fails the login with a clear
    /// message (`SCRAMFailure.tooManyIterations`).
    public static let maxIterations = 100_000

    public let iterations: Int
    public let salt: [UInt8]
    public let storedKey: [UInt8]
    public let serverKey: [UInt8]

    /// Builds a secret from already-validated parts; nil if any part is out of range.
    public init?(iterations: Int, salt: [UInt8], storedKey: [UInt8], serverKey: [UInt8]) {
        guard iterations > 0, iterations <= SCRAMSecret.maxIterations, !salt.isEmpty,
              storedKey.count == Crypto.sha256Length, serverKey.count == Crypto.sha256Length else { return nil }
        self.iterations = iterations
        self.salt = salt
        self.storedKey = storedKey
        self.serverKey = serverKey
    }

    /// Parses the textual form; nil for anything malformed (field counts, base64, key lengths,
    /// iterations outside 1...maxIterations, empty salt).
    public init?(parsing text: String) {
        let bytes = Array(text.utf8)
        let parts = bytes.split(separator: UInt8(ascii: "$"), omittingEmptySubsequences: false)
        guard parts.count == 3, Array(parts[0]) == Array(SCRAMSecret.prefix.utf8) else { return nil }
        let params = parts[1].split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false)
        let keys = parts[2].split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false)
        guard params.count == 2, keys.count == 2,
              let iterations = SCRAMSyntax.parsePositiveInt(params[0], max: SCRAMSecret.maxIterations),
              let salt = Crypto.base64Decode(params[1]),
              let storedKey = Crypto.base64Decode(keys[0]),
              let serverKey = Crypto.base64Decode(keys[1]) else { return nil }
        self.init(iterations: iterations, salt: salt, storedKey: storedKey, serverKey: serverKey)
    }

    /// Cheap syntactic test used to pick the auth flavour (md5 → SCRAM switch), like PgBouncer's
    /// `get_password_type`: anything starting with `SCRAM-SHA-256$` counts as a SCRAM secret,
    /// even if it later fails to parse (then authentication fails rather than treating it as plain).
    public static func isSCRAMSecret(_ stored: String) -> Bool {
        stored.utf8.starts(with: (prefix + "$").utf8)
    }

    /// The canonical textual form.
    public var encoded: String {
        "\(SCRAMSecret.prefix)$\(iterations):\(Crypto.base64Encode(salt))$"
            + "\(Crypto.base64Encode(storedKey)):\(Crypto.base64Encode(serverKey))"
    }
}

/// All keys derived from a password for one (salt, iterations) pair.
///
/// Why keep ClientKey: with it (and ServerKey) the pooler can log in to a server that stores the
/// same verifier, without knowing the password (SCRAM pass-through).
public struct SCRAMKeys: Equatable, Sendable {
    public let salt: [UInt8]
    public let iterations: Int
    public let saltedPassword: [UInt8]
    public let clientKey: [UInt8]
    public let storedKey: [UInt8]
    public let serverKey: [UInt8]
    /// StoredKey and ServerKey made ready to sign: these keys are cached and verify every login.
    public let macs: SCRAMVerifierMACs

    public static func == (a: SCRAMKeys, b: SCRAMKeys) -> Bool {
        a.salt == b.salt && a.iterations == b.iterations && a.saltedPassword == b.saltedPassword
            && a.clientKey == b.clientKey && a.storedKey == b.storedKey && a.serverKey == b.serverKey
    }

    /// SaltedPassword = PBKDF2(password, salt, i); ClientKey = HMAC(SP, "Client Key");
    /// StoredKey = SHA256(ClientKey); ServerKey = HMAC(SP, "Server Key").
    ///
    /// The password bytes are used as given. PostgreSQL applies SASLprep first, which is the
    /// identity for ASCII passwords; non-ASCII passwords that SASLprep would change are not
    /// normalized here (known limitation). Returns nil for iterations outside
    /// 1...SCRAMSecret.maxIterations or an empty salt. Costs one PBKDF2: use `SCRAMKeyCache`.
    public static func derive(password: [UInt8], salt: [UInt8], iterations: Int) -> SCRAMKeys? {
        guard iterations > 0, iterations <= SCRAMSecret.maxIterations, !salt.isEmpty else { return nil }
        let salted = Crypto.pbkdf2SHA256(password: password, salt: salt, iterations: iterations)
        let clientKey = Crypto.hmacSHA256(key: salted, data: Array("Client Key".utf8))
        let storedKey = Crypto.sha256(clientKey)
        let serverKey = Crypto.hmacSHA256(key: salted, data: Array("Server Key".utf8))
        return SCRAMKeys(salt: salt, iterations: iterations, saltedPassword: salted, clientKey: clientKey,
                         storedKey: storedKey, serverKey: serverKey,
                         macs: SCRAMVerifierMACs(storedKey: HMACKey(storedKey), serverKey: HMACKey(serverKey)))
    }

    /// True when these keys (of a cleartext password) reproduce the verifier.
    public static func matches(_ keys: SCRAMKeys, _ secret: SCRAMSecret) -> Bool {
        Crypto.constantTimeEquals(keys.storedKey, secret.storedKey) && Crypto.constantTimeEquals(keys.serverKey, secret.serverKey)
    }

    /// The verifier PostgreSQL would store for this password.
    public var secret: SCRAMSecret {
        // Fields were validated in derive(); the failable init cannot fail here.
        guard let s = SCRAMSecret(iterations: iterations, salt: salt, storedKey: storedKey, serverKey: serverKey)
        else { preconditionFailure("derived SCRAM keys out of range") }
        return s
    }

    /// The pass-through credential for logging in to servers with the same verifier.
    public var passThrough: SCRAMPassThroughKeys {
        SCRAMPassThroughKeys(clientKey: clientKey, serverKey: serverKey, salt: salt, iterations: iterations)
    }
}

/// A verifier's two signing keys, keyed once (see `HMACKey`).
public struct SCRAMVerifierMACs: Sendable {
    public let storedKey: HMACKey
    public let serverKey: HMACKey
}

/// ClientKey + ServerKey recovered from a client's successful SCRAM exchange.
///
/// Why: with only a SCRAM verifier stored (no password), the pooler cannot compute a proof for the
/// server — but after a client proved itself, ClientKey = proof XOR ClientSignature is known, and
/// ClientKey/ServerKey are all a SCRAM client needs. This works only if the server's verifier has
/// the same salt and iteration count as the one the client was checked against (PgBouncer assumes
/// the auth_file/auth_query secret is a copy of the server's). `salt`/`iterations`, when known,
/// let the client exchange fail early with a clear error instead of sending a wrong proof.
public struct SCRAMPassThroughKeys: Equatable, Sendable {
    public let clientKey: [UInt8]
    public let serverKey: [UInt8]
    public let salt: [UInt8]?
    public let iterations: Int?

    public init(clientKey: [UInt8], serverKey: [UInt8], salt: [UInt8]? = nil, iterations: Int? = nil) {
        self.clientKey = clientKey
        self.serverKey = serverKey
        self.salt = salt
        self.iterations = iterations
    }
}
