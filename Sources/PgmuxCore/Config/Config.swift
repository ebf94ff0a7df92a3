/// A fully loaded configuration: settings plus the `[databases]`, `[users]` and `[peers]` tables.
///
/// Loading is all-or-nothing: the first bad line throws, so a RELOAD can keep the running config
/// intact (pgmux is stricter than PgBouncer's "apply up to the bad line" here, on purpose).
/// Unknown `[pgbouncer]` keys and unknown sections only produce `warnings`.
public struct Config: Sendable {
    public var settings = Settings()
    /// Named databases, excluding the `*` template.
    public var databases: [String: DatabaseEntry] = [:]
    /// The `*` entry, used for databases not listed.
    public var fallbackDatabase: DatabaseEntry? = nil
    public var users: [String: UserEntry] = [:]
    public var peers: [Int: PeerEntry] = [:]
    /// `"<file>:<line>: <key>: <message>"` lines for ignored keys and sections.
    public var warnings: [String] = []
    /// Path the config was loaded from (RELOAD re-reads it).
    public var path: String

    /// Section names accepted for the main settings. `[pgmux]` lets a config say what it is for;
    /// `[pgbouncer]` keeps existing configs working unchanged.
    public static let mainSections: Set<String> = ["pgbouncer", "pgmux"]

    public init(path: String) {
        self.path = path
    }

    /// Reads and validates the config at `path` (following `%include`s).
    public static func load(path: String) throws(ConfigError) -> Config {
        try load(entries: IniParser.parse(path: path), path: path)
    }

    /// Builds a config from parsed lines (section headers included, see `IniEntry`).
    public static func load(entries: [IniEntry], path: String) throws(ConfigError) -> Config {
        var config = Config(path: path)
        var sawMain = false
        for entry in entries {
            if entry.isSectionHeader {
                if mainSections.contains(entry.section) {
                    sawMain = true
                } else if !["databases", "users", "peers"].contains(entry.section) {
                    config.warnings.append("\(entry.file):\(entry.line): [\(entry.section)]: unknown section ignored")
                }
                continue
            }
            switch entry.section {
            case let s where mainSections.contains(s):
                sawMain = true
                let known = try config.settings.apply(key: entry.key, value: entry.value, file: entry.file, line: entry.line)
                if !known {
                    config.warnings.append("\(entry.file):\(entry.line): \(entry.key): unknown setting ignored")
                }
            case "databases":
                let db = try DatabaseEntry.parse(name: entry.key, connectionString: entry.value, file: entry.file, line: entry.line)
                if entry.key == "*" {
                    config.fallbackDatabase = db
                } else {
                    config.databases[entry.key] = db
                }
            case "users":
                config.users[entry.key] = try UserEntry.parse(name: entry.key, connectionString: entry.value, file: entry.file, line: entry.line)
            case "peers":
                let peer = try PeerEntry.parse(id: entry.key, connectionString: entry.value, file: entry.file, line: entry.line)
                config.peers[peer.id] = peer
            default:
                break  // warned at the section header
            }
        }
        guard sawMain else {
            throw ConfigError(file: path, line: 0, message: "missing [pgbouncer] (or [pgmux]) section")
        }
        return config
    }

    /// The entry serving `name`: a listed database, else the `*` template instantiated for it.
    public func database(named name: String) -> DatabaseEntry? {
        if let db = databases[name] { return db }
        return fallbackDatabase?.instantiated(for: name)
    }

    /// Pool mode: `[users]`, then `[databases]`, then global.
    public func poolMode(database: String, user: String) -> PoolMode {
        users[user]?.poolMode ?? self.database(named: database)?.poolMode ?? settings.poolMode
    }

    /// Server connections per (db, user) pool: `[users]`, then `[databases]`, then `default_pool_size`.
    public func poolSize(database: String, user: String) -> Int {
        users[user]?.poolSize ?? self.database(named: database)?.poolSize ?? settings.defaultPoolSize
    }

    /// Reserve pool: `[users]`, then `[databases]`, then global.
    public func reservePoolSize(database: String, user: String) -> Int {
        users[user]?.reservePoolSize ?? self.database(named: database)?.reservePoolSize ?? settings.reservePoolSize
    }

    /// Minimum pool size: `[databases]`, then global (`[users]` has no such key).
    public func minPoolSize(database: String) -> Int {
        self.database(named: database)?.minPoolSize ?? settings.minPoolSize
    }
}
