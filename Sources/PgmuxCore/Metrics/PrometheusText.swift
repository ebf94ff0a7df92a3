/// Prometheus text exposition (format 0.0.4) of pgmux's figures, with the metric names and labels
/// of prometheus-community/pgbouncer_exporter so its dashboards and alerts work unchanged, plus
/// latency histograms PgBouncer cannot offer (it only keeps averages).
public struct PrometheusText {
    public struct Pool {
        public var database: String, user: String, mode: String
        public var clientActive = 0, clientWaiting = 0
        /// Clients kept on their server by session state (pgmux extension).
        public var clientPinned = 0
        public var serverActive = 0, serverIdle = 0, serverUsed = 0, serverTesting = 0, serverLogin = 0
        public var maxWaitSeconds = 0.0
        public var waitHistogram = LatencyHistogram()
        public var queryHistogram = LatencyHistogram()
        public var transactionHistogram = LatencyHistogram()
        public init(database: String, user: String, mode: String) { self.database = database; self.user = user; self.mode = mode }
    }

    public struct Database: Sendable {
        public var name: String, database: String
        public var stats = AdminStatCounters()
        public var currentConnections = 0, maxConnections = 0, poolSize = 0, paused = false, disabled = false
        public init(name: String, database: String) { self.name = name; self.database = database }
    }

    public var version: String
    public var pools: [Pool] = []
    public var databases: [Database] = []
    public var maxClientConn = 0
    public var openFDs = 0
    public var residentBytes = 0
    public var clients = 0, servers = 0

    public init(version: String) { self.version = version }

    private var out = ""

    public mutating func render() -> String {
        out = ""
        gauge("pgbouncer_up", "The pooler is up.", [([], 1)])
        gauge("pgbouncer_version_info", "The pooler's version.", [([("version", version)], 1)])
        gauge("pgbouncer_config_max_client_connections", "max_client_conn.", [([], Double(maxClientConn))])
        let pl: (Pool) -> [(String, String)] = { [("database", $0.database), ("user", $0.user)] }
        gauge("pgbouncer_pools_client_active_connections", "Client connections linked or idle.", pools.map { (pl($0), Double($0.clientActive)) })
        gauge("pgbouncer_pools_client_waiting_connections", "Client connections waiting for a server.", pools.map { (pl($0), Double($0.clientWaiting)) })
        gauge("pgmux_pools_client_pinned_connections", "Client connections kept on their server by session advisory locks, temporary tables or WITH HOLD cursors.",
              pools.map { (pl($0), Double($0.clientPinned)) })
        gauge("pgbouncer_pools_server_active_connections", "Server connections linked to a client.", pools.map { (pl($0), Double($0.serverActive)) })
        gauge("pgbouncer_pools_server_idle_connections", "Server connections idle in the pool.", pools.map { (pl($0), Double($0.serverIdle)) })
        gauge("pgbouncer_pools_server_used_connections", "Server connections running a health check.", pools.map { (pl($0), Double($0.serverUsed)) })
        gauge("pgbouncer_pools_server_testing_connections", "Server connections being reset.", pools.map { (pl($0), Double($0.serverTesting)) })
        gauge("pgbouncer_pools_server_login_connections", "Server connections logging in.", pools.map { (pl($0), Double($0.serverLogin)) })
        gauge("pgbouncer_pools_client_maxwait_seconds", "Age of the oldest waiting client.", pools.map { (pl($0), $0.maxWaitSeconds) })
        let dl: (Database) -> [(String, String)] = { [("database", $0.name)] }
        counter("pgbouncer_stats_queries_pooled_total", "Queries pooled.", databases.map { (dl($0), Double($0.stats.queryCount)) })
        counter("pgbouncer_stats_sql_transactions_pooled_total", "Transactions pooled.", databases.map { (dl($0), Double($0.stats.xactCount)) })
        counter("pgbouncer_stats_server_assignments_total", "Times a server was lent to a client.", databases.map { (dl($0), Double($0.stats.serverAssignmentCount)) })
        counter("pgbouncer_stats_queries_duration_seconds_total", "Time spent in queries.", databases.map { (dl($0), Double($0.stats.queryTime) / 1e6) })
        counter("pgbouncer_stats_server_in_transaction_seconds_total", "Time spent in transactions.", databases.map { (dl($0), Double($0.stats.xactTime) / 1e6) })
        counter("pgbouncer_stats_client_wait_seconds_total", "Time clients waited for a server.", databases.map { (dl($0), Double($0.stats.waitTime) / 1e6) })
        counter("pgbouncer_stats_received_bytes_total", "Protocol bytes received from clients.", databases.map { (dl($0), Double($0.stats.clientBytes)) })
        counter("pgbouncer_stats_sent_bytes_total", "Protocol bytes sent to clients.", databases.map { (dl($0), Double($0.stats.serverBytes)) })
        counter("pgmux_stats_server_resets_total", "server_reset_query runs.", databases.map { (dl($0), Double($0.stats.serverResetCount)) })
        let dbl: (Database) -> [(String, String)] = { [("name", $0.name), ("database", $0.database)] }
        gauge("pgbouncer_databases_current_connections", "Server connections of the database.", databases.map { (dbl($0), Double($0.currentConnections)) })
        gauge("pgbouncer_databases_max_connections", "max_db_connections (0 = unlimited).", databases.map { (dbl($0), Double($0.maxConnections)) })
        gauge("pgbouncer_databases_pool_size", "Pool size of the database.", databases.map { (dbl($0), Double($0.poolSize)) })
        gauge("pgbouncer_databases_paused", "1 when the database is paused.", databases.map { (dbl($0), $0.paused ? 1 : 0) })
        gauge("pgbouncer_databases_disabled", "1 when the database is disabled.", databases.map { (dbl($0), $0.disabled ? 1 : 0) })
        histogram("pgmux_client_wait_seconds", "Time clients waited for a server.", pools.map { (pl($0), $0.waitHistogram) })
        histogram("pgmux_query_duration_seconds", "Query time (request to ReadyForQuery).", pools.map { (pl($0), $0.queryHistogram) })
        histogram("pgmux_transaction_duration_seconds", "Time a server was lent per transaction.", pools.map { (pl($0), $0.transactionHistogram) })
        gauge("pgmux_client_connections", "Client connections.", [([], Double(clients))])
        gauge("pgmux_server_connections", "Server connections.", [([], Double(servers))])
        gauge("pgmux_process_open_fds", "Open file descriptors.", [([], Double(openFDs))])
        gauge("pgmux_process_resident_memory_bytes", "Resident set size.", [([], Double(residentBytes))])
        return out
    }

