/// A parsed admin-console command (PgBouncer 1.25 `src/admin.c`), produced by `AdminParser`.
///
/// Arguments are already unquoted. An absent argument and a quoted empty one (`PAUSE ""`) are the
/// same thing for PgBouncer (`arg[0] == 0`), so both are `nil` here.
public enum AdminCommand: Equatable, Sendable {
    /// `SHOW item` / `SELECT item` (`SHOW HELP` included).
    case show(AdminShowItem)
    /// `SHOW client_encoding` etc.: one text column, one row (§2.4).
    case fakeShow(AdminFakeParameter)
    /// `SET client_encoding = …` etc.: NOTICE `SET ignored`, tag `SET`; allowed to every console user.
    case fakeSet(AdminFakeParameter)
    /// `SET key = value`: key as typed (unquoted, case kept), value unquoted.
    case set(key: String, value: String)
    case reload
    case suspend
    case shutdown(AdminShutdownMode)
    case pause(String?)
    case resume(String?)
    case kill(String?)
    case reconnect(String?)
    case waitClose(String?)
    /// nil → `a database is required` (reported after the access check, as PgBouncer does).
    case disable(String?)
    /// nil → `a database is required` (reported after the access check).
    case enable(String?)
    /// The id as `sscanf("%llu")` reads it; nil → `invalid client pointer supplied` (after the
    /// access check).
    case killClient(UInt64?)

    /// CommandComplete tag on success (§2.3).
    public var tag: String {
        switch self {
        case .show, .fakeShow: return "SHOW"
        case .fakeSet: return "SET"
        case .set(let key, let value): return "SET \(key)=\(value)"
        case .reload: return "RELOAD"
        case .suspend: return "SUSPEND"
        case .shutdown: return "SHUTDOWN"
        case .pause: return "PAUSE"
        case .resume: return "RESUME"
        case .kill: return "KILL"
        case .reconnect: return "RECONNECT"
        case .waitClose: return "WAIT_CLOSE"
        case .disable: return "DISABLE"
        case .enable: return "ENABLE"
        case .killClient: return "KILL_CLIENT"
        }
    }

    /// The INFO line PgBouncer logs for an accepted command (`PAUSE command issued`,
    /// `KILL 'db' command issued`); nil for commands it does not log (SHOW, SET, KILL_CLIENT).
    /// PgBouncer logs it after the access check and, for PAUSE/SUSPEND/KILL, after the
    /// "already suspended/paused" check.
    public var logMessage: String? {
        func issued(_ name: String, _ db: String?) -> String {
            db.map { "\(name) '\($0)' command issued" } ?? "\(name) command issued"
        }
        switch self {
        case .show, .fakeShow, .fakeSet, .set, .killClient: return nil
        case .reload: return "RELOAD command issued"
        case .suspend: return "SUSPEND command issued"
        case .shutdown(.immediate): return "SHUTDOWN command issued"
        case .shutdown(.waitForServers): return "SHUTDOWN WAIT_FOR_SERVERS command issued"
        case .shutdown(.waitForClients): return "SHUTDOWN WAIT_FOR_CLIENTS command issued"
        case .pause(let db): return issued("PAUSE", db)
        case .resume(let db): return issued("RESUME", db)
        case .kill(let db): return issued("KILL", db)
        case .reconnect(let db): return issued("RECONNECT", db)
        case .waitClose(let db): return issued("WAIT_CLOSE", db)
        case .disable(let db): return db.map { issued("DISABLE", $0) }
        case .enable(let db): return db.map { issued("ENABLE", $0) }
        }
    }
}

public enum AdminShutdownMode: Equatable, Sendable {
    case immediate, waitForServers, waitForClients
}

/// The SHOW items of PgBouncer 1.25's `show_map` (raw value = the lowercase name).
public enum AdminShowItem: String, CaseIterable, Sendable {
    case clients, config, databases, fds, help, lists, peers
    case peerPools = "peer_pools"
    case pools, servers, sockets
    case activeSockets = "active_sockets"
    case stats
    case statsTotals = "stats_totals"
    case statsAverages = "stats_averages"
    case users, version, totals, mem
    case dnsHosts = "dns_hosts"
    case dnsZones = "dns_zones"
    case state
    /// pgmux extension: the servers of every database's `host=` list, their role and health.
    case hosts
    /// pgmux extension: the event loops (`workers`) and their load.
    case threads
}

/// Session parameters the console pretends to have (`fake_param_list`).
public enum AdminFakeParameter: String, CaseIterable, Sendable {
    case clientEncoding = "client_encoding"
    case defaultTransactionIsolation = "default_transaction_isolation"
    case standardConformingStrings = "standard_conforming_strings"
    case dateStyle = "datestyle"
    case timeZone = "timezone"

    /// The value `SHOW` returns; the column is named `rawValue` (PgBouncer uses its own lowercase
    /// name, not the spelling the client typed).
    public var value: String {
        switch self {
        case .clientEncoding: return "UTF-8"
        case .defaultTransactionIsolation: return "read committed"
        case .standardConformingStrings: return "on"
        case .dateStyle: return "ISO"
        case .timeZone: return "GMT"
        }
    }
}

/// An admin-console error: ErrorResponse S=ERROR, C=`sqlstate`, M=`message`, then ReadyForQuery.
public struct AdminError: Error, Equatable, Sendable {
    public var message: String
    public var sqlstate: String

    public init(_ message: String, sqlstate: String = "08P01") {
        self.message = message
        self.sqlstate = sqlstate
    }

    // Texts exactly as PgBouncer 1.25.2 sends them.
    public static func invalidCommand(_ query: String) -> AdminError { AdminError("invalid command '\(query)', use SHOW HELP;") }
    public static let badArguments = AdminError("bad arguments")
    public static let accessNeeded = AdminError("admin access needed")
    public static let setFailed = AdminError("SET failed")
    public static let reloadFailed = AdminError("RELOAD failed, see logs for additional details", sqlstate: "F0000")
    public static let alreadyPaused = AdminError("already suspended/paused")
    public static let notPaused = AdminError("pooler is not paused/suspended")
    public static let shuttingDown = AdminError("pooler is shutting down")
    public static let suspendWithPausedDatabases = AdminError("cannot suspend with paused databases")
    public static let databaseRequired = AdminError("a database is required")
    public static let invalidClientPointer = AdminError("invalid client pointer supplied")
    public static let clientNotFound = AdminError("client not found")
    public static let extendedProtocol = AdminError("extended query protocol not supported by admin console")
    /// `type` is printed as a decimal number (PgBouncer's `%d` of the type byte: 'D' → 68).
    public static func unsupportedPacket(_ type: UInt8) -> AdminError {
        AdminError("unsupported packet type for admin console: \(type)")
    }
    public static func noSuchDatabase(_ db: String) -> AdminError { AdminError("no such database: \(db)") }
    public static func databaseNotPaused(_ db: String) -> AdminError { AdminError("database \(db) is not paused") }
    public static func cannotPauseAdmin(_ db: String) -> AdminError { AdminError("cannot pause admin db: \(db)") }
    public static func cannotKillAdmin(_ db: String) -> AdminError { AdminError("cannot kill admin db: \(db)") }
    /// Used by both DISABLE and ENABLE (sic).
    public static func cannotDisableAdmin(_ db: String) -> AdminError { AdminError("cannot disable admin db: \(db)") }
    public static func cannotReconnectAdmin(_ db: String) -> AdminError { AdminError("cannot reconnect admin db: \(db)") }
    public static func cannotWaitAdmin(_ db: String) -> AdminError { AdminError("cannot wait in admin db: \(db)") }
}
