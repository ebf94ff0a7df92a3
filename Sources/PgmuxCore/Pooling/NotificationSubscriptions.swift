/// Which clients of a pool listen on which channels, and what the pool's one listener connection
/// must run so that it listens on exactly their union. A channel is listened on once, whatever
/// the number of its clients, and unlistened when its last client leaves it. Commands run one at
/// a time, in order; a client's LISTEN is answered once the listener's own LISTEN for the channel
/// has run (so that a NOTIFY sent after the answer is never missed), at once when it already has.
public struct NotificationSubscriptions<Client: Hashable> {
    public enum Outcome: Equatable { case answerNow, waitForListener }

    /// A statement for the listener, and the clients whose LISTEN is answered once it has run.
    public struct Command: Equatable {
        public enum Kind: Equatable { case listen, unlisten }
        public let kind: Kind
        public let channel: String
        public internal(set) var waiters: [Client]

        public var sql: String { (kind == .listen ? "LISTEN " : "UNLISTEN ") + ListenStatement.quoted(channel) }
    }

    private var subscribers: [String: Set<Client>] = [:]
    private var channelsOf: [Client: Set<String>] = [:]
    /// Channels the listener listens on once every queued command has run.
    private var planned: Set<String> = []
    /// Commands not yet completed, in order; the first is running on the listener when `inFlight`.
    public private(set) var commands: [Command] = []
    public private(set) var inFlight = false

    public init() {}

    public var isEmpty: Bool { subscribers.isEmpty }
    public var clients: Dictionary<Client, Set<String>>.Keys { channelsOf.keys }
    public func subscribers(of channel: String) -> Set<Client>? { subscribers[channel] }
    public func channels(of client: Client) -> Set<String> { channelsOf[client] ?? [] }
    /// The client's LISTEN waits for the listener.
    public func isWaiting(_ client: Client) -> Bool { commands.contains { $0.waiters.contains(client) } }

    public mutating func listen(_ client: Client, _ channel: String) -> Outcome {
        channelsOf[client, default: []].insert(channel)
        subscribers[channel, default: []].insert(client)
        if planned.contains(channel) {
            // A LISTEN for it still queued or running: answered with it. Otherwise it has run.
            if let i = commands.lastIndex(where: { $0.channel == channel }), commands[i].kind == .listen {
                commands[i].waiters.append(client)
                return .waitForListener
            }
            return .answerNow
        }
        planned.insert(channel)
        commands.append(Command(kind: .listen, channel: channel, waiters: [client]))
        return .waitForListener
    }

    /// Answered at once: the client stops receiving the channel's notifications now, whenever
    /// the listener's own UNLISTEN runs.
    public mutating func unlisten(_ client: Client, _ channel: String) {
        guard channelsOf[client]?.remove(channel) != nil else { return }
        if channelsOf[client]?.isEmpty == true { channelsOf[client] = nil }
        subscribers[channel]?.remove(client)
        guard subscribers[channel]?.isEmpty == true else { return }
        subscribers[channel] = nil
        guard planned.remove(channel) != nil else { return }
        // A LISTEN not sent yet, that no one waits for any more, is taken back rather than undone.
        if let i = commands.lastIndex(where: { $0.channel == channel }), commands[i].kind == .listen,
           commands[i].waiters.isEmpty, !(i == 0 && inFlight) {
            commands.remove(at: i)
            return
        }
        commands.append(Command(kind: .unlisten, channel: channel, waiters: []))
    }

    public mutating func unlistenAll(_ client: Client) {
        for channel in channels(of: client) { unlisten(client, channel) }
    }

    /// The client disconnected: it waits for nothing and listens on nothing any more.
    public mutating func clientLeft(_ client: Client) {
        for i in commands.indices { commands[i].waiters.removeAll { $0 == client } }
        unlistenAll(client)
    }

    /// The command to send to the listener now (none while one runs).
    public mutating func nextCommand() -> Command? {
        guard !inFlight, let first = commands.first else { return nil }
        inFlight = true
        return first
    }

    /// The running command has completed: the clients to answer.
    public mutating func commandDone() -> [Client] {
        guard inFlight, !commands.isEmpty else { return [] }
        inFlight = false
        return commands.removeFirst().waiters
    }

    /// The listener connection is gone, and its subscriptions with it: the next one listens on
    /// every channel that has clients. Clients waiting on a LISTEN wait for the new listener's.
    public mutating func listenerLost() {
        var waiting: [String: [Client]] = [:]
        for c in commands where c.kind == .listen { waiting[c.channel, default: []] += c.waiters }
        inFlight = false
        planned = Set(subscribers.keys)
        commands = subscribers.keys.sorted().map { Command(kind: .listen, channel: $0, waiters: waiting[$0] ?? []) }
    }

    /// No listener could be opened: the clients waiting on a LISTEN are refused, and that
    /// subscription undone. Returns them, with their channel.
    public mutating func failWaiters() -> [(client: Client, channel: String)] {
        var failed: [(client: Client, channel: String)] = []
        for i in commands.indices where commands[i].kind == .listen {
            for w in commands[i].waiters { failed.append((w, commands[i].channel)) }
            commands[i].waiters = []
        }
        for f in failed { unlisten(f.client, f.channel) }
        return failed
    }
}
