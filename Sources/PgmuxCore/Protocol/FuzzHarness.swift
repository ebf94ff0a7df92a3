/// One entry point that pushes arbitrary bytes through every parser that meets untrusted input:
/// startup packets, the relay scanner and release tracking, prepared-statement rewriting, the
/// admin grammar, SCRAM and password messages. The libFuzzer target (`make fuzz`) and the corpus
/// regression test both call it; any trap here is a bug that would kill every connection.
public enum FuzzHarness {
    public static func run(_ data: UnsafeRawBufferPointer) {
        guard let base = data.baseAddress, data.count > 0 else { return }
        let selector = data[0] % 5
        let rest = UnsafeRawBufferPointer(rebasing: data[1...])
        switch selector {
        case 0:
            _ = StartupPacket.parse(rest)
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

    private static func rewrite(_ bytes: UnsafeRawBufferPointer) {
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
    }
}
