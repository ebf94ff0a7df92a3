/// Column lists of every SHOW result, in wire order with PgBouncer 1.25.2's types
/// (`src/admin.c`, `src/stats.c`). Consumers index these by position and name: never reorder.
public enum AdminColumns {
    private static func cols(_ spec: [(String, AdminColumnType)]) -> [AdminColumn] {
        spec.map { AdminColumn($0.0, $0.1) }
    }

    /// Columns for a SHOW item; empty for `help` (a NOTICE, no result set).
    public static func columns(for item: AdminShowItem) -> [AdminColumn] {
        switch item {
        case .pools: return pools
        case .clients, .servers: return clients
        case .sockets, .activeSockets: return sockets
        case .stats: return stats
        case .statsTotals: return statsTotals
        case .statsAverages: return statsAverages
        case .totals: return totals
        case .databases: return databases
        case .users: return users
        case .config: return config
        case .peers: return peers
        case .peerPools: return peerPools
        case .lists: return lists
        case .mem: return mem
        case .fds: return fds
        case .dnsHosts: return dnsHosts
        case .dnsZones: return dnsZones
        case .version: return version
        case .state: return state
        case .hosts: return hosts
        case .threads: return threads
        case .help: return []
        }
    }

    /// SHOW POOLS (`ssiiiiiiiiiiiiiss`, 17 columns).
    public static let pools = cols([
        ("database", .text), ("user", .text),
        ("cl_active", .int4), ("cl_waiting", .int4), ("cl_active_cancel_req", .int4),
        ("cl_waiting_cancel_req", .int4), ("sv_active", .int4), ("sv_active_cancel", .int4),
        ("sv_being_canceled", .int4), ("sv_idle", .int4), ("sv_used", .int4), ("sv_tested", .int4),
        ("sv_login", .int4), ("maxwait", .int4), ("maxwait_us", .int4),
        ("pool_mode", .text), ("load_balance_hosts", .text), ("cl_pinned", .int4),
    ])

    /// SHOW CLIENTS / SHOW SERVERS (`SKF_STD`, 21 columns; `T` timestamps are text).
    public static let clients = cols([
        ("type", .text), ("user", .text), ("database", .text), ("replication", .text), ("state", .text),
        ("addr", .text), ("port", .int4), ("local_addr", .text), ("local_port", .int4),
        ("connect_time", .text), ("request_time", .text),
        ("wait", .int4), ("wait_us", .int4), ("close_needed", .int4),
        ("ptr", .text), ("link", .text), ("remote_pid", .int4), ("tls", .text),
        ("application_name", .text), ("prepared_statements", .int4), ("id", .int4), ("pinned", .int4),
        ("worker", .int4),
    ])

    /// SHOW SOCKETS / ACTIVE_SOCKETS (`SKF_DBG`, 28 columns).
    public static let sockets = clients + cols([
        ("recv_pos", .int4), ("pkt_pos", .int4), ("pkt_remain", .int4),
        ("send_pos", .int4), ("send_remain", .int4), ("pkt_avail", .int4), ("send_avail", .int4),
    ])

    /// SHOW STATS (PgBouncer's 23 columns, all counters numeric, and pgmux's server reset
    /// count after each group, as PgBouncer added its parse and bind counts).
    public static let stats = [AdminColumn("database", .text)] + [
        "total_server_assignment_count", "total_xact_count", "total_query_count",
        "total_received", "total_sent", "total_xact_time", "total_query_time", "total_wait_time",
        "total_client_parse_count", "total_server_parse_count", "total_bind_count", "total_server_reset_count",
        "avg_server_assignment_count", "avg_xact_count", "avg_query_count", "avg_recv", "avg_sent",
        "avg_xact_time", "avg_query_time", "avg_wait_time", "avg_client_parse_count",
        "avg_server_parse_count", "avg_bind_count", "avg_server_reset_count",
    ].map { AdminColumn($0, .numeric) }

    private static let statsCommon = [
        "server_assignment_count", "xact_count", "query_count", "bytes_received", "bytes_sent",
        "xact_time", "query_time", "wait_time",
    ]

    /// SHOW STATS_TOTALS (12 columns).
    public static let statsTotals = [AdminColumn("database", .text)]
        + (statsCommon + ["client_parse_count", "server_parse_count", "bind_count", "server_reset_count"])
        .map { AdminColumn($0, .numeric) }

