/// The notifications owed to one client. PostgreSQL delivers a notification between messages and
/// only outside a transaction; pgmux writes one to a client only while the client holds no server
/// (whose reply could be mid-message on the client's socket), and holds it until the client's
/// server is released otherwise, in order. Bounded: a client that does not read loses what does
/// not fit (`limit` bytes, held or unsent on its socket), and is told how many with a notice once
/// it can take messages again, so that it never holds memory or anyone else back.
public struct NotificationInbox {
    public let limit: Int
    private var held: [UInt8] = []
    private var dropped = 0
    private var listenerLost = false

    public init(limit: Int) { self.limit = limit }

    public var isEmpty: Bool { held.isEmpty && dropped == 0 && !listenerLost }

    /// A NotificationResponse for the client. `deliverable`: the client holds no server now;
    /// `backlog`: bytes already waiting on its socket. Returns what to write to the client now.
    public mutating func receive(_ message: [UInt8], deliverable: Bool, backlog: Int) -> [UInt8]? {
        if deliverable {
            guard backlog + message.count <= limit else { dropped += 1; return nil }
            return take() + message
        }
        guard held.count + message.count <= limit else { dropped += 1; return nil }
        held += message
        return nil
    }

    /// The listener connection was lost: notifications sent meanwhile may never come.
    public mutating func noteListenerLost() { listenerLost = true }

    /// Everything owed, to write once the client holds no server: the notice of a lost listener,
    /// the held notifications in order, the notice of dropped ones.
    public mutating func take() -> [UInt8] {
        guard !isEmpty else { return [] }
        var out: [UInt8] = []
        if listenerLost {
            var m = MessageBuilder()
            m.errorResponse(severity: "NOTICE", code: "00000", message: Self.lostText, notice: true)
            out += m.bytes
        }
        out += held
        if dropped > 0 {
            var m = MessageBuilder()
            m.errorResponse(severity: "WARNING", code: "01000", message: Self.droppedText(dropped), notice: true)
            out += m.bytes
        }
        held = []
        dropped = 0
        listenerLost = false
        return out
    }

    public static let lostText = "pgmux: the notification connection was lost; notifications may have been missed"
    public static func droppedText(_ n: Int) -> String {
        "pgmux: \(n) notification\(n == 1 ? " was" : "s were") dropped: the client did not read them fast enough"
    }
}
