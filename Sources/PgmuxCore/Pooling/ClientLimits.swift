/// PgBouncer's client caps, `max_db_client_connections` and `max_user_client_connections`
/// (`check_db_connection_count` / `check_user_connection_count` in src/client.c).
///
/// A client is counted from its startup packet (before it authenticates) until it closes, in
/// the database it asked for and, when the user is known (auth_file, `[users]`, auth_query), in
/// its user; the count includes the client being checked. The console counts too: only
/// `admin_users` logging in to it are let past a full database or user.
public enum ClientLimits {
    public static let databaseExceeded = "client connections exceeded (max_db_client_connections)"
    public static let userExceeded = "client connections exceeded (max_user_client_connections)"

    /// `database_max_client_connections` / `user_client_max_connections`: a per-database or
    /// per-user value of 0 (or none) falls back to the global setting; 0 there means no limit.
    public static func effective(_ own: Int?, global: Int) -> Int {
        if let own, own > 0 { return own }
        return global
    }

    /// `count` includes the client being checked. `consoleAdmin`: an admin_users member
    /// logging in to the console.
    public static func databaseAllows(count: Int, limit: Int, consoleAdmin: Bool) -> Bool {
        limit <= 0 || count <= limit || consoleAdmin
    }

    public static func userAllows(count: Int, limit: Int, consoleAdmin: Bool) -> Bool {
        consoleAdmin || limit <= 0 || count <= limit
    }
}
