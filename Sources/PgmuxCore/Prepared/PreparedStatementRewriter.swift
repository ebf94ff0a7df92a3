/// Rewrites a client's extended-protocol messages so its named prepared statements work on
/// whichever server transaction pooling lends it (PgBouncer 1.21+'s `max_prepared_statements`):
/// client names map to pooler-wide `PGMUX_<n>` names, a statement missing on the server is
/// prepared there first (its ParseComplete swallowed), and LRU statements are closed when the
/// server's cache is full. Pure: bytes in, bytes and expectations out.
public struct PreparedStatementRewriter {
    /// What to send instead of the client's message, and what replies to expect.
    public struct Rewrite: Equatable {
        /// Replacement bytes (whole messages, possibly several); nil sends the original unchanged.
        public var replacement: [UInt8]?
        public var expectations: [Expectation]
        /// It executes a statement that may take session state pinning the client (`SessionPins`).
        public var mayPin = false
        /// The registry statement a Bind uses.
        public var statement: Int? = nil
    }

    public enum Failure: Error, Equatable {
        case malformed(String)
        case nameInUse(String)
    }

    /// The client's names (client name → registry id), kept across servers.
    public var clientStatements: [String: Int] = [:]
    /// `registry.mayPin` of statements this client has bound. A registry fact never changes
    /// once an id exists, and asking the registry takes the lock every event loop shares: with
    /// several loops each Bind did, the lock's cache line moving between cores every time.
    private var pinMemo: [Int: Bool] = [:]
    public var parses = 0, binds = 0, hits = 0, misses = 0

    public init() {}

    /// Handles one whole client message of type P, B, D or C (`body` excludes the header).
    public mutating func rewrite(type: UInt8, body: UnsafeRawBufferPointer, server: inout ServerStatementCache,
                                 registry: PreparedStatementRegistry) -> Result<Rewrite, Failure> {
        var r = BodyCursor(body)
        switch type {
        case UInt8(ascii: "P"):
            guard let name = r.cString() else { return .failure(.malformed("Parse")) }
            if name.isEmpty {
                return .success(rewriteUnnamedParse(body, queryAt: r.offset, server: &server, registry: registry))
            }
            parses += 1
            guard clientStatements[name] == nil else { return .failure(.nameInUse(name)) }
            let definition = Array(body[r.offset...])
            let id = registry.id(for: definition)
            clientStatements[name] = id
            if server.contains(id) {
                // Already there: an unnamed Parse of the same text gives the client its real,
                // correctly ordered ParseComplete without touching the named statement.
                server.touch(id)
                hits += 1
                let bytes = PreparedStatementRegistry.message(UInt8(ascii: "P"), [0] + definition)
                return .success(Rewrite(replacement: bytes, expectations: [.parse(id: nil, swallow: false)]))
            }
            misses += 1
            var out: [UInt8] = []
            var exp: [Expectation] = []
            for old in server.insert(id) { closeStatement(old, registry: registry, into: &out, expectations: &exp) }
            out += registry.parseMessage(id)
            exp.append(.parse(id: id, swallow: false, clientName: name))
            return .success(Rewrite(replacement: out, expectations: exp))

        case UInt8(ascii: "B"):
            guard let portal = r.cString(), let name = r.cString() else { return .failure(.malformed("Bind")) }
            guard !name.isEmpty, let id = clientStatements[name] else { return .success(Rewrite(replacement: nil, expectations: [])) }
            binds += 1
            var out: [UInt8] = []
            let exp = ensurePrepared(id, server: &server, registry: registry, into: &out)
            out += PreparedStatementRegistry.message(UInt8(ascii: "B"),
                                                     Array(portal.utf8) + [0] + registry.serverName(id) + [0] + Array(body[r.offset...]))
            return .success(Rewrite(replacement: out, expectations: exp, mayPin: mayPin(id, registry), statement: id))

        case UInt8(ascii: "D"):
            guard let kind = r.byte(), let name = r.cString() else { return .failure(.malformed("Describe")) }
            guard kind == UInt8(ascii: "S"), !name.isEmpty, let id = clientStatements[name] else {
                return .success(Rewrite(replacement: nil, expectations: []))
            }
            var out: [UInt8] = []
            let exp = ensurePrepared(id, server: &server, registry: registry, into: &out)
            out += PreparedStatementRegistry.message(UInt8(ascii: "D"), [kind] + registry.serverName(id) + [0])
            return .success(Rewrite(replacement: out, expectations: exp))

        case UInt8(ascii: "C"):
            guard let kind = r.byte(), let name = r.cString() else { return .failure(.malformed("Close")) }
            guard kind == UInt8(ascii: "S"), !name.isEmpty, clientStatements[name] != nil else {
                return .success(Rewrite(replacement: nil, expectations: [.close(swallow: false)]))
            }
            // The server keeps the statement for other clients; the client gets a real
            // CloseComplete, in order, from closing a name that never exists.
            clientStatements[name] = nil
            let bytes = PreparedStatementRegistry.message(UInt8(ascii: "C"), [UInt8(ascii: "S")] + Array("pgmux_noop".utf8) + [0])
            return .success(Rewrite(replacement: bytes, expectations: [.close(swallow: false)]))

        default:
            return .success(Rewrite(replacement: nil, expectations: []))
        }
    }

