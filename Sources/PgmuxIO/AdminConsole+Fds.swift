import Glibc
import PgmuxCore

/// SHOW FDS: every socket with what PgBouncer's online restart (`-R`) would need to take it
/// over, in PgBouncer's order: listeners, logging-in clients, then per pool (by database and
/// user) active and waiting clients, then active, idle, used, tested and logging-in servers.
/// TLS sockets are left out, as PgBouncer does (their session cannot be handed over). pgmux's
/// `-R` does not use this listing: it passes descriptors over its takeover socket (TakeoverSender).
extension AdminConsole {
    func addFds(to snap: inout AdminSnapshot) {
        let s = loop.config.settings
        for l in loop.listeners {
            var row = AdminFdRow(fd: l.fd, task: "pooler")
            if l.isUnix {
                row.addr = "unix"
                row.port = s.listenPort
            } else {
                let a = Socket.localAddress(l.fd)
                row.addr = a.hostText
                row.port = a.port
            }
            snap.fds.append(row)
        }
        let byID = { (a: Endpoint, b: Endpoint) in a.id < b.id }
        let clients = allClients.sorted(by: byID)
        for c in clients where [.startup, .authenticating].contains(c.state) && c.adminRole == nil {
            if let row = clientRow(c) { snap.fds.append(row) }
        }
        let pools = allPools.sorted {
            ($0.databaseName, $0.userName, $0.replication.rawValue) < ($1.databaseName, $1.userName, $1.replication.rawValue)
        }
        var clientsOf: [ObjectIdentifier: [ClientConnection]] = [:]
        for c in clients { if let p = c.pool { clientsOf[ObjectIdentifier(p), default: []].append(c) } }
        var serversOf: [ObjectIdentifier: [ServerConnection]] = [:]
        for sv in allServers.sorted(by: byID) { serversOf[ObjectIdentifier(sv.pool), default: []].append(sv) }
        for pool in pools {
            let mine = clientsOf[ObjectIdentifier(pool)] ?? []
            for c in mine where c.state == .active || c.state == .idle { if let row = clientRow(c) { snap.fds.append(row) } }
            for c in mine where c.state == .waiting || c.state == .waitingForWelcome {
                if let row = clientRow(c) { snap.fds.append(row) }
            }
            let own = serversOf[ObjectIdentifier(pool)] ?? []
            let lists: [(ServerConnection) -> Bool] = [
                { $0.state == .active }, { $0.state == .idle },
                { if case .ownQuery(let q) = $0.state { return q != .reset } else { return false } },
                { $0.state == .ownQuery(.reset) },
                { [.connecting, .tlsRequest, .tlsHandshake, .loggingIn].contains($0.state) },
            ]
            for inList in lists {
                for sv in own where inList(sv) { if let row = serverRow(sv) { snap.fds.append(row) } }
            }
        }
    }

    /// PgBouncer's show_one_fd for a client; nil for a TLS client or one linked to a TLS server.
    private func clientRow(_ c: ClientConnection) -> AdminFdRow? {
        guard c.ssl == nil, c.server?.ssl == nil else { return nil }
        var row = AdminFdRow(fd: c.fd, task: "client")
        row.user = c.user.isEmpty ? nil : c.user
        row.database = c.pool?.databaseName
        row.addr = c.remote.hostText
        row.port = c.isUnixSocket ? loop.config.settings.listenPort : Int(c.remote.port)
        row.cancel = c.cancelKey
        row.link = c.server?.fd ?? 0
        row.clientEncoding = c.params["client_encoding"]
        row.stdStrings = c.params["standard_conforming_strings"]
        row.dateStyle = c.params["datestyle"]
        row.timeZone = c.params["timezone"]
        // A user known only through auth_query: the secret found, which the new process lacks.
        if let pool = c.pool, loop.authFile[c.user] == nil, loop.config.users[c.user] == nil,
           let cached = loop.authQueryCache[c.user], pool.database.authUser ?? loop.config.settings.authUser != nil {
            row.password = cached.secret
        }
        addSCRAMKeys(of: c.pool, to: &row)
        return row
    }

    private func serverRow(_ sv: ServerConnection) -> AdminFdRow? {
        guard sv.ssl == nil, sv.client?.ssl == nil else { return nil }
        var row = AdminFdRow(fd: sv.fd, task: "server")
        row.user = sv.pool.serverUser
        row.database = sv.pool.databaseName
        row.addr = sv.address.family == AF_UNIX ? "unix" : sv.address.hostText
        row.port = sv.address.family == AF_UNIX ? sv.pool.database.port : sv.address.port
        row.cancel = sv.backendKey
        row.link = sv.client?.fd ?? 0
        row.clientEncoding = sv.params["client_encoding"]?.value
        row.stdStrings = sv.params["standard_conforming_strings"]?.value
        row.dateStyle = sv.params["datestyle"]?.value
        row.timeZone = sv.params["timezone"]?.value
        addSCRAMKeys(of: sv.pool, to: &row)
        return row
    }

    /// The pool logs in with SCRAM keys taken from a client's exchange (PgBouncer's use_scram_keys).
    private func addSCRAMKeys(of pool: Pool?, to row: inout AdminFdRow) {
        guard let keys = pool?.scramPassThrough else { return }
        row.scramClientKey = keys.clientKey
        row.scramServerKey = keys.serverKey
    }
}
