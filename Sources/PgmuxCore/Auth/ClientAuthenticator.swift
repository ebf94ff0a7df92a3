/// How the pooler authenticates clients (auth_type / hba result) for the methods handled here.
public enum ClientAuthMethod: Equatable, Sendable {
    case trust
    case plain
    case md5
    case scramSHA256
    /// Cleartext password checked by a PAM stack, off the event loop (`verifyExternally`).
    case pam
    /// Cleartext password checked by binding to an LDAP server, off the event loop.
    case ldap
    /// GSSAPI (Kerberos): tokens accepted off the event loop (`acceptGSSToken`).
    case gss
}

/// What the connection code must do next. Semantic, not wire bytes: another layer encodes
/// AuthenticationCleartextPassword (R/3), MD5Password (R/5 + salt), SASL (R/10 + mechanism list),
/// SASLContinue (R/11), SASLFinal (R/12), and the FATAL ErrorResponse (08P01) for `.failed`.
public enum ClientAuthAction: Equatable, Sendable {
    case sendAuthenticationCleartext
    case sendAuthenticationMD5(salt: [UInt8])
    case sendAuthenticationSASL(mechanisms: [String])
    case sendSASLContinue([UInt8])
    /// Send AuthenticationSASLFinal; the client is then authenticated (`isAuthenticated` is true),
    /// so continue exactly as after `.succeeded` (AuthenticationOk, welcome).
    case sendSASLFinal([UInt8])
    /// Run this PBKDF2 derivation off the event loop and pass its result to `keysDerived`
    /// (nothing is sent meanwhile).
    case deriveKeys(SCRAMDerivation)
    /// pam / ldap: have this cleartext password checked off the event loop, then pass the
    /// verdict to `externalVerdict` (nothing is sent meanwhile).
    case verifyExternally(password: [UInt8])
    /// Send AuthenticationGSS (R/7): the client answers with its first token.
    case sendAuthenticationGSS
    /// Accept this GSSAPI token off the event loop, then pass the outcome to `gssStep`.
    case acceptGSSToken([UInt8])
    /// Send AuthenticationGSSContinue (R/8) with this token; the client answers with another.
    case sendGSSContinue([UInt8])
    case succeeded
    case failed(message: String)
}

/// Sans-I/O state machine for the pooler authenticating one client, mirroring PgBouncer's
/// `handle_client_startup` / `check_client_passwd`:
/// * `md5` switches to SCRAM when the stored secret is a SCRAM verifier;
/// * `plain` accepts plain, md5 and SCRAM stored secrets;
/// * SCRAM with a plain stored password uses an ad-hoc verifier (cached);
/// * unknown users (`storedSecret == nil`) and unusable secrets go through the same messages and
///   fail with the same text as a wrong password, so user existence is not revealed.
/// Failure texts are PgBouncer's (`password authentication failed`, `SASL authentication failed`,
/// `empty password returned by client`, `"trust" authentication failed`,
/// `client selected an invalid SASL authentication mechanism`).
public struct ClientAuthenticator {
    public static let passwordFailed = "password authentication failed"
    public static let saslFailed = "SASL authentication failed"
    public static let emptyPassword = "empty password returned by client"
    public static let trustFailed = "\"trust\" authentication failed"
    public static let invalidMechanism = "client selected an invalid SASL authentication mechanism"
    public static let unexpectedMessage = "unexpected password packet"
    public static let pamFailed = "PAM authentication failed"
    public static let ldapFailed = "LDAP authentication failed"

    private enum Phase {
        case notStarted
        case awaitingPassword
        case awaitingMD5(salt: [UInt8])
        case awaitingSASLInitial
        case awaitingSASLResponse
        /// The ad-hoc verifier of a plain password is being derived (before AuthenticationSASL).
        case derivingAdHoc
        /// A cleartext password is being checked against a SCRAM verifier.
        case checkingPlain(SCRAMSecret)
        /// pam / ldap: the password is being checked elsewhere.
        case awaitingVerdict([UInt8])
        /// gss: waiting for the client's next token, or for the acceptance of the last one.
        case awaitingGSSToken
        case acceptingGSSToken
        case done
    }

    public let user: String
    /// The method actually used (md5 may have become scramSHA256).
    public let method: ClientAuthMethod
    private let storedSecret: String?
    private let cache: SCRAMKeyCache
    private var exchange: SCRAMServerExchange?
    private var phase: Phase = .notStarted
    private let channelBinding: [UInt8]?
    /// The cleartext password being checked in `.checkingPlain` (for the cache).
    private var pendingPlain: [UInt8]?
    private let scramIterations: Int
    private let mockSaltKey: [UInt8]?
    /// The ad-hoc keys to derive before the exchange can start, and the nonce drawn for it.
    private var pendingAdHoc: (request: SCRAMDerivation, nonce: [UInt8])?

