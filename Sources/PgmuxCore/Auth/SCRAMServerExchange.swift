/// The pooler authenticating a client with SCRAM-SHA-256 (RFC 5802/7677, PostgreSQL flavour):
/// client-first → server-first → client-final → server-final.
///
/// PostgreSQL specifics: the username inside SCRAM (`n=`) is ignored (the startup packet's `user`
/// counts); no channel binding (`SCRAM-SHA-256-PLUS` is not offered, so gs2 flag `y` is fine and
/// `p=` is refused); the authzid `a=` is ignored.
///
/// Every input is untrusted: parsing uses bounds-checked cursors and returns `.failure`, never traps.
/// Any failure is final: later calls return `.outOfOrder`.
public struct SCRAMServerExchange {
    private enum State {
        case awaitingClientFirst
        case awaitingClientFinal(gs2Header: [UInt8], clientFirstBare: [UInt8], serverFirst: [UInt8],
                                 combinedNonce: [UInt8])
        case succeeded
        case failed
    }

    private let secret: SCRAMSecret
    /// The secret's keys ready to sign, when it came from cached keys (ad-hoc verifiers).
    private var macs: SCRAMVerifierMACs?
    private let serverNonce: [UInt8]
    private var state: State = .awaitingClientFirst
    /// Mock exchanges (unknown user) look identical on the wire but never succeed.
    public let isMock: Bool
    /// The secret was generated on the fly from a plain password (PgBouncer's "adhoc" secret).
    public let isAdHoc: Bool

    /// ClientKey recovered from the client's proof; set only after a successful `clientFinal`.
    public private(set) var clientKey: [UInt8]?
    /// ServerKey of the verifier; set only after a successful `clientFinal`.
    public private(set) var serverKey: [UInt8]?

    /// Keys for logging in to servers on this client's behalf (see `SCRAMPassThroughKeys`).
    public var passThroughKeys: SCRAMPassThroughKeys? {
        guard let clientKey, let serverKey else { return nil }
        return SCRAMPassThroughKeys(clientKey: clientKey, serverKey: serverKey, salt: secret.salt,
                                    iterations: secret.iterations)
    }

    /// Authenticates against a stored verifier.
    /// tls-server-end-point data (hash of the pooler's TLS certificate) when the client is on TLS:
    /// SCRAM-SHA-256-PLUS binds the exchange to this TLS session, so a man in the middle who
    /// terminates TLS elsewhere cannot relay the proof.
    public var channelBinding: [UInt8]?
    /// The client chose SCRAM-SHA-256-PLUS (set by the caller from the SASL mechanism).
    public var plusSelected = false

    public init(secret: SCRAMSecret, nonceSource: () -> [UInt8] = SCRAMNonce.random) {
        self.init(secret: secret, mock: false, adHoc: false, nonce: nonceSource())
    }

    /// Authenticates against a plain password by building an ad-hoc verifier (salt chosen once per
    /// password by the cache, PBKDF2 cached). nil if `iterations` is out of range.
    public init?(password: String, iterations: Int, cache: SCRAMKeyCache,
                 nonceSource: () -> [UInt8] = SCRAMNonce.random) {
        guard let keys = cache.adHocKeys(password: Array(password.utf8), iterations: iterations) else { return nil }
        self.init(secret: keys.secret, mock: false, adHoc: true, nonce: nonceSource())
        macs = keys.macs
    }

    /// Authenticates against the ad-hoc verifier of a plain password, from keys already derived
    /// (`SCRAMKeyCache.adHocRequest` and the crypto worker).
    public init(adHocKeys keys: SCRAMKeys, nonceSource: () -> [UInt8] = SCRAMNonce.random) {
        self.init(secret: keys.secret, mock: false, adHoc: true, nonce: nonceSource())
        macs = keys.macs
    }