    private mutating func gauge(_ name: String, _ help: String, _ samples: [([(String, String)], Double)]) {
        family(name, help, "gauge", samples)
    }

    private mutating func counter(_ name: String, _ help: String, _ samples: [([(String, String)], Double)]) {
        family(name, help, "counter", samples)
    }

    private mutating func family(_ name: String, _ help: String, _ type: String, _ samples: [([(String, String)], Double)]) {
        out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        for (labels, value) in samples { out += "\(name)\(Self.labels(labels)) \(Self.number(value))\n" }
    }

    private mutating func histogram(_ name: String, _ help: String, _ samples: [([(String, String)], LatencyHistogram)]) {
        out += "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
        for (labels, h) in samples {
            let cumulative = h.cumulative
            for (i, bound) in LatencyHistogram.bounds.enumerated() {
                out += "\(name)_bucket\(Self.labels(labels + [("le", Self.number(bound))])) \(cumulative[i])\n"
            }
            out += "\(name)_bucket\(Self.labels(labels + [("le", "+Inf")])) \(h.count)\n"
            out += "\(name)_sum\(Self.labels(labels)) \(Self.number(h.sum))\n"
            out += "\(name)_count\(Self.labels(labels)) \(h.count)\n"
        }
    }

    static func labels(_ pairs: [(String, String)]) -> String {
        guard !pairs.isEmpty else { return "" }
        return "{" + pairs.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",") + "}"
    }

    /// Label values escape backslash, double quote and newline.
    static func escape(_ s: String) -> String {
        var r = ""
        for ch in s {
            switch ch {
            case "\\": r += "\\\\"
            case "\"": r += "\\\""
            case "\n": r += "\\n"
            default: r.append(ch)
            }
        }
        return r
    }

    static func number(_ v: Double) -> String {
        if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
        return String(v)
    }
}