    /// True once the client proved its identity.
    public private(set) var isAuthenticated = false
    /// After a successful SCRAM login against a stored SCRAM verifier: the keys for SCRAM
    /// pass-through server logins. nil for ad-hoc verifiers (the plain password is known anyway).
    public private(set) var passThroughKeys: SCRAMPassThroughKeys?
    /// After a successful pam / ldap login: the password the client proved, which PgBouncer then
    /// uses for the server login when no other is configured for the user.
    public private(set) var verifiedPassword: [UInt8]?

    /// - Parameters:
    ///   - storedSecret: auth_file / auth_query secret (plain, `md5…` or `SCRAM-SHA-256$…`);
    ///     nil for an unknown user (mock authentication).
    ///   - scramIterations: iterations for ad-hoc verifiers (PgBouncer's `scram_iterations`).
    ///   - mockSaltKey: optional per-process secret making mock salts stable per user name.
    ///   - nonceSource: server nonce for SCRAM, called at most once, during init.
    public init(method: ClientAuthMethod, user: String, storedSecret: String?, keyCache: SCRAMKeyCache,
                scramIterations: Int = 4096, mockSaltKey: [UInt8]? = nil, channelBinding: [UInt8]? = nil,
                nonceSource: () -> [UInt8] = SCRAMNonce.random) {
        defer { exchange?.channelBinding = channelBinding }
        self.user = user
        self.storedSecret = storedSecret
        self.cache = keyCache
        self.channelBinding = channelBinding
        self.scramIterations = scramIterations
        self.mockSaltKey = mockSaltKey
        var effective = method
        if method == .md5, let s = storedSecret, SCRAMSecret.isSCRAMSecret(s) { effective = .scramSHA256 }
        self.method = effective
        guard effective == .scramSHA256 else { return }

        // Pick the SCRAM credential now (the nonce source cannot be kept). An ad-hoc verifier
        // not in the cache yet is derived off the loop: `start` asks for it.
        func mock() -> SCRAMServerExchange {
            SCRAMServerExchange.mock(user: user, iterations: scramIterations, mockSaltKey: mockSaltKey,
                                     nonceSource: nonceSource)
        }
        if let s = storedSecret, !s.isEmpty {
            if SCRAMSecret.isSCRAMSecret(s) {
                if let parsed = SCRAMSecret(parsing: s) {
                    exchange = SCRAMServerExchange(secret: parsed, nonceSource: nonceSource)
                } else {
                    exchange = mock()
                }
            } else if MD5Password.isSecret(s) {
                exchange = mock()  // an md5 secret cannot verify SCRAM
            } else if let lookup = keyCache.adHocRequest(password: Array(s.utf8), iterations: scramIterations) {
                switch lookup {
                case .hit(let keys): exchange = SCRAMServerExchange(adHocKeys: keys, nonceSource: nonceSource)
                case .miss(let request): pendingAdHoc = (request, nonceSource())
                }
            } else {
                exchange = mock()
            }
        } else {
            exchange = mock()
        }
    }

    private mutating func finish(_ action: ClientAuthAction) -> ClientAuthAction {
        phase = .done
        if case .failed = action { isAuthenticated = false; passThroughKeys = nil; verifiedPassword = nil }
        return action
    }

    /// The first action after the startup packet.
    public mutating func start() -> ClientAuthAction {
        guard case .notStarted = phase else { return finish(.failed(message: ClientAuthenticator.unexpectedMessage)) }
        switch method {
        case .trust:
            guard storedSecret != nil else { return finish(.failed(message: ClientAuthenticator.trustFailed)) }
            isAuthenticated = true
            return finish(.succeeded)
        case .plain, .pam, .ldap:
            phase = .awaitingPassword
            return .sendAuthenticationCleartext
        case .gss:
            phase = .awaitingGSSToken
            return .sendAuthenticationGSS
        case .md5:
            let salt = Crypto.randomBytes(4)
            phase = .awaitingMD5(salt: salt)
            return .sendAuthenticationMD5(salt: salt)
        case .scramSHA256:
            if let pending = pendingAdHoc {
                phase = .derivingAdHoc
                return .deriveKeys(pending.request)
            }
            return offerSASL()
        }
    }