    /// A mock exchange for an unknown user (or a user without a usable SCRAM credential): it runs
    /// the full protocol with a fake verifier and always fails at the end, so a client cannot tell
    /// unknown users from wrong passwords. With `mockSaltKey` (a per-process random secret held by
    /// the caller) the fake salt is HMAC(mockSaltKey, user), stable across attempts like a real
    /// verifier's salt; without it the salt is random per attempt.
    public static func mock(user: String, iterations: Int = 4096, mockSaltKey: [UInt8]? = nil,
                            nonceSource: () -> [UInt8] = SCRAMNonce.random) -> SCRAMServerExchange {
        let salt: [UInt8]
        if let mockSaltKey {
            salt = Array(Crypto.hmacSHA256(key: mockSaltKey, data: Array(user.utf8)).prefix(16))
        } else {
            salt = Crypto.randomBytes(16)
        }
        let iters = min(max(iterations, 1), SCRAMSecret.maxIterations)
        guard let fake = SCRAMSecret(iterations: iters, salt: salt, storedKey: Crypto.randomBytes(32),
                                     serverKey: Crypto.randomBytes(32))
        else { preconditionFailure("mock SCRAM secret out of range") }
        return SCRAMServerExchange(secret: fake, mock: true, adHoc: false, nonce: nonceSource())
    }

    private init(secret: SCRAMSecret, mock: Bool, adHoc: Bool, nonce: [UInt8]) {
        precondition(!nonce.isEmpty && SCRAMSyntax.isPrintable(nonce[...]), "nonce source must return printable text")
        self.secret = secret
        self.isMock = mock
        self.isAdHoc = adHoc
        self.serverNonce = nonce
    }

    public var isSucceeded: Bool {
        if case .succeeded = state { return true }
        return false
    }

    private mutating func fail<T>(_ failure: SCRAMFailure) -> Result<T, SCRAMFailure> {
        state = .failed
        return .failure(failure)
    }

    /// Parses `gs2-header client-first-message-bare` and returns server-first-message
    /// `r=<client nonce><server nonce>,s=<salt>,i=<iterations>`.
    public mutating func clientFirst(_ message: [UInt8]) -> Result<[UInt8], SCRAMFailure> {
        guard case .awaitingClientFirst = state else { return fail(.outOfOrder) }
        let comma = SCRAMSyntax.comma
        // gs2-cbind-flag
        guard let flag = message.first else { return fail(.malformed("empty client-first-message")) }
        var i = 1
        var bindingData: [UInt8] = []
        switch flag {
        case UInt8(ascii: "n"), UInt8(ascii: "y"):
            guard !plusSelected else { return fail(.malformed("SCRAM-SHA-256-PLUS requires channel binding")) }
            // 'y': the client could bind but thinks we cannot; we offered PLUS, so that is a downgrade.
            if flag == UInt8(ascii: "y") && channelBinding != nil { return fail(.channelBindingNotSupported) }
        case UInt8(ascii: "p"):
            guard plusSelected, let cb = channelBinding else { return fail(.channelBindingNotSupported) }
            let prefix = Array("p=tls-server-end-point".utf8)
            guard message.count > prefix.count, Array(message[0..<prefix.count]) == prefix else {
                return fail(.channelBindingNotSupported)
            }
            i = prefix.count
            bindingData = cb
        default:
            return fail(.malformed("unexpected channel-binding flag"))
        }
        guard i < message.count, message[i] == comma else { return fail(.malformed("comma expected after channel-binding flag")) }
        i += 1
        // optional authzid "a=...", ignored
        if i + 1 < message.count, message[i] == UInt8(ascii: "a"), message[i + 1] == SCRAMSyntax.equals {
            while i < message.count, message[i] != comma { i += 1 }
        }
        guard i < message.count, message[i] == comma else { return fail(.malformed("comma expected after gs2 header")) }
        i += 1
        let gs2Header = Array(message[0..<i]) + bindingData  // what c= must carry
        let bare = Array(message[i...])

        var cursor = SCRAMCursor(bare)
        if cursor.peekAttribute() == UInt8(ascii: "m") {
            return fail(.malformed("client requires an unsupported SCRAM extension"))
        }
        guard cursor.read(UInt8(ascii: "n")) != nil else { return fail(.malformed("username attribute expected")) }
        guard let clientNonce = cursor.read(UInt8(ascii: "r")) else { return fail(.malformed("nonce attribute expected")) }
        guard !clientNonce.isEmpty, SCRAMSyntax.isPrintable(clientNonce) else {
            return fail(.malformed("non-printable or empty client nonce"))
        }
        while !cursor.atEnd {
            guard cursor.readAny() != nil else { return fail(.malformed("garbage at end of client-first-message")) }
        }
        if cursor.endsWithDanglingComma { return fail(.malformed("trailing comma in client-first-message")) }

        var combined: [UInt8] = []
        combined.reserveCapacity(clientNonce.count + serverNonce.count)
        combined += clientNonce
        combined += serverNonce
        var serverFirst: [UInt8] = []
        serverFirst.reserveCapacity(combined.count + 64)
        serverFirst += "r=".utf8
        serverFirst += combined
        serverFirst += ",s=".utf8
        serverFirst += Crypto.base64Encode(secret.salt).utf8
        serverFirst += ",i=".utf8
        serverFirst += String(secret.iterations).utf8
        state = .awaitingClientFinal(gs2Header: gs2Header, clientFirstBare: bare, serverFirst: serverFirst,
                                     combinedNonce: combined)
        return .success(serverFirst)
    }

