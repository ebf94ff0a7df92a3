/// One `[databases]` line: where and how to reach a backend database.
///
/// Optional pool limits mean "not set here, use the global setting"; `Config` resolves them.
/// The `*` entry is a template for databases not listed (see `instantiated(for:)`).
public struct DatabaseEntry: Sendable, Equatable {
    /// Name clients connect to.
    public var name: String
    /// Backend database name; defaults to `name`.
    public var dbname: String
    /// Whether `dbname=` was written; decides what a `*` template gives auto-created databases.
    public var dbnameIsExplicit = false
    /// Host name, IP, `/dir` (Unix socket directory), `@name` (abstract socket) or a comma list;
    /// nil = Unix socket in `unix_socket_dir`.
    public var host: String? = nil
    /// The first of `ports` (SHOW DATABASES shows it, as PgBouncer, which reads one port).
    public var port = 5432
    /// `port=` as written: one port for every host, or one per host of a `host=` list (libpq).
    public var ports: [Int] = [5432]
    /// Forced user: every client of this database shares one pool under this login.
    public var user: String? = nil
    public var password: String? = nil
    public var authUser: String? = nil
    public var authQuery: String? = nil
    public var authDbname: String? = nil
    public var poolSize: Int? = nil
    public var minPoolSize: Int? = nil
    public var reservePoolSize: Int? = nil
    public var poolMode: PoolMode? = nil
    public var maxDbConnections: Int? = nil
    public var maxDbClientConnections: Int? = nil
    public var serverLifetime: Double? = nil
    /// Run once after each server login; failures are only logged.
    public var connectQuery: String? = nil
    public var clientEncoding: String? = nil
    public var datestyle: String? = nil
    public var timezone: String? = nil
    public var applicationName: String? = nil
    public var loadBalanceHosts: LoadBalanceHosts = .roundRobin
    /// nil: the global `target_session_attrs`.
    public var targetSessionAttrs: TargetSessionAttrs? = nil

    /// The servers `host=` and `port=` name, in order (see `ServerHost.list`).
    public var hosts: [ServerHost] { ServerHost.list(host: host, ports: ports) }

    public init(name: String) {
        self.name = name
        self.dbname = name
    }

    /// True when the server is reached over a Unix socket (no host, or a directory path).
    public var usesUnixSocket: Bool {
        guard let host else { return true }
        return host.hasPrefix("/") || host.hasPrefix("@")
    }

    /// Parses the value of a `[databases]` line. Unknown keys are errors, as in PgBouncer:
    /// a misspelt `pool_size` silently ignored would be a capacity surprise in production.
    public static func parse(name: String, connectionString: String, file: String, line: Int) throws(ConfigError) -> DatabaseEntry {
        var entry = DatabaseEntry(name: name)
        for pair in try ConnectionString.parse(connectionString, file: file, line: line) {
            let v = ValueParser(file: file, line: line, key: pair.key, value: pair.value)
            switch pair.key {
            case "dbname": entry.dbname = pair.value; entry.dbnameIsExplicit = true
            case "host": entry.host = pair.value.isEmpty ? nil : pair.value
            case "port":
                entry.ports = try v.portList()
                entry.port = entry.ports[0]
            case "user": entry.user = pair.value
            case "password": entry.password = pair.value
            case "auth_user": entry.authUser = pair.value
            case "auth_query": entry.authQuery = pair.value
            case "auth_dbname": entry.authDbname = pair.value
            case "pool_size": entry.poolSize = try v.nonNegative()
            case "min_pool_size": entry.minPoolSize = try v.nonNegative()
            case "reserve_pool_size", "reserve_pool": entry.reservePoolSize = try v.nonNegative()
            case "pool_mode": entry.poolMode = try v.choice(PoolMode.self)
            case "max_db_connections": entry.maxDbConnections = try v.nonNegative()
            case "max_db_client_connections": entry.maxDbClientConnections = try v.nonNegative()
            case "server_lifetime": entry.serverLifetime = try v.seconds()
            case "connect_query": entry.connectQuery = pair.value
            case "client_encoding": entry.clientEncoding = pair.value
            case "datestyle": entry.datestyle = pair.value
            case "timezone": entry.timezone = pair.value
            case "application_name": entry.applicationName = pair.value
            case "load_balance_hosts": entry.loadBalanceHosts = try v.choice(LoadBalanceHosts.self)
            case "target_session_attrs": entry.targetSessionAttrs = try v.choice(TargetSessionAttrs.self)
            default:
                throw ConfigError(file: file, line: line, key: pair.key,
                                  message: "unknown parameter \"\(pair.key)\" in database \"\(name)\"")
            }
        }
        let hostCount = ServerHost.names(entry.host).count
        if entry.ports.count > 1 && entry.ports.count != hostCount {
            // libpq's own wording for the same mistake.
            throw ConfigError(file: file, line: line, key: "port",
                              message: "could not match \(entry.ports.count) port numbers to \(hostCount) hosts")
        }
        return entry
    }

    /// The auto-database PgBouncer registers for `requested` from the `*` template: same settings,
    /// named `requested`, connecting to database `requested` unless the template forces `dbname`.
    public func instantiated(for requested: String) -> DatabaseEntry {
        var copy = self
        copy.name = requested
        if !dbnameIsExplicit { copy.dbname = requested }
        return copy
    }
}
