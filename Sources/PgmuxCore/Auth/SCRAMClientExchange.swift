/// The pooler logging in to PostgreSQL with SCRAM-SHA-256 or SCRAM-SHA-256-PLUS (client side of
/// RFC 5802, as libpq does: empty username; the gs2 header says whether the exchange is bound to
/// the TLS session, see `SCRAMChannelBinding`).
///
/// Two credential kinds:
/// * a plain password — PBKDF2 with the server's salt/iterations, memoized in `SCRAMKeyCache`;
/// * pass-through keys (ClientKey + ServerKey) taken from a client's successful SCRAM exchange.
///   These only work when the server's verifier has the same salt and iteration count as the one
///   the keys came from — PgBouncer assumes the auth_file/auth_query secret is the server's. If the
///   keys carry their salt/iterations and the server announces different ones, the exchange fails
///   with `.passThroughMismatch` before sending a proof.
///
/// The server is untrusted too: malformed input yields `.failure`, and `serverFinal` verifies the
/// server signature so an impostor that does not know the verifier is detected.
public struct SCRAMClientExchange {
    public enum Credential {
        case password(String)
        case passThrough(SCRAMPassThroughKeys)
    }

    private enum State {
        case initial
        /// server-first parsed; PBKDF2 for a plain password is running elsewhere.
        case awaitingKeys(serverFirst: [UInt8], nonce: [UInt8], request: SCRAMDerivation)
        case awaitingServerFinal(authMessage: [UInt8], serverKey: [UInt8])
        case failed
    }

    /// What to do after server-first: send client-final, or derive the password's keys first
    /// (then call `keysDerived`).
    public enum Step: Equatable {
        case send([UInt8])
        case derive(SCRAMDerivation)
    }

    private let credential: Credential
    private let cache: SCRAMKeyCache?
    private let clientNonce: [UInt8]
    /// Set before `clientFirstMessage`; `.unsupported` (gs2 `n,,`) unless the caller binds.
    public var channelBinding: SCRAMChannelBinding = .unsupported
    /// Always empty in production (PostgreSQL ignores it, libpq sends `n=`); tests set it to
    /// replay RFC 7677's vector, which uses `n=user`. Must not contain ',' or '='.
    var username: [UInt8] = []
    private var state: State = .initial

    /// Uses a plain password; PBKDF2 results go through `cache`.
    public init(password: String, cache: SCRAMKeyCache, nonceSource: () -> [UInt8] = SCRAMNonce.random) {
        self.credential = .password(password)
        self.cache = cache
        self.clientNonce = nonceSource()
        precondition(!clientNonce.isEmpty && SCRAMSyntax.isPrintable(clientNonce[...]),
                     "nonce source must return printable text")
    }

    /// Uses SCRAM pass-through keys (no password, no PBKDF2).
    public init(passThrough keys: SCRAMPassThroughKeys, nonceSource: () -> [UInt8] = SCRAMNonce.random) {
        self.credential = .passThrough(keys)
        self.cache = nil
        self.clientNonce = nonceSource()
        precondition(!clientNonce.isEmpty && SCRAMSyntax.isPrintable(clientNonce[...]),
                     "nonce source must return printable text")
    }

    /// `client-first-message-bare`: empty username, as libpq sends (the server uses the startup user).
    private var clientFirstBare: [UInt8] { Array("n=".utf8) + username + Array(",r=".utf8) + clientNonce }

    /// `<gs2 header>n=,r=<nonce>` — the data of SASLInitialResponse.
    public func clientFirstMessage() -> [UInt8] {
        channelBinding.gs2Header + clientFirstBare
    }

    private mutating func fail<T>(_ failure: SCRAMFailure) -> Result<T, SCRAMFailure> {
        state = .failed
        return .failure(failure)
    }

    /// Parses `r=<nonce>,s=<salt>,i=<iterations>[,ext...]` and returns
    /// `c=biws,r=<nonce>,p=<proof>` (the data of SASLResponse), deriving the keys inline on a
    /// cache miss. For tests and tools: the pooler uses `serverFirstStep`, which never derives.
    public mutating func serverFirst(_ message: [UInt8]) -> Result<[UInt8], SCRAMFailure> {
        switch serverFirstStep(message) {
        case .failure(let f): return .failure(f)
        case .success(.send(let data)): return .success(data)
        case .success(.derive(let request)): return keysDerived(request.run())
        }
    }

