/// What the server-login code must do after an Authentication ('R') message.
public enum ServerAuthAction: Equatable, Sendable {
    /// Send a PasswordMessage ('p') holding this string (cleartext password or md5 response).
    case sendPassword(String)
    /// Send SASLInitialResponse ('p': mechanism, int32 length, data).
    case sendSASLInitial(mechanism: String, data: [UInt8])
    /// Send SASLResponse ('p': raw data).
    case sendSASLResponse([UInt8])
    /// Run this PBKDF2 derivation off the event loop, then pass its result to `keysDerived`
    /// (nothing is sent meanwhile).
    case deriveKeys(SCRAMDerivation)
    /// Nothing to send (e.g. SASLFinal verified; AuthenticationOk follows).
    case none
    /// AuthenticationOk: the login continues with ParameterStatus/BackendKeyData/ReadyForQuery.
    case authenticated
    /// Abort the server login with this reason (for logs and the cached login error).
    case failed(String)
}

/// Sans-I/O: the pooler answering PostgreSQL's Authentication requests during a server login.
///
/// Credentials, as in PgBouncer: the stored secret for this login (`password`: plain text, an md5
/// secret or a SCRAM verifier) and optionally SCRAM pass-through keys from an authenticated client.
/// * cleartext (3) needs a plain password;
/// * md5 (5) works with a plain password or an md5 secret (the secret *is* md5(password+user));
/// * SASL (10) SCRAM-SHA-256 works with a plain password, or with pass-through keys when only a
///   SCRAM verifier is stored (same salt/iterations as the server required).
/// The server's final signature is verified, and AuthenticationOk before a started SCRAM exchange
/// completed is refused, so a fake server cannot skip mutual authentication.
///
/// Channel binding (`server_channel_binding`), as libpq's `channel_binding`: with the hash of the
/// server's TLS certificate at hand, SCRAM-SHA-256-PLUS is used whenever the server offers it;
/// under `require` every other way of logging in is refused, with libpq's words.
public struct ServerAuthenticator {
    public static let noPassword = "no password for server login"

    private enum Phase {
        case waiting
        case saslInProgress
        /// `.deriveKeys` was returned; waiting for `keysDerived`.
        case derivingKeys
        case saslVerified
        case done
    }

    public let user: String
    private let password: String?
    private let passThroughKeys: SCRAMPassThroughKeys?
    private let cache: SCRAMKeyCache
    private let clientNonce: [UInt8]
    /// tls-server-end-point of the server's certificate; nil without TLS.
    private let tlsEndPoint: [UInt8]?
    private let channelBindingMode: ServerChannelBinding
    private var exchange: SCRAMClientExchange?
    private var phase: Phase = .waiting

    /// - Parameters:
    ///   - password: the secret to log in with; nil/empty if none is known.
    ///   - passThroughKeys: from a client's SCRAM login (`ClientAuthenticator.passThroughKeys`).
    ///   - tlsEndPoint: channel-binding data of the server connection's TLS session, if any.
    ///   - channelBinding: `server_channel_binding`.
    ///   - nonceSource: SCRAM client nonce, called once, during init.
    public init(user: String, password: String?, passThroughKeys: SCRAMPassThroughKeys? = nil,
                keyCache: SCRAMKeyCache, tlsEndPoint: [UInt8]? = nil, channelBinding: ServerChannelBinding = .prefer,
                nonceSource: () -> [UInt8] = SCRAMNonce.random) {
        self.user = user
        self.tlsEndPoint = tlsEndPoint
        self.channelBindingMode = channelBinding
        self.password = (password?.isEmpty ?? true) ? nil : password
        self.passThroughKeys = passThroughKeys
        self.cache = keyCache
        self.clientNonce = nonceSource()
    }

    private var plainPassword: String? {
        guard let p = password, !MD5Password.isSecret(p), !SCRAMSecret.isSCRAMSecret(p) else { return nil }
        return p
    }

    /// The login went through SCRAM-SHA-256-PLUS (the server's signature checked).
    private var bound: Bool {
        guard case .saslVerified = phase, case .bound = exchange?.channelBinding else { return false }
        return true
    }

    private mutating func fail(_ reason: String) -> ServerAuthAction {
        phase = .done
        return .failed(reason)
    }

    /// The stored secret cannot answer this kind of request: PgBouncer logs the reason and tells
    /// waiting clients `server login failed: wrong password type`.
    public private(set) var failedOnPasswordType = false

    private mutating func failOnPasswordType(_ reason: String) -> ServerAuthAction {
        failedOnPasswordType = true
        return fail(reason)
    }

