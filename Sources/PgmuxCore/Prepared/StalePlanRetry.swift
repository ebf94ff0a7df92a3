/// One execution sent again after "cached plan must not change result type" (`StalePlan`),
/// transparently: the statement is prepared anew on the same server and the execution repeated,
/// once, so that outside a transaction block the client never sees the error (after a migration
/// every prepared statement of the changed tables would otherwise fail once per server).
///
/// Only the simplest and most common batch is kept for this: Bind of a named statement the
/// server already holds, an optional Describe of the portal, Execute and Sync, arriving together,
/// sent while nothing else was in flight and no transaction was open. The stale plan is reported
/// at Bind, before any reply the client could have seen, so repeating the batch is invisible.
/// Anything else (a Parse in the batch, an explicit transaction, a pipeline) gets the error as
/// PostgreSQL sent it. Pure: bytes in, bytes out.
public struct StalePlanRetry: Sendable {
    private enum Phase: Sendable { case idle, capturing, armed }
    private var phase = Phase.idle
    private var statement = 0
    /// The batch as it was sent to the server (statement names already rewritten).
    private var batch: [UInt8] = []
    /// The types of its messages, for the transaction tracker when it is sent again.
    public private(set) var types: [UInt8] = []

    public init() {}

    public var isCapturing: Bool { phase == .capturing }
    public var isArmed: Bool { phase == .armed }

    /// A Bind of `statement` (already on the server) opens a batch.
    public mutating func begin(statement id: Int, bind: [UInt8]) {
        phase = .capturing
        statement = id
        batch.removeAll(keepingCapacity: true)
        types.removeAll(keepingCapacity: true)
        batch += bind
        types.append(UInt8(ascii: "B"))
    }

    /// The next message of the batch, whole: a Describe or an Execute is kept, a Sync arms the
    /// retry, anything else (or a batch too large to be worth keeping) gives it up.
    public mutating func add(_ type: UInt8, _ message: UnsafeRawBufferPointer) {
        guard phase == .capturing else { return }
        switch type {
        case UInt8(ascii: "D"), UInt8(ascii: "E"), UInt8(ascii: "S"):
            guard batch.count + message.count <= Self.maxBatch else { cancel(); return }
            batch += message
            types.append(type)
            if type == UInt8(ascii: "S") { phase = .armed }
        default:
            cancel()
        }
    }

    /// Forgets the batch (its reply came, or it did not qualify).
    public mutating func cancel() { phase = .idle }

    /// The stale plan was reported for the armed batch: Close and Parse of its statement, then
    /// the batch again (their expectations: the Close and the Parse swallowed, the Sync). Nil when
    /// nothing is armed, or the statement cannot be prepared by a Parse.
    public mutating func resend(registry: PreparedStatementRegistry) -> (bytes: [UInt8], types: [UInt8], expectations: [Expectation])? {
        guard phase == .armed, !registry.isSQL(statement) else { phase = .idle; return nil }
        phase = .idle
        let close = PreparedStatementRegistry.message(UInt8(ascii: "C"), [UInt8(ascii: "S")] + registry.serverName(statement) + [0])
        return (close + registry.parseMessage(statement) + batch, [UInt8(ascii: "C"), UInt8(ascii: "P")] + types,
                [.close(swallow: true), .parse(id: statement, swallow: true), .sync])
    }

    /// Batches larger than this are not kept (a Bind with large parameters is rare here).
    public static let maxBatch = 8192
}
