/// One entry point that pushes arbitrary bytes through every parser that meets untrusted input:
/// startup packets, the relay scanner and release tracking, prepared-statement rewriting and
/// LISTEN recognition, the admin grammar, SCRAM and password messages, ALPN lists, and what a
/// server sends (its login replies, and
/// the messages the relay reads from it). The libFuzzer target (`make fuzz`) and the corpus
/// regression test both call it; any trap here is a bug that would kill every connection.
public enum FuzzHarness {
    public static func run(_ data: UnsafeRawBufferPointer) {
        guard let base = data.baseAddress, data.count > 0 else { return }
        let rest = UnsafeRawBufferPointer(rebasing: data[1...])
        // Selectors 0xF0... are the server-side targets; the others keep the corpus's meaning.
        if data[0] >= 0xF8 { serverRelay(rest); return }
        if data[0] >= 0xF0 {
            serverLogin(rest, tlsEndPoint: nil)
            serverLogin(rest, tlsEndPoint: Array(repeating: 0x5a, count: 32))  // SCRAM-SHA-256-PLUS
            return
        }
        let selector = data[0] % 5
        switch selector {
        case 0:
            switch StartupPacket.parse(rest) {
            case .success(.cancel(let key)):
                // A CancelRequest's key decides where it goes (peers).
                _ = PeerCancelKey.route(key, ourPeerId: 1, peers: [2, 3])
            case .success(.startup(_, let parameters)):
                for (k, v) in parameters where k == "replication" { _ = ReplicationMode.parse(v) }
            default:
                break
            }
            _ = StartupPacket.length(base + 1, available: rest.count)
        case 1:
            relay(rest)
        case 2:
            rewrite(rest)
        case 3:
            _ = AdminParser.parse(String(decoding: rest, as: UTF8.self))
        default:
            authenticate(rest)
        }
    }

