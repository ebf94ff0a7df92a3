/// SQL-level prepared statements in transaction pooling: `PREPARE`, `EXECUTE` and `DEALLOCATE`
/// sent as simple Query texts share the client's names with its protocol-level statements.
///
/// - `PREPARE a1 ...` becomes `PREPARE "PGMUX_<n>" ...` (one server name per distinct
///   definition, as for Parse), so that any server can be given the statement later.
/// - `EXECUTE a1(...)` runs `"PGMUX_<n>"`; a server that lacks it gets the PREPARE first, in the
///   same Query, its CommandComplete cut out of the reply.
/// - `DEALLOCATE a1` of a name the client prepared, by SQL or by Parse (PHP PDO frees its
///   protocol-level statements this way), forgets the name and leaves the server's copy to other
///   clients; the client still gets a real `DEALLOCATE` from the server, in order.
///
/// Nothing is rewritten in a failed transaction (the server refuses every statement there, with
/// the client's own text as well), nor for names the client never prepared through pgmux.
extension PreparedStatementRewriter {
    /// A reserved statement name that exists on a server only inside one rewritten Query.
    static let placeholder = "\"pgmux_deallocate\""

    /// Handles one whole simple Query (`body` excludes the header). The replacement, when there
    /// is one, is a complete Query message; expectations exclude the Query's own Sync.
    public mutating func rewriteQuery(_ body: UnsafeRawBufferPointer, server: inout ServerStatementCache,
                                      registry: PreparedStatementRegistry, inFailedTransaction: Bool) -> Rewrite {
        let unchanged = Rewrite(replacement: nil, expectations: [])
        guard !inFailedTransaction, let last = body.last, last == 0 else { return unchanged }
        var prefix: [String] = []
        var exp: [Expectation] = []
        var executes: Int? = nil
        let statement: String
        switch PreparedStatementSQL.classify(UnsafeRawBufferPointer(rebasing: body.dropLast())) {
        case .prepare(let name, let tail):
            guard clientStatements[name] == nil else {
                // Sent as is, it would create the name on the server; PostgreSQL's error instead.
                guard let refusal = Self.alreadyExists(name) else { return unchanged }
                return Rewrite(replacement: PreparedStatementRegistry.message(UInt8(ascii: "Q"), Array(refusal.utf8) + [0]),
                               expectations: [])
            }
            let id = registry.id(forSQL: tail)
            clientStatements[name] = id
            parses += 1
            if server.contains(id) {
                // Prepared here already: dropped and prepared again, so the client's PREPARE
                // runs (and reports) like any other.
                server.touch(id)
                hits += 1
                prefix.append("DEALLOCATE \(registry.sqlName(id))")
                exp.append(.commandComplete(swallow: true))
            } else {
                misses += 1
                evict(server.insert(id), registry: registry, prefix: &prefix, expectations: &exp)
            }
            statement = "PREPARE \(registry.sqlName(id))\(tail)"
            exp.append(.commandComplete(swallow: false, prepares: id, clientName: name))
        case .execute(let name, let arguments):
            guard let id = clientStatements[name] else { return unchanged }
            executes = id
            if server.contains(id) {
                server.touch(id)
                hits += 1
            } else {
                guard let prepare = registry.sqlPrepare(id) else { return unchanged }
                misses += 1
                evict(server.insert(id), registry: registry, prefix: &prefix, expectations: &exp)
                prefix.append(prepare)
                exp.append(.commandComplete(swallow: true, prepares: id))
            }
            statement = "EXECUTE \(registry.sqlName(id))\(arguments)"
        case .deallocate(let name):
            guard clientStatements[name] != nil else { return unchanged }
            clientStatements[name] = nil
            prefix.append("PREPARE \(Self.placeholder) AS SELECT")
            exp.append(.commandComplete(swallow: true))
            statement = "DEALLOCATE \(Self.placeholder)"
        case .deallocateAll, .other:
            return unchanged  // DEALLOCATE ALL's tag clears the cache and the names (CommandTag)
        }
        let text = (prefix + [statement]).joined(separator: "; ")
        return Rewrite(replacement: PreparedStatementRegistry.message(UInt8(ascii: "Q"), Array(text.utf8) + [0]),
                       expectations: exp, mayPin: executes.map(registry.mayPin) ?? false)
    }