    /// Handles the body of an 'R' message: int32 code followed by code-specific data.
    public mutating func receive(_ body: [UInt8]) -> ServerAuthAction {
        if case .done = phase { return fail("unexpected authentication request") }
        var reader = AuthBodyReader(body)
        guard let code = reader.readInt32() else { return fail("malformed authentication request") }
        if channelBindingMode == .require, ![0, 10, 11, 12].contains(code) {
            return fail("channel binding required but not supported by server's authentication request")
        }
        switch code {
        case 0:
            switch phase {
            case .saslInProgress, .derivingKeys: return fail("server did not complete SCRAM authentication")
            default: break
            }
            if channelBindingMode == .require, !bound {
                return fail("channel binding required, but server authenticated client without channel binding")
            }
            phase = .done
            return .authenticated
        case 3:
            guard case .waiting = phase else { return fail("unexpected authentication request") }
            if let p = plainPassword { return .sendPassword(p) }
            if password != nil { return fail("cannot do cleartext authentication with a hashed password") }
            return fail(ServerAuthenticator.noPassword)
        case 5:
            guard case .waiting = phase else { return fail("unexpected authentication request") }
            guard let salt = reader.readBytes(4), reader.atEnd else { return fail("malformed MD5 authentication request") }
            guard let stored = password else { return fail(ServerAuthenticator.noPassword) }
            if SCRAMSecret.isSCRAMSecret(stored) { return failOnPasswordType("cannot do MD5 authentication: wrong password type") }
            let secret = MD5Password.isSecret(stored) ? stored : MD5Password.secret(password: stored, user: user)
            return .sendPassword(MD5Password.response(secret: secret, salt: salt))
        case 10:
            guard case .waiting = phase else { return fail("unexpected authentication request") }
            return saslStart(&reader)
        case 11:
            guard case .saslInProgress = phase, var exchange = self.exchange else {
                return fail("unexpected SASLContinue message")
            }
            let result = exchange.serverFirstStep(reader.readRest())
            self.exchange = exchange
            switch result {
            case .success(.send(let clientFinal)): return .sendSASLResponse(clientFinal)
            case .success(.derive(let request)):
                phase = .derivingKeys
                return .deriveKeys(request)
            case .failure(let failure): return fail(failure.message)
            }
        case 12:
            guard case .saslInProgress = phase, let exchange = self.exchange else {
                return fail("unexpected SASLFinal message")
            }
            switch exchange.serverFinal(reader.readRest()) {
            case .success:
                phase = .saslVerified
                return .none
            case .failure(let failure):
                return fail(failure.message)
            }
        default:
            return fail("unsupported authentication method: \(code)")
        }
    }

    /// The result of the derivation `.deriveKeys` asked for (nil: it failed).
    public mutating func keysDerived(_ keys: SCRAMKeys?) -> ServerAuthAction {
        guard case .derivingKeys = phase, var exchange = self.exchange else { return fail("unexpected SCRAM key derivation") }
        let result = exchange.keysDerived(keys)
        self.exchange = exchange
        switch result {
        case .success(let clientFinal):
            phase = .saslInProgress
            return .sendSASLResponse(clientFinal)
        case .failure(let failure):
            return fail(failure.message)
        }
    }

    /// AuthenticationSASL: a list of NUL-terminated mechanism names ended by an empty one.
    private mutating func saslStart(_ reader: inout AuthBodyReader) -> ServerAuthAction {
        var mechanisms: [[UInt8]] = []
        while true {
            guard let m = reader.readCString() else { return fail("malformed SASL mechanism list") }
            if m.isEmpty { break }
            mechanisms.append(m)
        }
        guard reader.atEnd else { return fail("malformed SASL mechanism list") }
        let offersPlus = mechanisms.contains(Array(SCRAMSyntax.mechanismPlus.utf8))
        let offersPlain = mechanisms.contains(Array(SCRAMSyntax.mechanism.utf8))
        let binding: SCRAMChannelBinding
        switch (channelBindingMode, tlsEndPoint) {
        case (.require, nil):
            return fail("channel binding required, but SSL not in use")
        case (.prefer, let data?) where offersPlus, (.require, let data?) where offersPlus:
            binding = .bound(data)
        case (.require, _?):
            return fail(offersPlain ? "channel binding is required, but server did not offer an authentication method "
                                      + "that supports channel binding"
                                    : "none of the server's SASL authentication mechanisms are supported")
        case (.prefer, _?) where offersPlain:
            binding = .notOffered
        case (_, _) where offersPlain:
            binding = .unsupported
        default:
            return fail("none of the server's SASL authentication mechanisms are supported")
        }
        let nonce = clientNonce
        var newExchange: SCRAMClientExchange
        if let p = plainPassword {
            newExchange = SCRAMClientExchange(password: p, cache: cache, nonceSource: { nonce })
        } else if let keys = passThroughKeys {
            newExchange = SCRAMClientExchange(passThrough: keys, nonceSource: { nonce })
        } else if let stored = password, MD5Password.isSecret(stored) {
            return failOnPasswordType("cannot do SCRAM authentication: wrong password type")
        } else if password != nil {
            return failOnPasswordType("cannot do SCRAM authentication: password is SCRAM secret but client authentication "
                                      + "did not provide SCRAM keys")
        } else {
            return fail(ServerAuthenticator.noPassword)
        }
        newExchange.channelBinding = binding
        exchange = newExchange
        phase = .saslInProgress
        return .sendSASLInitial(mechanism: binding.mechanism, data: newExchange.clientFirstMessage())
    }
}