    /// SHOW STATS_AVERAGES (12 columns; only the last three carry `avg_`).
    public static let statsAverages = [AdminColumn("database", .text)]
        + (statsCommon + ["avg_client_parse_count", "avg_server_parse_count", "avg_bind_count", "avg_server_reset_count"])
        .map { AdminColumn($0, .numeric) }

    /// SHOW TOTALS: name/value pairs.
    public static let totals = cols([("name", .text), ("value", .numeric)])

    /// Row names of SHOW TOTALS, in order (22 rows).
    public static let totalsRowNames: [String] = {
        let names = ["server_assignment_count", "xact_count", "query_count", "client_bytes", "server_bytes",
                     "xact_time", "query_time", "wait_time", "ps_client_parse_count",
                     "ps_server_parse_count", "ps_bind_count", "server_reset_count"]
        return names.map { "total_" + $0 } + names.map { "avg_" + $0 }
    }()

    /// SHOW DATABASES (`ssissiiiissiiiiii`, 17 columns).
    public static let databases = cols([
        ("name", .text), ("host", .text), ("port", .int4), ("database", .text), ("force_user", .text),
        ("pool_size", .int4), ("min_pool_size", .int4), ("reserve_pool_size", .int4),
        ("server_lifetime", .int4), ("pool_mode", .text), ("load_balance_hosts", .text),
        ("max_connections", .int4), ("current_connections", .int4),
        ("max_client_connections", .int4), ("current_client_connections", .int4),
        ("paused", .int4), ("disabled", .int4),
    ])

    /// SHOW USERS (`ssssiiii`; the two sizes are text).
    public static let users = cols([
        ("name", .text), ("pool_size", .text), ("reserve_pool_size", .text), ("pool_mode", .text),
        ("max_user_connections", .int4), ("current_connections", .int4),
        ("max_user_client_connections", .int4), ("current_client_connections", .int4),
    ])

    /// SHOW CONFIG.
    public static let config = cols([("key", .text), ("value", .text), ("default", .text), ("changeable", .text)])

    /// SHOW PEERS.
    public static let peers = cols([("peer_id", .int4), ("host", .text), ("port", .int4), ("pool_size", .int4)])

    /// SHOW PEER_POOLS.
    public static let peerPools = cols([
        ("peer_id", .int4), ("cl_active_cancel_req", .int4), ("cl_waiting_cancel_req", .int4),
        ("sv_active_cancel", .int4), ("sv_login", .int4),
    ])

    /// SHOW LISTS.
    public static let lists = cols([("list", .text), ("items", .int4)])

    /// SHOW MEM.
    public static let mem = cols([("name", .text), ("size", .int4), ("used", .int4), ("free", .int4), ("memtotal", .int4)])

    /// SHOW FDS (`issssiqisssssbb`).
    public static let fds = cols([
        ("fd", .int4), ("task", .text), ("user", .text), ("database", .text), ("addr", .text),
        ("port", .int4), ("cancel", .int8), ("link", .int4), ("client_encoding", .text),
        ("std_strings", .text), ("datestyle", .text), ("timezone", .text), ("password", .text),
        ("scram_client_key", .bytea), ("scram_server_key", .bytea),
    ])

    /// SHOW DNS_HOSTS.
    public static let dnsHosts = cols([("hostname", .text), ("ttl", .int8), ("addrs", .text)])

    /// SHOW DNS_ZONES.
    public static let dnsZones = cols([("zonename", .text), ("serial", .int8), ("count", .int4)])

    /// SHOW HOSTS (pgmux extension): one row per host of each database's `host=` list.
    public static let hosts = cols([
        ("database", .text), ("host", .text), ("port", .int4), ("target_session_attrs", .text),
        ("role", .text), ("state", .text), ("failures", .int4), ("retry_in", .numeric), ("last_error", .text),
    ])

    /// SHOW THREADS (pgmux extension): one row per event loop.
    public static let threads = cols([
        ("worker", .int4), ("clients", .int4), ("waiting_clients", .int4), ("servers", .int4),
        ("active_servers", .int4), ("idle_servers", .int4), ("pools", .int4), ("cpu_seconds", .numeric),
        ("servers_moved_in", .int8), ("servers_moved_out", .int8), ("clients_moved_in", .int8),
        ("clients_moved_out", .int8), ("in_use", .int4),
    ])

    /// SHOW VERSION.
    public static let version = cols([("version", .text)])

    /// SHOW STATE.
    public static let state = cols([("key", .text), ("value", .text)])
}