    /// Parses server-first. With cached keys (or pass-through keys) the answer is ready; with a
    /// plain password and no cached keys it returns the derivation to run, off the event loop.
    public mutating func serverFirstStep(_ message: [UInt8]) -> Result<Step, SCRAMFailure> {
        guard case .initial = state else { return fail(.outOfOrder) }
        var cursor = SCRAMCursor(message)
        if cursor.peekAttribute() == UInt8(ascii: "m") {
            return fail(.malformed("server requires an unsupported SCRAM extension"))
        }
        if cursor.peekAttribute() == UInt8(ascii: "e"), let text = cursor.read(UInt8(ascii: "e")) {
            return fail(.serverError(String(decoding: text, as: UTF8.self)))
        }
        guard let nonce = cursor.read(UInt8(ascii: "r")) else { return fail(.malformed("nonce attribute expected")) }
        guard nonce.count > clientNonce.count, nonce.starts(with: clientNonce) else { return fail(.nonceMismatch) }
        guard SCRAMSyntax.isPrintable(nonce) else { return fail(.malformed("non-printable server nonce")) }
        guard let saltB64 = cursor.read(UInt8(ascii: "s")) else { return fail(.malformed("salt attribute expected")) }
        guard let salt = Crypto.base64Decode(saltB64), !salt.isEmpty else { return fail(.malformed("invalid salt")) }
        guard let iterText = cursor.read(UInt8(ascii: "i")) else { return fail(.malformed("iteration count expected")) }
        guard let iterations = SCRAMSyntax.parsePositiveInt(iterText, max: Int(Int32.max)) else {
            return fail(.malformed("invalid iteration count"))
        }
        guard iterations <= SCRAMSecret.maxIterations else { return fail(.tooManyIterations(iterations)) }
        while !cursor.atEnd {
            guard cursor.readAny() != nil else { return fail(.malformed("garbage at end of server-first-message")) }
        }
        if cursor.endsWithDanglingComma { return fail(.malformed("trailing comma in server-first-message")) }

        switch credential {
        case .password(let password):
            guard let cache else { return fail(.malformed("invalid salt or iteration count")) }
            let pw = Array(password.utf8)
            if let keys = cache.cached(password: pw, salt: salt, iterations: iterations) {
                return .success(.send(proof(serverFirst: message, nonce: Array(nonce), clientKey: keys.clientKey,
                                            storedKey: keys.storedKey, serverKey: keys.serverKey)))
            }
            let request = SCRAMDerivation(password: pw, salt: salt, iterations: iterations)
            state = .awaitingKeys(serverFirst: message, nonce: Array(nonce), request: request)
            return .success(.derive(request))
        case .passThrough(let keys):
            if let knownSalt = keys.salt, knownSalt != salt { return fail(.passThroughMismatch) }
            if let knownIterations = keys.iterations, knownIterations != iterations { return fail(.passThroughMismatch) }
            guard keys.clientKey.count == Crypto.sha256Length, keys.serverKey.count == Crypto.sha256Length else {
                return fail(.passThroughMismatch)
            }
            return .success(.send(proof(serverFirst: message, nonce: Array(nonce), clientKey: keys.clientKey,
                                        storedKey: Crypto.sha256(keys.clientKey), serverKey: keys.serverKey)))
        }
    }

    /// The result of the derivation `serverFirstStep` asked for (nil: it could not be made).
    /// Caches it and returns client-final.
    public mutating func keysDerived(_ keys: SCRAMKeys?) -> Result<[UInt8], SCRAMFailure> {
        guard case let .awaitingKeys(serverFirst, nonce, request) = state else { return fail(.outOfOrder) }
        guard let derived = keys, let cache else { return fail(.malformed("invalid salt or iteration count")) }
        let k = cache.store(request, derived)
        return .success(proof(serverFirst: serverFirst, nonce: nonce, clientKey: k.clientKey, storedKey: k.storedKey,
                               serverKey: k.serverKey))
    }

    /// client-final-message for validated keys (both key kinds are 32 bytes here).
    private mutating func proof(serverFirst message: [UInt8], nonce: [UInt8], clientKey: [UInt8], storedKey: [UInt8],
                                serverKey: [UInt8]) -> [UInt8] {
        // c= repeats the gs2 header (followed by the binding data under PLUS), so a man in the
        // middle cannot strip the binding: "biws" is base64("n,,").
        let withoutProof = Array("c=".utf8) + Array(Crypto.base64Encode(channelBinding.attributeData).utf8)
            + Array(",r=".utf8) + nonce
        let authMessage = clientFirstBare + [SCRAMSyntax.comma] + message + [SCRAMSyntax.comma] + withoutProof
        let clientSignature = Crypto.hmacSHA256(key: storedKey, data: authMessage)
        let proof = Crypto.xor(clientKey, clientSignature) ?? []
        state = .awaitingServerFinal(authMessage: authMessage, serverKey: serverKey)
        return withoutProof + Array(",p=".utf8) + Array(Crypto.base64Encode(proof).utf8)
    }

    /// Checks `v=<server signature>[,ext...]`; `e=<text>` becomes `.serverError(text)`.
    public func serverFinal(_ message: [UInt8]) -> Result<Void, SCRAMFailure> {
        guard case let .awaitingServerFinal(authMessage, serverKey) = state else { return .failure(.outOfOrder) }
        var cursor = SCRAMCursor(message)
        if let text = cursor.read(UInt8(ascii: "e")) {
            return .failure(.serverError(String(decoding: text, as: UTF8.self)))
        }
        guard let signatureB64 = cursor.read(UInt8(ascii: "v")) else {
            return .failure(.malformed("server signature expected"))
        }
        while !cursor.atEnd {
            guard cursor.readAny() != nil else { return .failure(.malformed("garbage at end of server-final-message")) }
        }
        if cursor.endsWithDanglingComma { return .failure(.malformed("trailing comma in server-final-message")) }
        guard let signature = Crypto.base64Decode(signatureB64), signature.count == Crypto.sha256Length else {
            return .failure(.malformed("invalid server signature encoding"))
        }
        let expected = Crypto.hmacSHA256(key: serverKey, data: authMessage)
        guard Crypto.constantTimeEquals(expected, signature) else { return .failure(.serverSignatureMismatch) }
        return .success(())
    }
}
