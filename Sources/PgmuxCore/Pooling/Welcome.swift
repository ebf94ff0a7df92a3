/// The greeting after a successful login, up to BackendKeyData: AuthenticationOk, one
/// ParameterStatus per server parameter (with the client's own value for a tracked parameter it
/// chose), then the client's other tracked parameters.
public struct Welcome: Sendable {
    public let bytes: [UInt8]
    /// The client's tracked parameters after the welcome: those it chose, plus the server's value
    /// of each tracked parameter it did not, so that they are restored when it lands on a server
    /// another client changed.
    public let params: [String: String]

    public init(serverParameters: [(String, String)], clientParameters: [String: String],
                isTracked: (String) -> Bool) {
        var m = MessageBuilder()
        m.authenticationOk()
        var params = clientParameters
        var seen = Set<String>()
        for (name, value) in serverParameters {
            let key = name.lowercased()
            seen.insert(key)
            if params[key] == nil && isTracked(key) { params[key] = value }
            m.parameterStatus(name, params[key] ?? value)
        }
        for (key, value) in params where !seen.contains(key) { m.parameterStatus(key, value) }
        bytes = m.bytes
        self.params = params
    }
}

/// A pool's welcomes by the tracked parameters its clients logged in with. Clients of one pool
/// mostly log in alike (same driver, same application_name), and building the welcome cost
/// more than the rest of a cached SCRAM login (callgrind, `pgbench -C`). Bounded: past
/// `capacity` distinct sets it starts over. The owner empties it when the server parameters
/// or the tracked set change.
public struct WelcomeCache {
    public static let capacity = 32
    private var entries: [[String: String]: Welcome] = [:]

    public init() {}

    public var count: Int { entries.count }

    /// The welcome for a client with `clientParameters`; `share` lets the caller intern the
    /// resulting parameters of a new entry (clients with equal settings then share storage).
    public mutating func welcome(serverParameters: [(String, String)], clientParameters: [String: String],
                                 isTracked: (String) -> Bool,
                                 share: ([String: String]) -> [String: String] = { $0 }) -> Welcome {
        if let hit = entries[clientParameters] { return hit }
        let built = Welcome(serverParameters: serverParameters, clientParameters: clientParameters, isTracked: isTracked)
        let entry = Welcome(bytes: built.bytes, params: share(built.params))
        if entries.count >= Self.capacity { entries.removeAll(keepingCapacity: true) }
        entries[clientParameters] = entry
        return entry
    }

    public mutating func removeAll() { entries.removeAll() }
}

extension Welcome {
    fileprivate init(bytes: [UInt8], params: [String: String]) {
        self.bytes = bytes
        self.params = params
    }
}
