/// Pooler-wide table of protocol-level prepared statements: each distinct (query text, parameter
/// types) gets one server-side name, `PGMUX_<n>`, whatever the clients call it. Clients keep their
/// own names; servers learn a statement the first time a client of theirs uses it.
///
/// One per process, shared by its event loops (a server that moves to another loop keeps the
/// statements it has under the same names), so every access holds `lock`.
public final class PreparedStatementRegistry: @unchecked Sendable {
    private let lock = Lock()
    /// Parse body after the statement name (query NUL, int16 count, int32 type OIDs) → id.
    private var ids: [[UInt8]: Int] = [:]
    private var definitions: [[UInt8]] = []
    /// Statements some server has answered with ParseComplete: their text and parameter types are
    /// known to parse, so a client's Parse of one can be answered without a server.
    private var validated: [Bool] = []
    /// Statements whose text may take session state that pins a client (`SessionPins`).
    private var pins: [Bool] = []
    /// SQL-level statements (`PREPARE name <tail>`), by tail, in the same id space: a server
    /// holds them under the same `PGMUX_<n>` names.
    private var sqlIDs: [String: Int] = [:]
    private var sqlTails: [Int: String] = [:]

    public init() {}

    public var count: Int { lock.withLock { definitions.count } }

    /// The id for a statement definition, registering it on first sight.
    public func id(for definition: [UInt8]) -> Int {
        lock.withLock {
            if let id = ids[definition] { return id }
            let id = definitions.count
            definitions.append(definition)
            validated.append(false)
            pins.append(definition.withUnsafeBytes(SessionPins.mayPin))
            ids[definition] = id
            return id
        }
    }

    /// Whether executing statement `id` may take session state that pins its client.
    public func mayPin(_ id: Int) -> Bool { lock.withLock { id >= 0 && id < pins.count && pins[id] } }

    /// The id of a definition that a server has already prepared successfully, without
    /// registering anything.
    public func validatedID(for definition: UnsafeRawBufferPointer) -> Int? {
        lock.withLock {
            guard let id = ids[Array(definition)], validated[id] else { return nil }
            return id
        }
    }

    /// A server answered the Parse of statement `id` with ParseComplete.
    public func markValidated(_ id: Int) {
        lock.withLock {
            if id >= 0 && id < validated.count { validated[id] = true }
        }
    }

    public func serverName(_ id: Int) -> [UInt8] { Array("PGMUX_\(id)".utf8) }

    /// The id of an SQL-level statement, `PREPARE name <tail>`, registering it on first sight.
    public func id(forSQL tail: String) -> Int {
        lock.withLock {
            if let id = sqlIDs[tail] { return id }
            let id = definitions.count
            definitions.append([])
            validated.append(false)
            pins.append(Array(tail.utf8).withUnsafeBytes(SessionPins.mayPin))
            sqlIDs[tail] = id
            sqlTails[id] = tail
            return id
        }
    }

    /// Whether `id` came from SQL PREPARE (it cannot be prepared by a Parse message).
    public func isSQL(_ id: Int) -> Bool { lock.withLock { sqlTails[id] != nil } }

    /// The server name as an SQL identifier (quoted: unquoted names fold to lower case).
    public func sqlName(_ id: Int) -> String { "\"PGMUX_\(id)\"" }

    /// An SQL PREPARE creating statement `id` on a server, or nil when it cannot be written in SQL
    /// (a Parse with parameter type OIDs, which PREPARE takes as type names).
    public func sqlPrepare(_ id: Int) -> String? {
        lock.withLock {
            if let tail = sqlTails[id] { return "PREPARE \(sqlName(id))\(tail)" }
            let d = definitions[id]
            guard let nul = d.firstIndex(of: 0), d.count >= nul + 3 else { return nil }
            guard d[(nul + 3)...].allSatisfy({ $0 == 0 }) else { return nil }
            return "PREPARE \(sqlName(id)) AS " + String(decoding: d[..<nul], as: UTF8.self)
        }
    }

    /// What statement `id` was registered from, so that another process (an online restart) can
    /// register it again; nil for an unknown id.
    public func definition(_ id: Int) -> TakeoverStatement.Definition? {
        lock.withLock {
            guard id >= 0 && id < definitions.count else { return nil }
            if let tail = sqlTails[id] { return .sql(tail) }
            return .parse(definitions[id])
        }
    }

    /// Registers a definition `definition(_:)` gave in another process; returns its id here.
    public func id(for definition: TakeoverStatement.Definition) -> Int {
        switch definition {
        case .parse(let body): return id(for: body)
        case .sql(let tail): return id(forSQL: tail)
        }
    }

    /// A complete Parse message preparing statement `id` under its server name.
    public func parseMessage(_ id: Int) -> [UInt8] {
        lock.withLock {
            PreparedStatementRegistry.message(UInt8(ascii: "P"), serverName(id) + [0] + definitions[id])
        }
    }

    static func message(_ type: UInt8, _ body: [UInt8]) -> [UInt8] {
        let length = UInt32(body.count + 4)
        return [type, UInt8(length >> 24), UInt8(truncatingIfNeeded: length >> 16),
                UInt8(truncatingIfNeeded: length >> 8), UInt8(truncatingIfNeeded: length)] + body
    }
}

/// The statements one server connection has prepared, least recently used first out.
public struct ServerStatementCache: Sendable {
    public private(set) var capacity: Int
    private var lastUse: [Int: UInt64] = [:]
    private var clock: UInt64 = 0

    public init(capacity: Int) { self.capacity = max(1, capacity) }

    /// max_prepared_statements changed (RELOAD, console SET): a smaller cache closes its least
    /// recently used statements on the server at its next insert.
    public mutating func setCapacity(_ n: Int) { capacity = max(1, n) }

    public var count: Int { lastUse.count }
    public func contains(_ id: Int) -> Bool { lastUse[id] != nil }
    /// The statements, least recently used first (an online restart hands them over in order).
    public var idsByLastUse: [Int] { lastUse.sorted { $0.value < $1.value }.map(\.key) }

    public mutating func touch(_ id: Int) {
        clock &+= 1
        if lastUse[id] != nil { lastUse[id] = clock }
    }

    /// Records `id` as prepared; returns the ids to close so the cache stays within capacity.
    public mutating func insert(_ id: Int) -> [Int] {
        clock &+= 1
        lastUse[id] = clock
        var evicted: [Int] = []
        while lastUse.count > capacity {
            guard let oldest = lastUse.filter({ $0.key != id }).min(by: { $0.value < $1.value })?.key else { break }
            lastUse[oldest] = nil
            evicted.append(oldest)
        }
        return evicted
    }

    public mutating func remove(_ id: Int) { lastUse[id] = nil }
    public mutating func removeAll() { lastUse.removeAll() }
}
