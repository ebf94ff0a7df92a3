/// What the pooler expects back from a server for the Parse, Close and Sync-like messages it sent,
/// in order. Lets it swallow replies to messages it injected and forget statements whose Parse
/// never ran (the server skips everything up to Sync after an error).
public enum Expectation: Equatable, Sendable {
    /// A ParseComplete; `id` is the registry statement it prepares (nil: unnamed), `clientName`
    /// the client's own name when the client sent this Parse.
    case parse(id: Int?, swallow: Bool, clientName: String? = nil)
    case close(swallow: Bool)
    /// A ReadyForQuery (Sync, Query, FunctionCall).
    case sync
}

public struct ResponseExpectations: Sendable {
    private var queue: [Expectation] = []
    private var head = 0

    public init() {}

    public var isEmpty: Bool { head == queue.count }
    public var pending: ArraySlice<Expectation> { queue[head...] }

    public mutating func append(_ e: Expectation) { queue.append(e) }
    public mutating func append(contentsOf es: [Expectation]) { queue.append(contentsOf: es) }

    /// A ParseComplete arrived: `swallow` when it answers an injected Parse, `id` the registry
    /// statement it prepared (nil for an unnamed Parse).
    public mutating func parseComplete() -> (swallow: Bool, id: Int?) {
        while head < queue.count {
            let e = queue[head]; advance()
            if case .parse(let id, let swallow, _) = e { return (swallow, id) }
        }
        return (false, nil)
    }

    /// A CloseComplete arrived: true when it answers a Close the pooler sent itself.
    public mutating func closeComplete() -> Bool {
        while head < queue.count {
            let e = queue[head]; advance()
            if case .close(let swallow) = e { return swallow }
        }
        return false
    }

    /// An ErrorResponse: the server skips to the next Sync. Returns the Parses that were skipped
    /// or failed, so the server's cache and the client's names forget them.
    public mutating func error() -> [(id: Int, clientName: String?)] {
        var lost: [(id: Int, clientName: String?)] = []
        while head < queue.count {
            if queue[head] == .sync { break }
            if case .parse(let id?, _, let name) = queue[head] { lost.append((id, name)) }
            advance()
        }
        return lost
    }

    /// A ReadyForQuery: everything up to and including the first Sync is settled.
    public mutating func readyForQuery() {
        while head < queue.count {
            let e = queue[head]; advance()
            if e == .sync { return }
        }
    }

    /// Keeps the storage: a server empties its queue at every release.
    public mutating func removeAll() { queue.removeAll(keepingCapacity: true); head = 0 }

    private mutating func advance() {
        head += 1
        if head == queue.count { queue.removeAll(keepingCapacity: true); head = 0 }
    }
}