    /// Walks the bytes as a message stream in both directions with a small buffer capacity.
    private static func relay(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return }
        var scanner = RelayScanner()
        var tracker = TransactionTracker()
        var expectations = ResponseExpectations()
        var pos = 0
        var steps = 0
        while steps < 10_000 {
            steps += 1
            switch scanner.next(base, position: pos, end: bytes.count, capacity: 64, maxPacketSize: 1 << 20,
                                wantWhole: { $0 == UInt8(ascii: "Z") || $0 == UInt8(ascii: "1") },
                                wantHeader: { _ in true }) {
            case .needMore, .invalid:
                return
            case .header(let type, let start, _):
                tracker.sent(type)
                if type == UInt8(ascii: "G") { tracker.copyInStarted() }
                if type == UInt8(ascii: "E") { _ = expectations.error() }
                if type == UInt8(ascii: "S") { expectations.append(.sync) }
                pos = start
            case .message(let type, let start, let total):
                if type == UInt8(ascii: "Z"), total == 6 {
                    tracker.readyForQuery(bytes[start + 5])
                    expectations.readyForQuery()
                    _ = ReleasePolicy.atReadyForQuery(mode: .statement, tracker: tracker)
                } else {
                    _ = expectations.parseComplete().swallow
                }
                pos = start + total
            }
        }
    }

    /// A server's login replies, framed as `ServerConnection.handleLogin` reads them (messages
    /// larger than the relay buffer are refused there): authentication requests through the
    /// authenticator, ParameterStatus, BackendKeyData, ErrorResponse fields; with a TLS
    /// end point, as over TLS (channel binding when the server offers PLUS).
    private static func serverLogin(_ bytes: UnsafeRawBufferPointer, tlsEndPoint: [UInt8]?) {
        guard let base = bytes.baseAddress else { return }
        // A fixed client nonce, so that the fuzzer can build a SASLContinue that gets past it.
        var auth = ServerAuthenticator(user: "u", password: "pw", keyCache: SCRAMKeyCache(capacity: 2),
                                       tlsEndPoint: tlsEndPoint, nonceSource: { Array("fuzznonce".utf8) })
        var pos = 0
        while case .message(let type, let total) = Framing.peek(base + pos, available: bytes.count - pos, maxPacketSize: 16384),
              bytes.count - pos >= total {
            let body = Array(bytes[(pos + 5)..<(pos + total)])
            pos += total
            switch type {
            case UInt8(ascii: "R"):
                var action = auth.receive(body)
                if case .deriveKeys(let request) = action {
                    // The worker's job, run here only when cheap (the fuzzer must stay fast).
                    action = auth.keysDerived(request.iterations <= 64 ? request.run() : nil)
                }
                switch action {
                case .failed, .authenticated: return
                case .sendPassword, .sendSASLInitial, .sendSASLResponse, .deriveKeys, .none: break
                }
            case UInt8(ascii: "S"):
                _ = MessageReader.parameterStatus(body)
            case UInt8(ascii: "K"):
                var r = MessageReader(body)
                _ = (r.int32(), r.int32())
            case UInt8(ascii: "E"):
                _ = MessageReader.errorFields(body)
                return
            case UInt8(ascii: "Z"):
                return
            default:
                break
            }
        }
    }

    /// The server relay's reading of backend messages, as `ServerConnection.relay` does it: the
    /// same whole/header choices, ReadyForQuery status, ParameterStatus, ParseComplete and
    /// CloseComplete against the expectations of messages a client sent, CommandComplete tags,
    /// ErrorResponse, CopyInResponse.
    private static func serverRelay(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return }
        var scanner = RelayScanner()
        var tracker = TransactionTracker()
        var expectations = ResponseExpectations()
        var cache = ServerStatementCache(capacity: 2)
        // A client that sent Parse, Close, Bind-with-injected-Parse and Sync before these replies.
        expectations.append(contentsOf: [.parse(id: 0, swallow: true), .parse(id: 1, swallow: false, clientName: "a"),
                                         .close(swallow: true), .sync, .parse(id: nil, swallow: false), .sync])
        _ = cache.insert(0); _ = cache.insert(1)
        tracker.sent(UInt8(ascii: "S")); tracker.sent(UInt8(ascii: "S"))
        var pos = 0
        var steps = 0
        while steps < 10_000 {
            steps += 1
            switch scanner.next(base, position: pos, end: bytes.count, capacity: 256, maxPacketSize: 1 << 20,
                                wantWhole: { [UInt8(ascii: "Z"), UInt8(ascii: "S"), UInt8(ascii: "1"), UInt8(ascii: "3"),
                                              UInt8(ascii: "C")].contains($0) },
                                wantHeader: { $0 == UInt8(ascii: "G") || $0 == UInt8(ascii: "E") }) {
            case .needMore, .invalid:
                return
            case .header(let type, let start, _):
                if type == UInt8(ascii: "G") { tracker.copyInStarted() } else {
                    for lost in expectations.error().lost { cache.remove(lost.id) }
                }
                pos = start
            case .message(let type, let start, let total):
                let body = UnsafeRawBufferPointer(rebasing: bytes[(start + 5)..<(start + total)])
                switch type {
                case UInt8(ascii: "Z"):
                    guard total == 6 else { return }  // the relay closes such a server
                    tracker.readyForQuery(body[0])
                    expectations.readyForQuery()
                    _ = ReleasePolicy.atReadyForQuery(mode: .transaction, tracker: tracker)
                case UInt8(ascii: "S"):
                    _ = MessageReader.parameterStatus(Array(body))
                case UInt8(ascii: "1"):
                    _ = expectations.parseComplete()
                case UInt8(ascii: "3"):
                    _ = expectations.closeComplete()
                default:
                    if CommandTag.dropsPreparedStatements(body) { cache.removeAll() }
                }
                pos = start + total
            }
        }
    }

    private static func rewrite(_ bytes: UnsafeRawBufferPointer) {
        // What an idle client's Query or Parse batch meets first (LISTEN / UNLISTEN).
        _ = ListenStatement.mightBe(bytes)
        _ = ListenStatement.classify(bytes)
        _ = ListenStatement.extended(bytes)
        let registry = PreparedStatementRegistry()
        var cache = ServerStatementCache(capacity: 2)
        var rewriter = PreparedStatementRewriter()
        var i = 0
        // Each chunk: type selector byte, length byte, body.
        while i + 2 <= bytes.count {
            let type = [UInt8(ascii: "P"), UInt8(ascii: "B"), UInt8(ascii: "D"), UInt8(ascii: "C")][Int(bytes[i] % 4)]
            let n = min(Int(bytes[i + 1]), bytes.count - i - 2)
            let body = UnsafeRawBufferPointer(rebasing: bytes[(i + 2)..<(i + 2 + n)])
            _ = rewriter.rewrite(type: type, body: body, server: &cache, registry: registry)
            _ = rewriter.rewriteBindPrefix(body, bodyLength: n + Int(bytes[i]), server: &cache, registry: registry)
            i += 2 + n
        }
    }

    private static func authenticate(_ bytes: UnsafeRawBufferPointer) {
        let cache = SCRAMKeyCache(capacity: 4)
        let payload = Array(bytes)
        var scram = ClientAuthenticator(method: .scramSHA256, user: "u", storedSecret: "pw", keyCache: cache, scramIterations: 16)
        _ = scram.start()
        let half = payload.count / 2
        _ = scram.receivePassword(Array(payload[..<half]))
        _ = scram.receivePassword(Array(payload[half...]))
        var md5 = ClientAuthenticator(method: .md5, user: "u", storedSecret: "pw", keyCache: cache)
        _ = md5.start()
        _ = md5.receivePassword(payload)
        var server = ServerAuthenticator(user: "u", password: "pw", keyCache: cache)
        _ = server.receive(payload)
        // pam / ldap (a cleartext password handed out) and gss (a token handed out).
        for method in [ClientAuthMethod.pam, .gss] {
            var external = ClientAuthenticator(method: method, user: "u", storedSecret: nil, keyCache: cache)
            _ = external.start()
            _ = external.receivePassword(payload)
        }
        // A TLS client's ALPN list.
        _ = DirectTLS.select(bytes)
    }
}