    /// The placeholder of the extended protocol: a Parse may never be executed, so a statement
    /// of this name may be left on a server, and each use closes it first.
    static let parsePlaceholder = "pgmux_deallocate_parse"

    /// An unnamed Parse whose text is `DEALLOCATE name` or `EXECUTE name(...)` of a statement the
    /// client prepared (drivers send every statement so in pipeline mode, psycopg its evictions):
    /// rewritten as a simple Query would be. The text of a Parse is one statement, so a
    /// DEALLOCATE drops a placeholder prepared just before it, and an EXECUTE of a statement the
    /// server lacks gets it by an injected Parse (a statement from SQL PREPARE cannot be).
    mutating func rewriteUnnamedParse(_ body: UnsafeRawBufferPointer, queryAt offset: Int, server: inout ServerStatementCache,
                                      registry: PreparedStatementRegistry) -> Rewrite {
        let unchanged = Rewrite(replacement: nil, expectations: [.parse(id: nil, swallow: false)])
        // Only texts that can be these commands are looked at: the first byte decides for the rest.
        guard offset < body.count else { return unchanged }
        let first = body[offset] | 0x20
        guard first == UInt8(ascii: "d") || first == UInt8(ascii: "e") || !(first >= UInt8(ascii: "a") && first <= UInt8(ascii: "z")),
              let end = body[offset...].firstIndex(of: 0) else { return unchanged }
        let parameters = Array(body[(end + 1)...])
        var out: [UInt8] = []
        var exp: [Expectation] = []
        let text: String
        switch PreparedStatementSQL.classify(UnsafeRawBufferPointer(rebasing: body[offset..<end])) {
        case .deallocate(let name):
            guard clientStatements.removeValue(forKey: name) != nil else { return unchanged }
            let placeholder = Array(Self.parsePlaceholder.utf8) + [0]
            out += PreparedStatementRegistry.message(UInt8(ascii: "C"), [UInt8(ascii: "S")] + placeholder)
            out += PreparedStatementRegistry.message(UInt8(ascii: "P"), placeholder + Array("SELECT".utf8) + [0, 0, 0])
            exp += [.close(swallow: true), .parse(id: nil, swallow: true)]
            text = "DEALLOCATE \"\(Self.parsePlaceholder)\""
        case .execute(let name, let arguments):
            guard let id = clientStatements[name] else { return unchanged }
            if !server.contains(id) && registry.isSQL(id) { return unchanged }
            exp += ensurePrepared(id, server: &server, registry: registry, into: &out)
            text = "EXECUTE \(registry.sqlName(id))\(arguments)"
        default:
            return unchanged
        }
        out += PreparedStatementRegistry.message(UInt8(ascii: "P"), [0] + Array(text.utf8) + [0] + parameters)
        exp.append(.parse(id: nil, swallow: false))
        return Rewrite(replacement: out, expectations: exp)
    }

    /// A statement raising PostgreSQL's error for a PREPARE of a name in use (42P05, its text),
    /// so that the transaction fails as it would; nil for a name that cannot be quoted in it.
    static func alreadyExists(_ name: String) -> String? {
        guard !name.contains("$pgmux$") else { return nil }
        let message = String("prepared statement \"\(name)\" already exists".flatMap { $0 == "'" ? ["'", "'"] : [$0] })
        return "DO $pgmux$ BEGIN RAISE EXCEPTION USING ERRCODE = 'duplicate_prepared_statement', "
            + "MESSAGE = '\(message)'; END $pgmux$"
    }

    /// Statements the cache pushed out, dropped on the server ahead of the client's statement.
    private func evict(_ ids: [Int], registry: PreparedStatementRegistry, prefix: inout [String],
                       expectations: inout [Expectation]) {
        for old in ids {
            prefix.append("DEALLOCATE \(registry.sqlName(old))")
            expectations.append(.commandComplete(swallow: true, deallocates: old))
        }
    }
}
