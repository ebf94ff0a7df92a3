/// Which client connections the old process may give to the new one, and when.
public enum HandOverRule {
    public enum Verdict: Equatable, Sendable {
        /// Idle between transactions with nothing buffered: its socket and state go now.
        case now
        /// Busy (in a transaction, waiting, bytes buffered either way): asked again later.
        case later
        /// Never handed over; it stays with the old process until it disconnects.
        case stays
    }

    /// What the rule looks at for one client.
    public struct Facts: Equatable, Sendable {
        /// TLS: OpenSSL cannot export a session, so the socket is useless without it.
        public var tls = false
        /// A console client: it watches this process, not the pooler.
        public var adminConsole = false
        /// A replication client holds its server for the whole session.
        public var replication = false
        /// Logged in, unlinked, not queued for a server.
        public var idle = false
        /// Linked to a server (a transaction, or session pooling).
        public var linked = false
        /// Session pooling, or a client pinned in transaction pooling: the server it holds, which
        /// can only move with it (`linked` then means nothing more; the server's facts decide).
        public var sessionServer: ServerFacts?
        /// Read but not yet forwarded bytes, or pooler bytes not yet written to it.
        public var bufferedBytes = false
        /// Part of an oversized Parse gathered so far.
        public var partialMessage = false
        /// Listens through its pool's listener connection (LISTEN in transaction pooling): the
        /// subscription lives in this process, which keeps delivering its notifications.
        public var listens = false
        public init(tls: Bool = false, adminConsole: Bool = false, replication: Bool = false, idle: Bool = false,
                    linked: Bool = false, sessionServer: ServerFacts? = nil, bufferedBytes: Bool = false,
                    partialMessage: Bool = false, listens: Bool = false) {
            self.tls = tls
            self.adminConsole = adminConsole
            self.replication = replication
            self.idle = idle
            self.linked = linked
            self.sessionServer = sessionServer
            self.bufferedBytes = bufferedBytes
            self.partialMessage = partialMessage
            self.listens = listens
        }
    }

    /// What the rule looks at for one server connection.
    public struct ServerFacts: Equatable, Sendable {
        public var tls = false
        /// Of a replication pool (its session belongs to one client).
        public var replication = false
        /// In its pool's idle list, nothing owed either way (no reply, no cancel in flight).
        public var idle = false
        /// Marked to close (lifetime, reload, a role change): not worth moving.
        public var closing = false
        /// Opened after the restart began (for a client that stays, or min_pool_size): it stays,
        /// or the old process would keep opening servers only to give them away.
        public var openedDuringRestart = false
        public init(tls: Bool = false, replication: Bool = false, idle: Bool = false, closing: Bool = false,
                    openedDuringRestart: Bool = false) {
            self.tls = tls
            self.replication = replication
            self.idle = idle
            self.closing = closing
            self.openedDuringRestart = openedDuringRestart
        }
    }

    /// A server goes when idle; one that stays is closed when the old process exits.
    public static func verdict(_ f: ServerFacts) -> Verdict {
        if f.tls || f.replication || f.closing || f.openedDuringRestart { return .stays }
        return f.idle ? .now : .later
    }

    /// A session-pooled client goes with its server, when both are between transactions.
    public static func verdict(_ f: Facts) -> Verdict {
        if f.tls || f.adminConsole || f.replication || f.listens { return .stays }
        if let sv = f.sessionServer {
            // Its own server: opened whenever, never idle-listed; only the session matters.
            var own = sv
            own.openedDuringRestart = false
            switch verdict(own) {
            case .stays: return .stays
            case .later: return .later
            case .now: break
            }
            if f.bufferedBytes || f.partialMessage { return .later }
            return .now
        }
        if !f.idle || f.linked || f.bufferedBytes || f.partialMessage { return .later }
        return .now
    }
}
