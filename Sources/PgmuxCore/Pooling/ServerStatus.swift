/// What a server says about its role: PostgreSQL 14+ reports `in_hot_standby` and
/// `default_transaction_read_only` as ParameterStatus at login and again when they change (a
/// promoted standby reports `in_hot_standby=off` to its sessions), so the pooler learns a server's
/// role without a query of its own.
public struct ServerStatus: Equatable, Sendable {
    /// In recovery: a standby.
    public var hotStandby: Bool
    /// `default_transaction_read_only = on`.
    public var defaultReadOnly: Bool

    public init(hotStandby: Bool, defaultReadOnly: Bool) {
        self.hotStandby = hotStandby
        self.defaultReadOnly = defaultReadOnly
    }

    /// From the reported values; nil when the server did not report `in_hot_standby` (before
    /// PostgreSQL 14), which leaves its role unknown.
    public init?(inHotStandby: String?, defaultTransactionReadOnly: String?) {
        guard let inHotStandby else { return nil }
        hotStandby = inHotStandby == "on"
        defaultReadOnly = defaultTransactionReadOnly == "on"
    }

    /// libpq's notion: a read-only session is one in a standby or with read-only transactions.
    public var isReadOnly: Bool { hotStandby || defaultReadOnly }

    /// SHOW HOSTS wording.
    public var roleName: String { hotStandby ? "standby" : defaultReadOnly ? "primary (read-only)" : "primary" }
}

extension TargetSessionAttrs {
    /// Whether a server of this status may serve this target. `prefer-standby` accepts standbys
    /// here; a primary only when no standby can be had (`HostSelector.accepts`).
    public func accepts(_ status: ServerStatus) -> Bool {
        switch self {
        case .any: return true
        case .readWrite: return !status.isReadOnly
        case .readOnly: return status.isReadOnly
        case .primary: return !status.hotStandby
        case .standby, .preferStandby: return status.hotStandby
        }
    }
}
