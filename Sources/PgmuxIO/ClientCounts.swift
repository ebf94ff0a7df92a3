import PgmuxCore

/// Client counts of the whole process, whatever loop a client landed on: max_client_conn, and
/// the clients per database and per user (max_db_client_connections,
/// max_user_client_connections, SHOW DATABASES / SHOW USERS).
final class ClientCounts: @unchecked Sendable {
    private let lock = Lock()
    private var loggedIn = 0
    private var perDatabase: [String: Int] = [:]
    private var perUser: [String: Int] = [:]

    /// A client past a valid startup packet: admitted unless max_client_conn is reached (the
    /// console always is).
    func admit(limit: Int, console: Bool) -> Bool {
        lock.withLock {
            if loggedIn >= limit && !console { return false }
            loggedIn += 1
            return true
        }
    }

    /// A client handed over by an online restart, admitted whatever the limit.
    func adopt() { lock.withLock { loggedIn += 1 } }
    func left() { lock.withLock { loggedIn -= 1 } }

    /// Counts a client of `key`; returns the count with it.
    func addDatabase(_ key: String) -> Int { lock.withLock { perDatabase[key, default: 0] += 1; return perDatabase[key]! } }
    func addUser(_ key: String) -> Int { lock.withLock { perUser[key, default: 0] += 1; return perUser[key]! } }

    func removeDatabase(_ key: String) {
        lock.withLock {
            let n = perDatabase[key, default: 1] - 1
            perDatabase[key] = n > 0 ? n : nil
        }
    }

    func removeUser(_ key: String) {
        lock.withLock {
            let n = perUser[key, default: 1] - 1
            perUser[key] = n > 0 ? n : nil
        }
    }

    func database(_ key: String) -> Int { lock.withLock { perDatabase[key] ?? 0 } }
    func user(_ key: String) -> Int { lock.withLock { perUser[key] ?? 0 } }
}

/// auth_query answers per user, shared by the loops and reused for `seconds`.
final class AuthQueryCache: @unchecked Sendable {
    private let lock = Lock()
    private var entries: [String: (secret: String?, time: Double)] = [:]
    let seconds = 30.0

    subscript(user: String) -> (secret: String?, time: Double)? {
        get { lock.withLock { entries[user] } }
        set { lock.withLock { entries[user] = newValue } }
    }

    func removeAll() { lock.withLock { entries.removeAll() } }

    /// Users whose lookup found a secret.
    var usersFound: [String] { lock.withLock { entries.compactMap { $0.value.secret != nil ? $0.key : nil } } }
}
