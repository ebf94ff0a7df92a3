/// The `[pgbouncer]` (or `[pgmux]`) section, typed, with PgBouncer 1.25 defaults.
///
/// Times are Double seconds (PgBouncer keeps µs; fractions such as 0.5 are allowed). "Unset"
/// settings (shown NULL by SHOW CONFIG) are optionals; "empty" ones are empty strings/lists.
///
/// Unknown keys are NOT fatal here, unlike PgBouncer: `apply` reports them and `Config` turns them
/// into warnings, so a pgmux config may carry keys from newer PgBouncer releases. Bad values of
/// known keys are fatal, exactly as in PgBouncer.
public struct Settings: Sendable, Equatable {
    // Listening
    public var listenAddr: [String] = []
    public var listenPort = 6432
    /// pgmux extension: Prometheus text endpoint (`GET /metrics`); 0 = off.
    public var metricsPort = 0
    public var metricsAddr = "127.0.0.1"
    public var listenBacklog = 128
    public var unixSocketDir = "/tmp"
    public var unixSocketMode = 0o777
    public var unixSocketGroup = ""
    public var soReuseport = false
    /// pgmux extension: event loops (threads) serving clients; `auto` is one per online CPU.
    public var workers: WorkerCount = .auto
    /// pgmux extension: how clients are spread over the loops (`LoopBalancer`).
    public var workerPlacement: WorkerPlacement = .load
    public var pktBuf = 4096
    public var maxPacketSize = 2_147_483_647
    public var sbufLoopcnt = 5

    // Authentication
    public var authType: AuthType = .md5
    public var authFile: String? = nil
    public var authHbaFile = ""
    public var authIdentFile: String? = nil
    public var authLdapOptions: String? = nil
    /// pgmux extension: the PAM service of auth_type pam (PgBouncer's is fixed: "pgbouncer").
    public var authPamService = "pgbouncer"
    /// pgmux extension, PostgreSQL's name: the keytab of hba gss rules ("": KRB5_KTNAME or the
    /// system's default keytab).
    public var krbServerKeyfile = ""
    public var authUser: String? = nil
    public var authQuery = Settings.defaultAuthQuery
    public var authDbname: String? = nil
    public var scramIterations = 4096

    // Pooling
    public var poolMode: PoolMode = .session
    public var maxClientConn = 100
    public var defaultPoolSize = 20
    public var minPoolSize = 0
    public var reservePoolSize = 0
    public var reservePoolTimeout: Double = 5
    public var maxDbConnections = 0
    public var maxDbClientConnections = 0
    public var maxUserConnections = 0
    public var maxUserClientConnections = 0
    public var serverRoundRobin = false
    public var maxPreparedStatements = 200
    public var trackExtraParameters: [String] = ["IntervalStyle"]
    public var ignoreStartupParameters: [String] = []
    public var applicationNameAddHost = false
    public var disablePqexec = false
    public var autodbIdleTimeout: Double = 3600

    // Server connections
    public var serverResetQuery = "DISCARD ALL"
    public var serverResetQueryAlways = false
    /// `<empty>` (the default) sends an empty Query; "" disables the check.
    public var serverCheckQuery = "<empty>"
    public var serverCheckDelay: Double = 30
    public var serverFastClose = false
    public var serverLifetime: Double = 3600
    public var serverIdleTimeout: Double = 600
    public var serverConnectTimeout: Double = 15
    public var serverLoginRetry: Double = 15
    /// Default `target_session_attrs` of databases that do not set their own (pgmux extension).
    public var targetSessionAttrs: TargetSessionAttrs = .any
    /// How long a transaction waits for a server while no host of its pool is usable (host
    /// lists and target_session_attrs; pgmux extension). 0: fail such transactions at once.
    public var failoverTimeout: Double = 5

    // Client timeouts
    public var clientLoginTimeout: Double = 60
    public var clientIdleTimeout: Double = 0
    public var queryTimeout: Double = 0
    /// How long a client pinned to its server (session advisory locks, temporary tables, WITH
    /// HOLD cursors in transaction pooling) may keep it idle (pgmux extension). 0: no limit.
    public var pinTimeout: Double = 0
    public var queryWaitTimeout: Double = 120
    public var queryWaitNotify: Double = 5
    public var idleTransactionTimeout: Double = 0
    public var transactionTimeout: Double = 0
    public var cancelWaitTimeout: Double = 10
    public var suspendTimeout: Double = 10

