/// One `[peers]` line: another pgmux/PgBouncer process of a peer group, used only to forward
/// cancel requests whose key belongs to it.
public struct PeerEntry: Sendable, Equatable {
    /// Peer id, 1..65535.
    public var id: Int
    public var host: String? = nil
    public var port = 6432
    /// Concurrent forwarded cancels; nil = `default_pool_size`.
    public var poolSize: Int? = nil

    public init(id: Int) {
        self.id = id
    }

    public static func parse(id text: String, connectionString: String, file: String, line: Int) throws(ConfigError) -> PeerEntry {
        let id = try ValueParser(file: file, line: line, key: "peer_id", value: text).integer(in: 1...65535)
        var entry = PeerEntry(id: id)
        for pair in try ConnectionString.parse(connectionString, file: file, line: line) {
            let v = ValueParser(file: file, line: line, key: pair.key, value: pair.value)
            switch pair.key {
            case "host": entry.host = pair.value.isEmpty ? nil : pair.value
            case "port": entry.port = try v.port()
            case "pool_size": entry.poolSize = try v.nonNegative()
            default:
                throw ConfigError(file: file, line: line, key: pair.key, message: "unknown parameter \"\(pair.key)\" for peer \(id)")
            }
        }
        // As PgBouncer's parse_peer: a peer is always named (a directory for its Unix socket).
        guard entry.host != nil else {
            throw ConfigError(file: file, line: line, key: "host", message: "host was not provided for peer \(id)")
        }
        return entry
    }
}
