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
        /// Read but not yet forwarded bytes, or pooler bytes not yet written to it.
        public var bufferedBytes = false
        /// Part of an oversized Parse gathered so far.
        public var partialMessage = false
        public init(tls: Bool = false, adminConsole: Bool = false, replication: Bool = false, idle: Bool = false,
                    linked: Bool = false, bufferedBytes: Bool = false, partialMessage: Bool = false) {
            self.tls = tls
            self.adminConsole = adminConsole
            self.replication = replication
            self.idle = idle
            self.linked = linked
            self.bufferedBytes = bufferedBytes
            self.partialMessage = partialMessage
        }
    }

    public static func verdict(_ f: Facts) -> Verdict {
        if f.tls || f.adminConsole || f.replication { return .stays }
        if !f.idle || f.linked || f.bufferedBytes || f.partialMessage { return .later }
        return .now
    }
}
