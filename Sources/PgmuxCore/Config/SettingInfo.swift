/// Static facts about one `[pgbouncer]` key, for SHOW CONFIG and RELOAD.
///
/// Kept as a table (not derived from `Settings`) because "reloadable" is a property of PgBouncer's
/// behaviour: start-only keys are read once and a RELOAD that changes them must not take effect.
public struct SettingInfo: Sendable, Equatable {
    /// Config key, lowercase.
    public let name: String
    /// Default as config text; nil = "unset" (NULL in SHOW CONFIG), "" = empty.
    public let defaultValue: String?
    /// SHOW CONFIG `changeable`: false for keys read only at startup.
    public let reloadable: Bool
}

extension Settings {
    /// Keys read only at process start (PgBouncer's "start" keys).
    public static let startOnlyKeys: Set<String> = [
        "listen_addr", "listen_port", "unix_socket_dir", "unix_socket_mode", "unix_socket_group",
        "pidfile", "pkt_buf", "listen_backlog", "so_reuseport", "user", "disable_pqexec",
        "track_extra_parameters", "resolv_conf", "workers", "dns_nameservers", "job_name", "metrics_port", "metrics_addr",
    ]

    /// Every known key with its default text, sorted by name (SHOW CONFIG order).
    public static let knownKeys: [SettingInfo] = defaultTexts
        .map { SettingInfo(name: $0.0, defaultValue: $0.1, reloadable: !startOnlyKeys.contains($0.0)) }
        .sorted { $0.name < $1.name }

    /// Looks up a key (case-insensitive).
    public static func info(for key: String) -> SettingInfo? {
        let lower = key.lowercased()
        return knownKeys.first { $0.name == lower }
    }

    /// Defaults as written in PgBouncer's docs; a unit test checks that applying each one to a
    /// fresh `Settings` changes nothing, so this table and the property defaults cannot drift.
    private static let defaultTexts: [(String, String?)] = [
        ("admin_users", ""), ("application_name_add_host", "0"), ("auth_dbname", nil),
        ("auth_file", nil), ("auth_hba_file", ""), ("auth_ident_file", nil), ("auth_ldap_options", nil),
        ("auth_query", defaultAuthQuery), ("auth_type", "md5"), ("auth_user", nil),
        ("autodb_idle_timeout", "3600"), ("cancel_wait_timeout", "10"), ("client_idle_timeout", "0"),
        ("client_login_timeout", "60"), ("client_tls13_ciphers", nil), ("client_tls_ca_file", ""),
        ("client_tls_cert_file", ""), ("client_tls_ciphers", "default"), ("client_tls_dheparams", "auto"),
        ("client_tls_ecdhcurve", "auto"), ("client_tls_key_file", ""), ("client_tls_protocols", "secure"),
        ("client_tls_sslmode", "disable"), ("conffile", nil), ("default_pool_size", "20"),
        ("disable_pqexec", "0"), ("dns_max_ttl", "15"), ("dns_nameservers", ""), ("dns_nxdomain_ttl", "15"),
        ("dns_zone_check_period", "0"), ("failover_timeout", "5"), ("idle_transaction_timeout", "0"), ("pin_timeout", "0"), ("ignore_startup_parameters", ""),
        ("job_name", "pgbouncer"), ("listen_addr", ""), ("listen_backlog", "128"), ("listen_port", "6432"),
        ("metrics_addr", "127.0.0.1"), ("metrics_port", "0"),
        ("server_channel_binding", "prefer"), ("auth_pam_service", "pgbouncer"), ("krb_server_keyfile", ""),
        ("log_connections", "1"), ("log_disconnections", "1"), ("log_pooler_errors", "1"), ("log_stats", "1"),
        ("logfile", ""), ("max_client_conn", "100"), ("max_db_client_connections", "0"),
        ("max_db_connections", "0"), ("max_packet_size", "2147483647"), ("max_prepared_statements", "200"),
        ("max_user_client_connections", "0"), ("max_user_connections", "0"), ("min_pool_size", "0"),
        ("peer_id", "0"), ("pidfile", ""), ("pkt_buf", "4096"), ("pool_mode", "session"),
        ("query_timeout", "0"), ("query_wait_notify", "5"), ("query_wait_timeout", "120"),
        ("reserve_pool_size", "0"), ("reserve_pool_timeout", "5"), ("resolv_conf", ""),
        ("sbuf_loopcnt", "5"), ("scram_iterations", "4096"), ("server_check_delay", "30"),
        ("server_check_query", "<empty>"), ("server_connect_timeout", "15"), ("server_fast_close", "0"),
        ("server_idle_timeout", "600"), ("server_lifetime", "3600"), ("server_login_retry", "15"),
        ("server_reset_query", "DISCARD ALL"), ("server_reset_query_always", "0"),
        ("server_round_robin", "0"), ("server_tls13_ciphers", nil), ("server_tls_ca_file", ""),
        ("server_tls_cert_file", ""), ("server_tls_ciphers", "default"), ("server_tls_key_file", ""),
        ("server_tls_protocols", "secure"), ("server_tls_sslmode", "prefer"), ("so_reuseport", "0"),
        ("stats_period", "60"), ("stats_users", ""), ("suspend_timeout", "10"), ("syslog", "0"),
        ("syslog_facility", "daemon"), ("syslog_ident", "pgbouncer"), ("tcp_defer_accept", "1"),
        ("tcp_keepalive", "1"), ("tcp_keepcnt", "0"), ("tcp_keepidle", "0"), ("tcp_keepintvl", "0"),
        ("target_session_attrs", "any"), ("tcp_socket_buffer", "0"), ("tcp_user_timeout", "0"), ("track_extra_parameters", "IntervalStyle"),
        ("transaction_timeout", "0"), ("unix_socket_dir", "/tmp"), ("unix_socket_group", ""),
        ("unix_socket_mode", "0777"), ("user", nil), ("verbose", "0"), ("worker_placement", "load"), ("workers", "auto"),
    ]
}
