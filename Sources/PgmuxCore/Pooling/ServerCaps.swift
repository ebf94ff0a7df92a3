/// Servers per database and per server user across all pools, held against max_db_connections
/// and max_user_connections.
public struct ServerCaps: Sendable {
    public enum Scope: Equatable, Sendable { case database, user }

    public enum Verdict: Equatable, Sendable {
        case allow
        case deny
        /// The cap of `scope` is reached: close the least recently used idle server under it
        /// (of any pool), then ask again; when there is none, the open is denied.
        case evict(Scope)
    }

    private var perDatabase: [String: Int] = [:]
    private var perUser: [String: Int] = [:]

    public init() {}

    public func count(database: String) -> Int { perDatabase[database] ?? 0 }
    public func count(user: String) -> Int { perUser[user] ?? 0 }

    public mutating func opened(database: String, user: String) {
        perDatabase[database, default: 0] += 1
        perUser[user, default: 0] += 1
    }

    public mutating func closed(database: String, user: String) {
        perDatabase[database, default: 1] -= 1
        perUser[user, default: 1] -= 1
    }

    /// Whether one more server of `database` as `user` fits (a limit of 0 is none). With
    /// `evictIfNeeded` (a client is waiting) a full cap asks for an eviction, as PgBouncer's
    /// evict_connection and evict_user_connection: otherwise idle servers of one user could starve
    /// another user's clients of the same database forever. min_pool_size does not evict.
    public func verdict(database: String, user: String, maxDatabase: Int, maxUser: Int,
                        evictIfNeeded: Bool) -> Verdict {
        if maxDatabase > 0 && count(database: database) >= maxDatabase {
            return evictIfNeeded ? .evict(.database) : .deny
        }
        if maxUser > 0 && count(user: user) >= maxUser {
            return evictIfNeeded ? .evict(.user) : .deny
        }
        return .allow
    }
}
