/// The `replication` startup parameter (PgBouncer 1.23+): a physical (`true`) or logical
/// (`database`) walsender connection. Such a client gets a server of its own, opened with the
/// same parameter, kept for its whole session whatever the pool mode, and closed when it
/// leaves: a walsender cannot be reset or lent again, and a physical one runs no SQL at all.
public enum ReplicationMode: UInt8, Sendable, CaseIterable {
    case none = 0, logical, physical

    /// PostgreSQL's reading of the value: `database` is logical, else a boolean (parse_bool:
    /// true/false, yes/no, on/off, 1/0, any unambiguous prefix, any case); nil when invalid.
    public static func parse(_ value: String) -> ReplicationMode? {
        if value == "database" { return .logical }
        let v = value.lowercased()
        guard !v.isEmpty else { return nil }
        func prefix(of word: String, min: Int = 1) -> Bool { v.count >= min && word.hasPrefix(v) }
        if v == "1" || prefix(of: "true") || prefix(of: "yes") || prefix(of: "on", min: 2) { return .physical }
        if v == "0" || prefix(of: "false") || prefix(of: "no") || prefix(of: "off", min: 2) { return ReplicationMode.none }
        return nil
    }

    /// PostgreSQL's FATAL text for a value it does not accept (SQLSTATE 22023).
    public static func invalidValueMessage(_ value: String) -> String {
        "invalid value for parameter \"replication\": \"\(value)\""
    }

    /// The value sent to PostgreSQL and logged in `login attempt: ... replication=` (PgBouncer's
    /// replication_type_parameters).
    public var startupValue: String {
        switch self {
        case .none: return "no"
        case .logical: return "database"
        case .physical: return "yes"
        }
    }

    /// The `replication` column of SHOW CLIENTS / SERVERS / SOCKETS.
    public var adminValue: AdminReplication {
        switch self {
        case .none: return .none
        case .logical: return .logical
        case .physical: return .physical
        }
    }

    /// Startup parameters of a replication server, as PgBouncer's send_startup_packet builds
    /// them: the pool's own, then `replication`, the client's tracked parameters (a physical
    /// walsender accepts no SET, so they go in the startup packet instead) and its `options`,
    /// passed as they came (CREATE SUBSCRIPTION sets extra_float_digits there). A client value
    /// replaces the pool's value of the same parameter.
    public func serverStartup(base: [(String, String)], clientParameters: [String: String],
                              options: String?) -> [(String, String)] {
        guard self != .none else { return base }
        var out = base.filter { clientParameters[$0.0.lowercased()] == nil }
        out.append(("replication", startupValue))
        for key in clientParameters.keys.sorted() { out.append((key, clientParameters[key]!)) }
        if let options { out.append(("options", options)) }
        return out
    }
}
