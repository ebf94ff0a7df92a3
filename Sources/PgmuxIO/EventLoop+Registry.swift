import Glibc
import CLibEV
import PgmuxCore

/// The connections and pools the loop owns, and the server limits across pools.
extension EventLoop {
    func bury(_ e: Endpoint) { graveyard.append(e) }

    var clientsInTransaction: Int { clients.values.reduce(0) { $0 + ($1.server != nil ? 1 : 0) } }

    func clientAccepted(_ c: ClientConnection) {
        clients[c.id] = c
        group.clientLoad(index, +1)
    }

    func clientClosed(_ c: ClientConnection) {
        bury(c)  // keeps it alive until the iteration ends: callers still run on it
        if clients.removeValue(forKey: c.id) != nil { group.clientLoad(index, -1) }
        heapChurned = true
    }

    /// A server joins the loop; it was counted in the group's budget when its pool decided to
    /// open it (`Pool.canOpen`, `Pool.reserveListenerPlace`), or on the loop it came from.
    func serverOpened(_ s: ServerConnection) {
        servers[s.id] = s
    }

    /// A server closed: it leaves the loop and the budget. Another loop whose clients of the
    /// same pool wait may open one now.
    func serverClosed(_ s: ServerConnection) {
        bury(s)
        servers[s.id] = nil
        let pool = s.pool
        let counted = s.notificationHub == nil
        group.budget.released(pool: counted ? pool.key : nil, database: pool.database.dbname, user: pool.serverUser)
        if counted, let share = pool.share {
            let key = pool.key
            for other in share.waitingLoops(except: index) { group.post(to: other) { $0.pools[key]?.launchIfNeeded() } }
        }
    }

    /// A server leaves this loop for another (`ServerTransfer`): it stays counted.
    func serverLeft(_ s: ServerConnection) {
        bury(s)
        servers[s.id] = nil
    }

    /// Closes the idle server unused longest among the pools `matching` (max_db_connections,
    /// max_user_connections); false when this loop has none. Other loops are then asked to close
    /// one of theirs: the client waits for the place that frees (their close wakes its loop).
    func evictIdleServer(where matching: @escaping (Pool) -> Bool) -> Bool {
        if evictLocally(where: matching) { return true }
        // `matching` compares names only: it may run on the other loops.
        for other in 0..<group.count where other != index {
            group.post(to: other) { loop in _ = loop.evictLocally(where: matching) }
        }
        return false
    }

    private func evictLocally(where matching: (Pool) -> Bool) -> Bool {
        var oldest: ServerConnection?
        for p in pools.values where matching(p) {
            // Idle lists are used from the end, so each one's first server is its least recent.
            if let s = p.machine.idle.first?.server, s.lastUsed < (oldest?.lastUsed ?? .infinity) { oldest = s }
        }
        oldest?.close(reason: "evicted", notifyClient: false)
        return oldest != nil
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
        let p = Pool(loop: self, key: key, databaseName: name, database: entry, userName: serverUser,
                     serverUser: serverUser, serverPassword: password, replication: replication, replicationOptions: options)
        pools[key] = p
        return p
    }

    /// Where a server host lives without a DNS lookup: the Unix socket of `host` (a directory) or
    /// of unix_socket_dir when the name is empty, or a numeric IP address; nil for a host name,
    /// which `Resolver` looks up. Throws when a socket path is too long.
    func directAddress(for host: ServerHost) throws -> Socket.Address? {
        if host.name.isEmpty || host.name.hasPrefix("/") {
            let dir = host.name.isEmpty ? config.settings.unixSocketDir : host.name
            guard let a = Socket.Address.unix(path: "\(dir)/.s.PGSQL.\(host.port)") else {
                throw SocketError("Unix socket path too long: \(dir)", 0)
            }
            return a
        }
        return Socket.Address.numeric(host.name, port: host.port)
    }

    /// A server of `host` logged in (`loggedIn`: its status as reported at login) or reported a
    /// new `in_hot_standby` (only that part of `status` is taken then: the read-only default of
    /// a session may be its client's doing). When the host's role changed (a promotion, a
    /// primary back as a standby), servers of pools whose target_session_attrs no longer accepts
    /// it are closed: idle ones now, lent ones when released; they are never lent again.
    func hostReported(_ host: ServerHost, status reported: ServerStatus?, loggedIn: Bool) {
        var before: ServerStatus?, status = reported
        let t = now
        // One critical section: another loop may report the same host meanwhile.
        group.hostHealth.lock.withLock {
            before = group.hostHealth.value[host]?.status
            if loggedIn {
                group.hostHealth.value.loggedIn(host, status: status, at: t)
            } else if let r = reported {
                status = ServerStatus(hotStandby: r.hotStandby, defaultReadOnly: before?.defaultReadOnly ?? false)
                group.hostHealth.value.statusReported(host, status: status!, at: t)
            }
        }
        guard let status, let before, before != status else { return }
        log.log("host \(host.description) is now \(status.roleName) (was \(before.roleName))")
        // Every loop's servers of the host are judged again, each on its own loop.
        for other in group.loops where other !== self {
            group.post(to: other.index) { $0.hostChangedRole(host, status) }
        }
        hostChangedRole(host, status)
    }

    private func hostChangedRole(_ host: ServerHost, _ status: ServerStatus) {
        var touched: Set<ObjectIdentifier> = []
        for s in servers.values where s.host == host && !s.closeNeeded {
            switch s.state {
            case .resolving, .connecting, .tlsRequest, .tlsHandshake, .loggingIn, .closed: continue
            default: break
            }
            let target = s.pool.selector.target
            guard target != .any && target != .preferStandby && !target.accepts(status) else { continue }
            s.closeReason = "server is now \(status.roleName) (target_session_attrs=\(target.rawValue))"
            s.closeNeeded = true
            touched.insert(ObjectIdentifier(s.pool))
        }
        for p in pools.values where touched.contains(ObjectIdentifier(p)) { p.closeIdleMarked() }
    }

    // MARK: periodic work
}