    private mutating func offerSASL() -> ClientAuthAction {
        phase = .awaitingSASLInitial
        return .sendAuthenticationSASL(mechanisms: channelBinding != nil
                                       ? [SCRAMSyntax.mechanismPlus, SCRAMSyntax.mechanism] : [SCRAMSyntax.mechanism])
    }

    /// The result of the derivation `.deriveKeys` asked for (nil: it failed).
    public mutating func keysDerived(_ keys: SCRAMKeys?) -> ClientAuthAction {
        switch phase {
        case .derivingAdHoc:
            guard let pending = pendingAdHoc else { return finish(.failed(message: ClientAuthenticator.saslFailed)) }
            pendingAdHoc = nil
            let nonce = pending.nonce
            if let keys {
                exchange = SCRAMServerExchange(adHocKeys: cache.store(pending.request, keys), nonceSource: { nonce })
            } else {
                exchange = SCRAMServerExchange.mock(user: user, iterations: scramIterations, mockSaltKey: mockSaltKey,
                                                    nonceSource: { nonce })
            }
            exchange?.channelBinding = channelBinding
            return offerSASL()
        case .checkingPlain(let secret):
            guard let keys, keys.salt == secret.salt, keys.iterations == secret.iterations else {
                return finish(.failed(message: ClientAuthenticator.passwordFailed))
            }
            if let password = pendingPlain { cache.store(SCRAMDerivation(password: password, salt: secret.salt,
                                                                        iterations: secret.iterations), keys) }
            pendingPlain = nil
            guard SCRAMKeys.matches(keys, secret) else { return finish(.failed(message: ClientAuthenticator.passwordFailed)) }
            isAuthenticated = true
            return finish(.succeeded)
        default:
            return finish(.failed(message: ClientAuthenticator.unexpectedMessage))
        }
    }

    /// Handles the body of a client 'p' message (PasswordMessage, SASLInitialResponse or
    /// SASLResponse, depending on the phase).
    public mutating func receivePassword(_ payload: [UInt8]) -> ClientAuthAction {
        switch phase {
        case .awaitingGSSToken:
            // The whole body of the 'p' message is the token.
            guard !payload.isEmpty else { return finish(.failed(message: gssFailed)) }
            phase = .acceptingGSSToken
            return .acceptGSSToken(payload)
        case .awaitingPassword where method == .pam || method == .ldap:
            var reader = AuthBodyReader(payload)
            guard let password = reader.readCString(), reader.atEnd else { return finish(.failed(message: externalFailure)) }
            if password.isEmpty { return finish(.failed(message: ClientAuthenticator.emptyPassword)) }
            phase = .awaitingVerdict(password)
            return .verifyExternally(password: password)
        case .awaitingPassword:
            let action = checkPassword(payload, md5Salt: nil)
            if case .deriveKeys = action { return action }
            return finish(action)
        case .awaitingMD5(let salt):
            return finish(checkPassword(payload, md5Salt: salt))
        case .awaitingSASLInitial:
            return saslInitial(payload)
        case .awaitingSASLResponse:
            return saslResponse(payload)
        case .notStarted, .done, .derivingAdHoc, .checkingPlain, .awaitingVerdict, .acceptingGSSToken:
            return finish(.failed(message: ClientAuthenticator.unexpectedMessage))
        }
    }

    /// PostgreSQL's text (PgBouncer has no GSSAPI).
    private var gssFailed: String { "GSSAPI authentication failed for user \"\(user)\"" }

    /// The outcome of `.acceptGSSToken`: the token for the client (sent by the caller when the
    /// context is complete too), whether the security context is complete and, if so, whether
    /// the principal may log in as `user` (`GSSPrincipal`, ident maps). nil output: the token
    /// was refused.
    public mutating func gssStep(output: [UInt8]?, complete: Bool, principalAllowed: Bool) -> ClientAuthAction {
        guard case .acceptingGSSToken = phase else { return finish(.failed(message: ClientAuthenticator.unexpectedMessage)) }
        guard let output else { return finish(.failed(message: gssFailed)) }
        guard complete else {
            guard !output.isEmpty else { return finish(.failed(message: gssFailed)) }
            phase = .awaitingGSSToken
            return .sendGSSContinue(output)
        }
        guard principalAllowed else { return finish(.failed(message: gssFailed)) }
        isAuthenticated = true
        return finish(.succeeded)
    }

    /// PgBouncer's failure text of the external methods.
    private var externalFailure: String { method == .pam ? ClientAuthenticator.pamFailed : ClientAuthenticator.ldapFailed }