    // TCP
    public var tcpKeepalive = true
    public var tcpKeepcnt = 0
    public var tcpKeepidle = 0
    public var tcpKeepintvl = 0
    /// Milliseconds (TCP_USER_TIMEOUT).
    public var tcpUserTimeout = 0
    public var tcpDeferAccept = true
    public var tcpSocketBuffer = 0

    // DNS
    public var dnsMaxTtl: Double = 15
    public var dnsNxdomainTtl: Double = 15
    public var dnsZoneCheckPeriod: Double = 0
    public var resolvConf = ""
    /// pgmux extension: name servers for c-ares instead of resolv.conf's (`ip`, `ip:port`,
    /// `[ipv6]:port`, comma-separated).
    public var dnsNameservers = ""

    // Logging and process
    public var logfile = ""
    public var pidfile = ""
    public var syslog = false
    public var syslogFacility = "daemon"
    public var syslogIdent = "pgbouncer"
    public var logConnections = true
    public var logDisconnections = true
    public var logPoolerErrors = true
    public var logStats = true
    /// Integer seconds in PgBouncer (the stats timer is set once at start).
    public var statsPeriod = 60
    public var verbose = 0
    public var user: String? = nil
    public var jobName = "pgbouncer"
    public var conffile: String? = nil
    public var peerId = 0

    // Console
    public var adminUsers: [String] = []
    public var statsUsers: [String] = []

    // TLS toward clients
    public var clientTlsSslmode: TLSMode = .disable
    public var clientTlsCaFile = ""
    public var clientTlsCertFile = ""
    public var clientTlsKeyFile = ""
    public var clientTlsCiphers = "default"
    public var clientTls13Ciphers: String? = nil
    public var clientTlsProtocols = "secure"
    public var clientTlsDheparams = "auto"
    public var clientTlsEcdhcurve = "auto"

    // TLS toward servers
    public var serverTlsSslmode: TLSMode = .prefer
    public var serverTlsCaFile = ""
    public var serverTlsCertFile = ""
    public var serverTlsKeyFile = ""
    public var serverTlsCiphers = "default"
    public var serverTls13Ciphers: String? = nil
    public var serverTlsProtocols = "secure"
    /// pgmux extension: SCRAM channel binding toward PostgreSQL (libpq's `channel_binding`).
    public var serverChannelBinding: ServerChannelBinding = .prefer

    /// Names of the admin console (`pgbouncer`, and pgmux's alias `pgmux`).
    public static let reservedDatabaseNames: Set<String> = ["pgbouncer", "pgmux"]

    public static let defaultAuthQuery =
        "SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END FROM pg_authid WHERE rolname=$1 AND rolcanlogin"

    public init() {}

