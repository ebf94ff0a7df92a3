import Glibc
import CLibEV
import PgmuxCore

/// The connections and pools the loop owns, and the server limits across pools.
extension EventLoop {
    func bury(_ e: Endpoint) { graveyard.append(e) }

    var clientsInTransaction: Int { clients.values.reduce(0) { $0 + ($1.server != nil ? 1 : 0) } }

    func clientAccepted(_ c: ClientConnection) { clients[c.id] = c }

    func clientClosed(_ c: ClientConnection) {
        bury(c)  // keeps it alive until the iteration ends: callers still run on it
        clients[c.id] = nil
        heapChurned = true
    }

    func serverOpened(_ s: ServerConnection) {
        servers[s.id] = s
        serverCaps.opened(database: s.pool.database.dbname, user: s.pool.serverUser)
    }

    func serverClosed(_ s: ServerConnection) {
        bury(s)
        servers[s.id] = nil
        serverCaps.closed(database: s.pool.database.dbname, user: s.pool.serverUser)
    }

    /// max_db_connections / max_user_connections across all pools (see `ServerCaps.verdict`):
    /// an eviction closes the least recently used idle server under the full cap.
    func limitsAllow(_ pool: Pool, evictIfNeeded: Bool) -> Bool {
        let db = pool.database.dbname, user = pool.serverUser
        let maxDb = pool.database.maxDbConnections ?? config.settings.maxDbConnections
        let maxUser = config.users[pool.userName]?.maxUserConnections ?? config.settings.maxUserConnections
        while true {
            switch serverCaps.verdict(database: db, user: user, maxDatabase: maxDb, maxUser: maxUser,
                                      evictIfNeeded: evictIfNeeded) {
            case .allow: return true
            case .deny: return false
            case .evict(.database): if !evictIdleServer(where: { $0.database.dbname == db }) { return false }
            case .evict(.user): if !evictIdleServer(where: { $0.serverUser == user }) { return false }
            }
        }
    }

    /// Closes the idle server unused longest among the pools `matching`; false when there is none.
    private func evictIdleServer(where matching: (Pool) -> Bool) -> Bool {
        var oldest: ServerConnection?
        for p in pools.values where matching(p) {
            // Idle lists are used from the end, so each one's first server is its least recent.
            if let s = p.machine.idle.first?.server, s.lastUsed < (oldest?.lastUsed ?? .infinity) { oldest = s }
        }
        guard let oldest else { return false }
        oldest.close(reason: "evicted", notifyClient: false)
        return true
    }

    /// The pool for (database, user), created on first use.
    /// Replication clients have pools of their own, per mode and startup `options` (their
    /// servers are opened with both).
    func pool(database name: String, entry: DatabaseEntry, user: String, replication: ReplicationMode = .none,
              options: String? = nil) -> Pool {
        let serverUser = entry.user ?? user
        var key = "\(name)\u{0}\(serverUser)"
        if replication != .none { key += "\u{0}\(replication.startupValue)\u{0}\(options ?? "")" }
        if let p = pools[key] { return p }
        var password = entry.password
        if password == nil, let secret = authFile[serverUser] {
            password = secret  // plain, md5 (for md5 servers) or a SCRAM verifier (with a client's SCRAM keys)
        }
        let p = Pool(loop: self, databaseName: name, database: entry, userName: serverUser,
                     serverUser: serverUser, serverPassword: password, replication: replication, replicationOptions: options)
        pools[key] = p
        return p
    }

    /// Where a database's servers live: a TCP host, or the Unix socket of `host` (a directory) or
    /// of unix_socket_dir when no host is given.
    func serverAddress(for db: DatabaseEntry) -> Socket.Address? {
        let host = db.host ?? ""
        if host.isEmpty || host.hasPrefix("/") {
            let dir = host.isEmpty ? config.settings.unixSocketDir : host
            return Socket.Address.unix(path: "\(dir)/.s.PGSQL.\(db.port)")
        }
        let first = host.split(separator: ",").first.map(String.init) ?? host
        do {
            return try Socket.Address.resolve(host: first, port: db.port).first
        } catch {
            log.warning("\(db.name): \(error)")
            return nil
        }
    }

    // MARK: periodic work
}