    /// Verifies `c=<b64 gs2 header>,r=<nonce>[,ext...],p=<proof>` and returns server-final
    /// `v=<server signature>`. On success `clientKey`/`serverKey` become available.
    public mutating func clientFinal(_ message: [UInt8]) -> Result<[UInt8], SCRAMFailure> {
        guard case let .awaitingClientFinal(gs2Header, clientFirstBare, serverFirst, combinedNonce) = state else {
            return fail(.outOfOrder)
        }
        var cursor = SCRAMCursor(message)
        guard let cb = cursor.read(UInt8(ascii: "c")) else { return fail(.malformed("channel-binding attribute expected")) }
        guard let cbData = Crypto.base64Decode(cb), cbData == gs2Header else {
            return fail(.malformed("unexpected channel-binding data"))
        }
        guard let nonce = cursor.read(UInt8(ascii: "r")) else { return fail(.malformed("nonce attribute expected")) }
        guard nonce.elementsEqual(combinedNonce) else { return fail(.nonceMismatch) }

        var proofB64: ArraySlice<UInt8>?
        var withoutProofEnd = 0
        while proofB64 == nil {
            let attrStart = cursor.position
            guard let attr = cursor.readAny() else { return fail(.malformed("proof attribute expected")) }
            if attr.name == UInt8(ascii: "p") {
                proofB64 = attr.value
                withoutProofEnd = attrStart - 1  // drop the ',' before "p="
            }
        }
        guard cursor.atEnd, !cursor.endsWithDanglingComma, withoutProofEnd > 0,
              let encodedProof = proofB64 else {
            return fail(.malformed("garbage at end of client-final-message"))
        }
        guard let proof = Crypto.base64Decode(encodedProof), proof.count == Crypto.sha256Length else {
            return fail(.malformed("malformed proof in client-final-message"))
        }

        var authMessage: [UInt8] = []
        authMessage.reserveCapacity(clientFirstBare.count + serverFirst.count + withoutProofEnd + 2)
        authMessage += clientFirstBare
        authMessage.append(SCRAMSyntax.comma)
        authMessage += serverFirst
        authMessage.append(SCRAMSyntax.comma)
        authMessage += message[0..<withoutProofEnd]
        let clientSignature = macs?.storedKey.mac(authMessage) ?? Crypto.hmacSHA256(key: secret.storedKey, data: authMessage)
        guard let recoveredClientKey = Crypto.xor(proof, clientSignature) else {
            return fail(.malformed("proof length"))
        }
        let matches = Crypto.constantTimeEquals(Crypto.sha256(recoveredClientKey), secret.storedKey)
        guard matches, !isMock else { return fail(.authenticationFailed) }

        clientKey = recoveredClientKey
        serverKey = secret.serverKey
        state = .succeeded
        let serverSignature = macs?.serverKey.mac(authMessage) ?? Crypto.hmacSHA256(key: secret.serverKey, data: authMessage)
        var serverFinal: [UInt8] = []
        serverFinal.reserveCapacity(48)
        serverFinal += "v=".utf8
        serverFinal += Crypto.base64Encode(serverSignature).utf8
        return .success(serverFinal)
    }
}
