/// One `[users]` line: per-user overrides of global limits and timeouts.
///
/// nil means "not overridden". These take precedence over `[databases]` and global values.
public struct UserEntry: Sendable, Equatable {
    public var name: String
    public var poolMode: PoolMode? = nil
    public var poolSize: Int? = nil
    public var reservePoolSize: Int? = nil
    public var maxUserConnections: Int? = nil
    public var maxUserClientConnections: Int? = nil
    public var queryTimeout: Double? = nil
    public var idleTransactionTimeout: Double? = nil
    public var transactionTimeout: Double? = nil
    public var clientIdleTimeout: Double? = nil

    public init(name: String) {
        self.name = name
    }

    /// Parses the value of a `[users]` line; unknown keys are errors (as in PgBouncer).
    public static func parse(name: String, connectionString: String, file: String, line: Int) throws(ConfigError) -> UserEntry {
        var entry = UserEntry(name: name)
        for pair in try ConnectionString.parse(connectionString, file: file, line: line) {
            let v = ValueParser(file: file, line: line, key: pair.key, value: pair.value)
            switch pair.key {
            case "pool_mode": entry.poolMode = try v.choice(PoolMode.self)
            case "pool_size": entry.poolSize = try v.nonNegative()
            case "reserve_pool_size": entry.reservePoolSize = try v.nonNegative()
            case "max_user_connections": entry.maxUserConnections = try v.nonNegative()
            case "max_user_client_connections": entry.maxUserClientConnections = try v.nonNegative()
            case "query_timeout": entry.queryTimeout = try v.seconds()
            case "idle_transaction_timeout": entry.idleTransactionTimeout = try v.seconds()
            case "transaction_timeout": entry.transactionTimeout = try v.seconds()
            case "client_idle_timeout": entry.clientIdleTimeout = try v.seconds()
            default:
                throw ConfigError(file: file, line: line, key: pair.key,
                                  message: "unknown parameter \"\(pair.key)\" for user \"\(name)\"")
            }
        }
        return entry
    }
}
