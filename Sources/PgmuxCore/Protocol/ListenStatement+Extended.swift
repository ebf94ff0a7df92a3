/// LISTEN / UNLISTEN sent with the extended protocol, as drivers do by default (pgJDBC, libpq's
/// PQexecParams): one batch of an unnamed Parse of the statement without parameters, a Bind of
/// it to the unnamed portal without parameters, an optional Describe, an Execute and a Sync,
/// whole in what the client sent. The reply is what PostgreSQL would send for it.
extension ListenStatement {
    public enum ExtendedMatch: Equatable {
        /// Not such a batch: it goes to a server.
        case no
        /// It may be one, but has not been read whole.
        case incomplete
        /// The batch of `consumed` bytes and the reply that ends in ReadyForQuery (idle).
        case batch(ListenStatement, consumed: Int, reply: [UInt8])
    }

    /// Longer batches are never waited for: a LISTEN is short.
    public static let maxBatchBytes = 4096

    public static func extended(_ pending: UnsafeRawBufferPointer) -> ExtendedMatch {
        // Every Parse of an idle client comes here: most are decided without allocating.
        guard pending.count >= 5, pending[0] == UInt8(ascii: "P") else { return .no }
        let first = Int(pending[1]) << 24 | Int(pending[2]) << 16 | Int(pending[3]) << 8 | Int(pending[4])
        guard first >= 4, first < maxBatchBytes else { return .no }
        if 1 + first <= pending.count {
            guard unnamedParseText(UnsafeRawBufferPointer(rebasing: pending[5..<(1 + first)])) != nil else { return .no }
        } else if pending.count > 5 {
            guard pending[5] == 0, mightBe(UnsafeRawBufferPointer(rebasing: pending[6...])) else { return .no }
        }
        var messages: [(type: UInt8, body: UnsafeRawBufferPointer)] = []
        var at = 0
        // Read up to five messages, the last a Sync.
        while messages.count < 5 {
            guard at + 5 <= pending.count else { return at < maxBatchBytes && plausible(messages) ? .incomplete : .no }
            let length = Int(pending[at + 1]) << 24 | Int(pending[at + 2]) << 16 | Int(pending[at + 3]) << 8 | Int(pending[at + 4])
            guard length >= 4, at + 1 + length <= maxBatchBytes else { return .no }
            guard at + 1 + length <= pending.count else { return plausible(messages) ? .incomplete : .no }
            messages.append((pending[at], UnsafeRawBufferPointer(rebasing: pending[(at + 5)..<(at + 1 + length)])))
            at += 1 + length
            // Parse, Bind, [Describe,] Execute, Sync: anything else (a Flush, a second statement)
            // goes to a server, and nothing is waited for that may never come.
            guard inOrder(messages.map(\.type)) else { return .no }
            if messages.last!.type == UInt8(ascii: "S") { break }
        }
        guard messages.last?.type == UInt8(ascii: "S"), let text = unnamedParseText(messages[0].body),
              let statement = classify(text) else { return .no }
        let kinds = messages.dropFirst().dropLast().map(\.type)
        var reply = MessageBuilder()
        reply.raw(UInt8(ascii: "1"), [])
        switch kinds.count {
        case 2 where kinds[0] == UInt8(ascii: "B") && kinds[1] == UInt8(ascii: "E"): break
        case 3 where kinds[0] == UInt8(ascii: "B") && kinds[1] == UInt8(ascii: "D") && kinds[2] == UInt8(ascii: "E"): break
        default: return .no
        }
        guard unnamedBindWithoutParameters(messages[1].body), executesUnnamedPortal(messages[messages.count - 2].body)
        else { return .no }
        reply.raw(UInt8(ascii: "2"), [])
        if kinds.count == 3 {
            let d = messages[2].body
            guard d.count == 2, d[1] == 0, d[0] == UInt8(ascii: "P") || d[0] == UInt8(ascii: "S") else { return .no }
            if d[0] == UInt8(ascii: "S") { reply.raw(UInt8(ascii: "t"), [0, 0]) }
            reply.raw(UInt8(ascii: "n"), [])
        }
        reply.commandComplete(statement.commandTag)
        reply.readyForQuery(UInt8(ascii: "I"))
        return .batch(statement, consumed: at, reply: reply.bytes)
    }

    private static func inOrder(_ types: [UInt8]) -> Bool {
        let expected: [[UInt8]] = [Array("PBES".utf8), Array("PBDES".utf8)]
        return expected.contains { $0.starts(with: types) }
    }

    /// What has been read so far could begin such a batch (a Parse first, Syncs only last).
    private static func plausible(_ messages: [(type: UInt8, body: UnsafeRawBufferPointer)]) -> Bool {
        messages.first.map { $0.type == UInt8(ascii: "P") } ?? true
    }

    /// An unnamed Parse without parameter types whose text may be one LISTEN / UNLISTEN: its text.
    private static func unnamedParseText(_ body: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        // The first bytes decide first, so that other texts are not scanned to their end.
        guard body.count >= 4, body[0] == 0, mightBe(UnsafeRawBufferPointer(rebasing: body[1...])),
              let end = body[1...].firstIndex(of: 0), end + 3 == body.count, body[end + 1] == 0, body[end + 2] == 0
        else { return nil }
        return UnsafeRawBufferPointer(rebasing: body[1..<end])
    }

    /// A Bind of the unnamed statement to the unnamed portal, without parameters (result
    /// formats do not matter: the statement returns no rows).
    private static func unnamedBindWithoutParameters(_ body: UnsafeRawBufferPointer) -> Bool {
        guard body.count >= 6, body[0] == 0, body[1] == 0 else { return false }
        let formats = Int(body[2]) << 8 | Int(body[3])
        let at = 4 + 2 * formats
        guard body.count >= at + 2, body[at] == 0, body[at + 1] == 0 else { return false }
        let results = body.count >= at + 4 ? Int(body[at + 2]) << 8 | Int(body[at + 3]) : -1
        return body.count == at + 4 + 2 * results
    }

    private static func executesUnnamedPortal(_ body: UnsafeRawBufferPointer) -> Bool {
        body.count == 5 && body[0] == 0
    }
}