    /// The verdict on the password `.verifyExternally` handed out.
    public mutating func externalVerdict(_ accepted: Bool) -> ClientAuthAction {
        guard case .awaitingVerdict(let password) = phase else {
            return finish(.failed(message: ClientAuthenticator.unexpectedMessage))
        }
        guard accepted else { return finish(.failed(message: externalFailure)) }
        isAuthenticated = true
        verifiedPassword = password
        return finish(.succeeded)
    }

    /// PasswordMessage: exactly one NUL-terminated string filling the body.
    private mutating func checkPassword(_ payload: [UInt8], md5Salt: [UInt8]?) -> ClientAuthAction {
        var reader = AuthBodyReader(payload)
        guard let password = reader.readCString(), reader.atEnd else {
            return .failed(message: ClientAuthenticator.passwordFailed)
        }
        if password.isEmpty { return .failed(message: ClientAuthenticator.emptyPassword) }
        // Unknown users and empty stored secrets never match (PgBouncer: "disallow empty passwords").
        guard let stored = storedSecret, !stored.isEmpty else { return .failed(message: ClientAuthenticator.passwordFailed) }

        let ok: Bool
        if let salt = md5Salt {
            ok = MD5Password.verify(response: password, storedSecret: stored, user: user, salt: salt)
        } else if SCRAMSecret.isSCRAMSecret(stored) {
            // Cleartext against a verifier: PBKDF2 with the verifier's salt and iterations.
            guard let secret = SCRAMSecret(parsing: stored) else { return .failed(message: ClientAuthenticator.passwordFailed) }
            guard let keys = cache.cached(password: password, salt: secret.salt, iterations: secret.iterations) else {
                phase = .checkingPlain(secret)
                pendingPlain = password
                return .deriveKeys(SCRAMDerivation(password: password, salt: secret.salt, iterations: secret.iterations))
            }
            ok = SCRAMKeys.matches(keys, secret)
        } else {
            ok = verifyPlain(password, stored: stored)
        }
        guard ok else { return .failed(message: ClientAuthenticator.passwordFailed) }
        isAuthenticated = true
        return .succeeded
    }

    /// Cleartext password against a plain or md5 stored secret (SCRAM: see `checkPassword`).
    private func verifyPlain(_ password: [UInt8], stored: String) -> Bool {
        if MD5Password.isSecret(stored) {
            // md5(password + user) over the raw bytes (exact even for non-UTF-8 passwords).
            let computed = "md5" + Crypto.md5Hex(password + Array(user.utf8))
            return Crypto.constantTimeEquals(Array(computed.utf8), Array(stored.utf8))
        }
        return Crypto.constantTimeEquals(password, Array(stored.utf8))
    }

    /// SASLInitialResponse: mechanism (NUL-terminated), int32 length (-1 = no data), data.
    private mutating func saslInitial(_ payload: [UInt8]) -> ClientAuthAction {
        var reader = AuthBodyReader(payload)
        guard let mechanism = reader.readCString() else { return finish(.failed(message: ClientAuthenticator.saslFailed)) }
        let plus = mechanism == Array(SCRAMSyntax.mechanismPlus.utf8) && exchange?.channelBinding != nil
        guard plus || mechanism == Array(SCRAMSyntax.mechanism.utf8) else {
            return finish(.failed(message: ClientAuthenticator.invalidMechanism))
        }
        exchange?.plusSelected = plus
        // The exchange is mutated in place (optional chaining), not copied out and back.
        guard let length = reader.readInt32(), length >= 0, let data = reader.readBytes(Int(length)), reader.atEnd,
              let result = exchange?.clientFirst(data) else {
            return finish(.failed(message: ClientAuthenticator.saslFailed))
        }
        switch result {
        case .success(let serverFirst):
            phase = .awaitingSASLResponse
            return .sendSASLContinue(serverFirst)
        case .failure:
            return finish(.failed(message: ClientAuthenticator.saslFailed))
        }
    }

    /// SASLResponse: the whole body is the client-final-message.
    private mutating func saslResponse(_ payload: [UInt8]) -> ClientAuthAction {
        guard let result = exchange?.clientFinal(payload) else { return finish(.failed(message: ClientAuthenticator.saslFailed)) }
        switch result {
        case .success(let serverFinal):
            isAuthenticated = true
            if exchange?.isAdHoc == false && exchange?.isMock == false { passThroughKeys = exchange?.passThroughKeys }
            return finish(.sendSASLFinal(serverFinal))
        case .failure:
            return finish(.failed(message: ClientAuthenticator.saslFailed))
        }
    }
}
