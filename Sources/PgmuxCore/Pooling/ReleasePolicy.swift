/// What a pool mode means at the two moments that matter: a ReadyForQuery that answers the last
/// request, and the client going away. One small table instead of mode checks scattered around.
public enum ReleaseDecision: Equatable, Sendable {
    /// Keep the server linked to the client.
    case keep
    /// Give the server back to the pool (after the client has everything).
    case release
    /// Statement mode saw a transaction left open: refuse it.
    case refuseTransaction
}

public enum ReleasePolicy {
    /// Decision at a ReadyForQuery whose tracker state is `tracker` (already updated).
    @inlinable
    public static func atReadyForQuery(mode: PoolMode, tracker: TransactionTracker) -> ReleaseDecision {
        switch mode {
        case .session:
            return .keep
        case .transaction:
            return tracker.isIdle ? .release : .keep
        case .statement:
            if tracker.status != UInt8(ascii: "I") { return .refuseTransaction }
            return tracker.isIdle ? .release : .keep
        }
    }

    /// What to do with a server whose client disconnected.
    public enum OnClientGone: Equatable, Sendable {
        /// Clean: back to the pool, after `resetQuery` if one is given.
        case reuse(resetQuery: String?)
        /// Mid-request or mid-transaction: the server cannot be trusted for another client.
        case close(reason: String)
    }

    /// `replication`: the server is a walsender, never lent again (PgBouncer closes it too).
    /// `dirty`: the client may have changed session state (`DirtySession`); a session-mode
    /// server is reset only then, unless server_reset_query_always.
    public static func onClientGone(mode: PoolMode, tracker: TransactionTracker, unsentBytes: Bool,
                                    resetQuery: String, resetAlways: Bool, replication: Bool = false,
                                    dirty: Bool = true) -> OnClientGone {
        if replication { return .close(reason: "replication client disconnected") }
        if !tracker.isQuiet || unsentBytes {
            return .close(reason: "client disconnected with query in progress")
        }
        if tracker.status != UInt8(ascii: "I") {
            return .close(reason: "client disconnect while server was not ready")
        }
        let wantsReset = (mode == .session && dirty) || resetAlways
        return .reuse(resetQuery: wantsReset && !resetQuery.isEmpty ? resetQuery : nil)
    }
}
