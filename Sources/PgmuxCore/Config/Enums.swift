/// How clients share server connections (`pool_mode`).
public enum PoolMode: String, ConfigEnum, Equatable {
    case session, transaction, statement
    public var configName: String { rawValue }
}

/// Client authentication method (`auth_type`): exactly PgBouncer's list. `password` is accepted as
/// an alias of `plain` (pg_hba's name for it), a pgmux leniency.
public enum AuthType: String, ConfigEnum, Equatable {
    case cert, md5
    case scramSHA256 = "scram-sha-256"
    case plain, trust, any, hba, ldap, pam
    public var configName: String { rawValue }
    public static var aliases: [String: AuthType] { ["password": .plain] }
}

/// libpq-style TLS modes for `client_tls_sslmode` / `server_tls_sslmode`.
public enum TLSMode: String, ConfigEnum, Equatable {
    case disable, allow, prefer, require
    case verifyCA = "verify-ca"
    case verifyFull = "verify-full"
    public var configName: String { rawValue }
}

/// `target_session_attrs` (libpq's values): which servers of a host list a pool may use, judged
/// at each new server connection from what the server reports (see `ServerStatus`).
public enum TargetSessionAttrs: String, ConfigEnum, Equatable, Sendable {
    case any
    case readWrite = "read-write"
    case readOnly = "read-only"
    case primary, standby
    case preferStandby = "prefer-standby"
    public var configName: String { rawValue }
}

/// `load_balance_hosts` of a database with a comma list of hosts.
public enum LoadBalanceHosts: String, ConfigEnum, Equatable {
    case roundRobin = "round-robin"
    case disable
    public var configName: String { rawValue }
}