    /// A Bind too large for the relay buffer: only its leading names are rewritten, the rest of the
    /// body streams through. `prefix` holds the first bytes of the body. Returns the replacement
    /// header + names and how many body bytes it replaces, or nil to pass the Bind unchanged.
    public mutating func rewriteBindPrefix(_ prefix: UnsafeRawBufferPointer, bodyLength: Int, server: inout ServerStatementCache,
                                           registry: PreparedStatementRegistry) -> (rewrite: Rewrite, consumed: Int)? {
        var r = BodyCursor(prefix)
        guard let portal = r.cString(), let name = r.cString(), !name.isEmpty, let id = clientStatements[name] else { return nil }
        binds += 1
        var out: [UInt8] = []
        let exp = ensurePrepared(id, server: &server, registry: registry, into: &out)
        let names = Array(portal.utf8) + [0] + registry.serverName(id) + [0]
        let length = UInt32(4 + names.count + bodyLength - r.offset)
        out += [UInt8(ascii: "B"), UInt8(length >> 24), UInt8(truncatingIfNeeded: length >> 16),
                UInt8(truncatingIfNeeded: length >> 8), UInt8(truncatingIfNeeded: length)] + names
        return (Rewrite(replacement: out, expectations: exp, mayPin: mayPin(id, registry)), r.offset)
    }

    /// Prepares `id` on the server first when it lacks it (reply swallowed). A statement from SQL
    /// PREPARE cannot be sent as a Parse (its parameter types are type names): a Bind of one on a
    /// server that lacks it gets the server's error, as it would without pgmux.
    mutating func ensurePrepared(_ id: Int, server: inout ServerStatementCache,
                                         registry: PreparedStatementRegistry, into out: inout [UInt8]) -> [Expectation] {
        if server.contains(id) { server.touch(id); hits += 1; return [] }
        if registry.isSQL(id) { misses += 1; return [] }
        misses += 1
        var exp: [Expectation] = []
        for old in server.insert(id) { closeStatement(old, registry: registry, into: &out, expectations: &exp) }
        out += registry.parseMessage(id)
        exp.append(.parse(id: id, swallow: true))
        return exp
    }

    private mutating func mayPin(_ id: Int, _ registry: PreparedStatementRegistry) -> Bool {
        if let known = pinMemo[id] { return known }
        let pins = registry.mayPin(id)
        // Names come and go: kept within twice the client's live statements.
        if pinMemo.count >= max(16, 2 * clientStatements.count) { pinMemo.removeAll() }
        pinMemo[id] = pins
        return pins
    }

    private func closeStatement(_ id: Int, registry: PreparedStatementRegistry, into out: inout [UInt8],
                                expectations: inout [Expectation]) {
        out += PreparedStatementRegistry.message(UInt8(ascii: "C"), [UInt8(ascii: "S")] + registry.serverName(id) + [0])
        expectations.append(.close(swallow: true, evicts: true))
    }

    /// DISCARD ALL / DEALLOCATE ALL ran on the server: the client's names are gone too.
    public mutating func forgetAll() { clientStatements.removeAll() }
}

/// Bounds-checked reading of a message body.
struct BodyCursor {
    let body: UnsafeRawBufferPointer
    var offset = 0
    init(_ body: UnsafeRawBufferPointer) { self.body = body }

    mutating func byte() -> UInt8? {
        guard offset < body.count else { return nil }
        defer { offset += 1 }
        return body[offset]
    }

    mutating func cString() -> String? {
        var end = offset
        while end < body.count && body[end] != 0 { end += 1 }
        guard end < body.count else { return nil }
        defer { offset = end + 1 }
        return String(decoding: UnsafeRawBufferPointer(rebasing: body[offset..<end]), as: UTF8.self)
    }
}