    /// Sets `key` (case-insensitive) from its config text.
    /// - Returns: false if the key is unknown (the caller decides whether that is a warning).
    /// - Throws: a located `ConfigError` naming the allowed values when the value is bad.
    @discardableResult
    public mutating func apply(key rawKey: String, value: String, file: String, line: Int) throws(ConfigError) -> Bool {
        let key = rawKey.lowercased()
        let v = ValueParser(file: file, line: line, key: key, value: value)
        switch key {
        case "listen_addr": listenAddr = v.list()
        case "listen_port": listenPort = try v.port()
        case "metrics_port": metricsPort = try v.integer(in: 0...65535)
        case "metrics_addr": metricsAddr = v.string()
        case "listen_backlog": listenBacklog = try v.integer(in: 1...Int(Int32.max))
        case "unix_socket_dir": unixSocketDir = v.string()
        case "unix_socket_mode": unixSocketMode = try v.integer(in: 0...0o7777)
        case "unix_socket_group": unixSocketGroup = v.string()
        case "so_reuseport": soReuseport = try v.bool()
        case "workers":
            if value.trimmingASCIIWhitespace.lowercased() == "auto" { workers = .auto } else {
                workers = .fixed(try v.integer(in: 1...256))
            }
        case "worker_placement": workerPlacement = try v.choice(WorkerPlacement.self)
        case "pkt_buf": pktBuf = try v.integer(in: 512...Int(Int32.max))
        case "max_packet_size": maxPacketSize = try v.nonNegative()
        case "sbuf_loopcnt": sbufLoopcnt = try v.nonNegative()

        case "auth_type": authType = try v.choice(AuthType.self)
        case "auth_file": authFile = v.string()
        case "auth_hba_file": authHbaFile = v.string()
        case "auth_ident_file": authIdentFile = v.string()
        case "auth_ldap_options": authLdapOptions = v.string()
        case "auth_pam_service": authPamService = v.string()
        case "krb_server_keyfile": krbServerKeyfile = v.string()
        case "auth_user": authUser = v.string()
        case "auth_query": authQuery = v.string()
        case "auth_dbname":
            // PgBouncer's cf_set_authdb: the console cannot answer auth_query.
            guard !Settings.reservedDatabaseNames.contains(v.string()) else {
                throw ConfigError(file: file, line: line, key: key,
                                  message: "cannot use the reserved \"\(v.string())\" database as an auth_dbname")
            }
            authDbname = v.string()
        case "scram_iterations": scramIterations = try v.integer(in: 1...SCRAMSecret.maxIterations)

        case "pool_mode": poolMode = try v.choice(PoolMode.self)
        case "max_client_conn": maxClientConn = try v.nonNegative()
        case "default_pool_size": defaultPoolSize = try v.nonNegative()
        case "min_pool_size": minPoolSize = try v.nonNegative()
        case "reserve_pool_size": reservePoolSize = try v.nonNegative()
        case "reserve_pool_timeout": reservePoolTimeout = try v.seconds()
        case "max_db_connections": maxDbConnections = try v.nonNegative()
        case "max_db_client_connections": maxDbClientConnections = try v.nonNegative()
        case "max_user_connections": maxUserConnections = try v.nonNegative()
        case "max_user_client_connections": maxUserClientConnections = try v.nonNegative()
        case "server_round_robin": serverRoundRobin = try v.bool()
        case "max_prepared_statements": maxPreparedStatements = try v.nonNegative()
        case "track_extra_parameters": trackExtraParameters = v.list()
        case "ignore_startup_parameters": ignoreStartupParameters = v.list()
        case "application_name_add_host": applicationNameAddHost = try v.bool()
        case "disable_pqexec": disablePqexec = try v.bool()
        case "autodb_idle_timeout": autodbIdleTimeout = try v.seconds()

        case "server_reset_query": serverResetQuery = v.string()
        case "server_reset_query_always": serverResetQueryAlways = try v.bool()
        case "server_check_query": serverCheckQuery = v.string()
        case "server_check_delay": serverCheckDelay = try v.seconds()
        case "server_fast_close": serverFastClose = try v.bool()
        case "server_lifetime": serverLifetime = try v.seconds()
        case "server_idle_timeout": serverIdleTimeout = try v.seconds()
        case "server_connect_timeout": serverConnectTimeout = try v.seconds()
        case "server_login_retry": serverLoginRetry = try v.seconds()
        case "target_session_attrs": targetSessionAttrs = try v.choice(TargetSessionAttrs.self)
        case "failover_timeout": failoverTimeout = try v.seconds()

        case "client_login_timeout": clientLoginTimeout = try v.seconds()
        case "client_idle_timeout": clientIdleTimeout = try v.seconds()
        case "query_timeout": queryTimeout = try v.seconds()
        case "pin_timeout": pinTimeout = try v.seconds()
        case "query_wait_timeout": queryWaitTimeout = try v.seconds()
        case "query_wait_notify": queryWaitNotify = try v.seconds()
        case "idle_transaction_timeout": idleTransactionTimeout = try v.seconds()
        case "transaction_timeout": transactionTimeout = try v.seconds()
        case "cancel_wait_timeout": cancelWaitTimeout = try v.seconds()
        case "suspend_timeout": suspendTimeout = try v.seconds()

        case "tcp_keepalive": tcpKeepalive = try v.bool()
        case "tcp_keepcnt": tcpKeepcnt = try v.nonNegative()
        case "tcp_keepidle": tcpKeepidle = try v.nonNegative()
        case "tcp_keepintvl": tcpKeepintvl = try v.nonNegative()
        case "tcp_user_timeout": tcpUserTimeout = try v.nonNegative()
        // Old configs write a seconds count here (PgBouncer < 1.x took an int); any non-zero = on.
        case "tcp_defer_accept": tcpDeferAccept = try v.nonNegative() != 0
        case "tcp_socket_buffer": tcpSocketBuffer = try v.nonNegative()

        case "dns_max_ttl": dnsMaxTtl = try v.seconds()
        case "dns_nxdomain_ttl": dnsNxdomainTtl = try v.seconds()
        case "dns_zone_check_period": dnsZoneCheckPeriod = try v.seconds()
        case "resolv_conf": resolvConf = v.string()
        case "dns_nameservers": dnsNameservers = v.string()

        case "logfile": logfile = v.string()
        case "pidfile": pidfile = v.string()
        case "syslog": syslog = try v.bool()
        case "syslog_facility": syslogFacility = v.string()
        case "syslog_ident": syslogIdent = v.string()
        case "log_connections": logConnections = try v.bool()
        case "log_disconnections": logDisconnections = try v.bool()
        case "log_pooler_errors": logPoolerErrors = try v.bool()
        case "log_stats": logStats = try v.bool()
        case "stats_period": statsPeriod = try v.integer(in: 1...Int(Int32.max))
        case "verbose": verbose = try v.nonNegative()
        case "user": user = v.string()
        case "job_name", "service_name": jobName = v.string()
        case "conffile": conffile = v.string()
        case "peer_id": peerId = try v.integer(in: 0...16383)

        case "admin_users": adminUsers = v.list()
        case "stats_users": statsUsers = v.list()

        case "client_tls_sslmode": clientTlsSslmode = try v.choice(TLSMode.self)
        case "client_tls_ca_file": clientTlsCaFile = v.string()
        case "client_tls_cert_file": clientTlsCertFile = v.string()
        case "client_tls_key_file": clientTlsKeyFile = v.string()
        case "client_tls_ciphers": clientTlsCiphers = v.string()
        case "client_tls13_ciphers": clientTls13Ciphers = v.string()
        case "client_tls_protocols": clientTlsProtocols = v.string()
        case "client_tls_dheparams":
            let text = value.trimmingASCIIWhitespace.lowercased()
            guard ["none", "auto", "legacy"].contains(text) else { throw v.fail("none, auto or legacy") }
            clientTlsDheparams = text
        case "client_tls_ecdhcurve": clientTlsEcdhcurve = v.string()

        case "server_tls_sslmode": serverTlsSslmode = try v.choice(TLSMode.self)
        case "server_tls_ca_file": serverTlsCaFile = v.string()
        case "server_tls_cert_file": serverTlsCertFile = v.string()
        case "server_tls_key_file": serverTlsKeyFile = v.string()
        case "server_tls_ciphers": serverTlsCiphers = v.string()
        case "server_tls13_ciphers": serverTls13Ciphers = v.string()
        case "server_tls_protocols": serverTlsProtocols = v.string()
        case "server_channel_binding": serverChannelBinding = try v.choice(ServerChannelBinding.self)

        default: return false
        }
        return true
    }
}

/// `worker_placement`: which loops take clients.
/// * `load` — as few loops as the load needs: clients gather on the loops in use, and one more
///   loop is taken into use when those are busy (see `LoopBalancer`);
/// * `even` — every loop takes clients, as many each as can be.
public enum WorkerPlacement: String, ConfigEnum, Equatable, Sendable {
    case load, even
    public var configName: String { rawValue }
}

/// `workers`: how many event loops serve clients.
public enum WorkerCount: Equatable, Sendable, CustomStringConvertible {
    /// One per online CPU.
    case auto
    case fixed(Int)

    public var description: String {
        switch self {
        case .auto: return "auto"
        case .fixed(let n): return String(n)
        }
    }

    /// The number of loops, given the online CPUs.
    public func resolved(onlineCPUs: Int) -> Int {
        switch self {
        case .auto: return max(1, onlineCPUs)
        case .fixed(let n): return n
        }
    }
}
