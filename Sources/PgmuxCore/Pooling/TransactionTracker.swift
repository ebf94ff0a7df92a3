/// Tracks where a server connection stands in the request/response conversation, from message
/// headers alone, to decide when it may go back to the pool: only at a ReadyForQuery 'I' that
/// answers the last request, with nothing sent since (PgBouncer's release rule, §3.2).
public struct TransactionTracker: Sendable, Equatable {
    /// Requests sent that each still owe one ReadyForQuery (Query, Sync, FunctionCall).
    public var pendingReady = 0
    /// Extended-protocol messages were sent after the last Sync: the server is mid-conversation.
    public var unsynced = false
    /// Status byte of the last ReadyForQuery: 'I' idle, 'T' in transaction, 'E' failed transaction.
    public var status: UInt8 = UInt8(ascii: "I")
    /// Syncs sent since the last Execute or Query: if that request turns out to be a COPY FROM
    /// STDIN, the server receives them in copy-in mode and ignores them (no ReadyForQuery).
    public var syncsSinceRequest = 0
    /// The server is in copy-in mode (CopyInResponse seen, CopyDone/CopyFail not yet sent).
    public var copyIn = false
    /// The last request was an Execute (extended protocol): a COPY it starts needs a Sync after
    /// CopyDone/CopyFail before the server answers with ReadyForQuery.
    public var lastRequestExtended = false

    public init() {}

    /// A frontend message header went to the server.
    @inlinable @inline(__always)
    public mutating func sent(_ type: UInt8) {
        switch type {
        case UInt8(ascii: "S"):
            if copyIn { return }  // ignored by the server in copy-in mode
            pendingReady += 1
            syncsSinceRequest += 1
            unsynced = false
        case UInt8(ascii: "Q"), UInt8(ascii: "F"):
            pendingReady += 1
            syncsSinceRequest = 0
            lastRequestExtended = false
            unsynced = false
        case UInt8(ascii: "E"):
            syncsSinceRequest = 0
            lastRequestExtended = true
            unsynced = true
        case UInt8(ascii: "P"), UInt8(ascii: "B"), UInt8(ascii: "D"), UInt8(ascii: "C"):
            unsynced = true
        case UInt8(ascii: "c"), UInt8(ascii: "f"):
            if copyIn && lastRequestExtended { unsynced = true }
            copyIn = false
        default:
            // CopyData belongs to an already counted request. Flush asks for output and owes no
            // reply of its own: libpq pipelines (psycopg's pipeline exit) send it right after a
            // Sync, and counting it left the server pinned after its ReadyForQuery.
            break
        }
    }

    /// A ReadyForQuery with `status` came back.
    @inlinable @inline(__always)
    public mutating func readyForQuery(_ status: UInt8) {
        if pendingReady > 0 { pendingReady -= 1 }
        self.status = status
    }

    /// The server sent CopyInResponse: Syncs pipelined after the COPY's Execute were received in
    /// copy-in mode and will never be answered.
    @inlinable
    public mutating func copyInStarted() {
        pendingReady = max(0, pendingReady - syncsSinceRequest)
        syncsSinceRequest = 0
        copyIn = true
    }

    /// Requests the pooler sends itself (reset, parameter sync, health check) count the same way.
    public mutating func sentOwnQuery() { pendingReady += 1; unsynced = false }

    /// True when the server owes nothing and holds no open transaction.
    @inlinable
    public var isIdle: Bool { isQuiet && status == UInt8(ascii: "I") }

    /// True when the client side is between requests (nothing owed), whatever the transaction state.
    @inlinable
    public var isQuiet: Bool { pendingReady == 0 && !unsynced && !copyIn }

    public mutating func reset() { self = TransactionTracker() }
}
