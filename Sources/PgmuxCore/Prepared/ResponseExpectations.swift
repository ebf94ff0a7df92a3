/// What the pooler expects back from a server for the Parse, Close and Sync-like messages it sent,
/// in order. Lets it swallow replies to messages it injected and forget statements whose Parse
/// never ran (the server skips everything up to Sync after an error).
public enum Expectation: Equatable, Sendable {
    /// A ParseComplete; `id` is the registry statement it prepares (nil: unnamed), `clientName`
    /// the client's own name when the client sent this Parse.
    case parse(id: Int?, swallow: Bool, clientName: String? = nil)
    /// A CloseComplete; `evicts` when the Close drops a statement the server's cache let go.
    case close(swallow: Bool, evicts: Bool = false)
    /// A ReadyForQuery (Sync, Query, FunctionCall).
    case sync
    /// The CommandComplete of one statement of a rewritten simple Query: `swallow` for a
    /// statement pgmux prefixed, `prepares` the registry statement it creates on the server,
    /// `deallocates` one it drops there, `clientName` the client's name for a PREPARE it sent.
    case commandComplete(swallow: Bool, prepares: Int? = nil, deallocates: Int? = nil, clientName: String? = nil)
}

/// What an ErrorResponse undid: statements the server never prepared (the cache and the client's
/// names forget them), and whether a drop pgmux asked for never ran (the server may still hold a
/// statement its cache no longer lists: it must not be reused).
public struct SkippedAfterError: Sendable {
    public var lost: [(id: Int, clientName: String?)] = []
    public var cacheOutOfSync = false
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
            if case .close(let swallow, _) = e { return swallow }
        }
        return false
    }

    /// The next CommandComplete answers a statement pgmux prefixed to a client's Query.
    public var swallowsNextCommandComplete: Bool {
        if head < queue.count, case .commandComplete(true, _, _, _) = queue[head] { return true }
        return false
    }

    /// A CommandComplete arrived: settles the statement expectation at the head, if any (other
    /// CommandCompletes answer the client's own statements and expect nothing).
    public mutating func commandComplete() {
        if head < queue.count, case .commandComplete = queue[head] { advance() }
    }

    /// An ErrorResponse: the server skips to the next Sync (in a simple Query, the statements
    /// after the failed one). Returns what never happened.
    public mutating func error() -> SkippedAfterError {
        var skipped = SkippedAfterError()
        while head < queue.count {
            switch queue[head] {
            case .sync: return skipped
            case .parse(let id?, _, let name): skipped.lost.append((id, name))
            case .close(_, true): skipped.cacheOutOfSync = true
            case .commandComplete(_, let prepares, let deallocates, let name):
                if let prepares { skipped.lost.append((prepares, name)) }
                if deallocates != nil { skipped.cacheOutOfSync = true }
            default: break
            }
            advance()
        }
        return skipped
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
