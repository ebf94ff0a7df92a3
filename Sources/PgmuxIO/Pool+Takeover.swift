import Glibc
import PgmuxCore

extension Pool {
    /// A server the old process handed over joins the idle list as if it had just logged in
    /// (it can greet this pool's clients, and is lent next). Refused (false) when it cannot be
    /// taken (see `handedOverServer`): the caller ends that session.
    func adoptServer(_ m: TakeoverServer, fd: Int32) -> Bool {
        guard let server = handedOverServer(m, fd: fd) else { return false }
        machine.connectStarted()
        loop.serverOpened(server)
        serverLoggedIn(server)
        return true
    }

    /// The server of a session-pooled or pinned client, which arrives lent to it.
    func adoptServer(_ m: TakeoverServer, fd: Int32, lentTo client: ClientConnection, pinned: Bool) -> Bool {
        guard let server = handedOverServer(m, fd: fd) else { return false }
        machine.serverArrivedLent()
        loop.serverOpened(server)
        if welcome == nil { welcome = server.reportedOrder.compactMap { k in server.params[k].map { ($0.name, $0.value) } } }
        if pinned {
            client.pinned = true
            server.pinCheck = true  // asked again at the end of each transaction, as before
        }
        link(client, server)
        return true
    }

    /// The server for `m`; nil when its host is no longer in the database's list, the pool has
    /// no room (pool size, max_db_connections, max_user_connections), or one of its statements
    /// has another id here than its name on the server says (one the two processes first saw
    /// during the restart).
    private func handedOverServer(_ m: TakeoverServer, fd: Int32) -> ServerConnection? {
        guard let host = selector.hosts.first(where: { $0.name == m.hostName && $0.port == m.hostPort }),
              m.statements.allSatisfy({ loop.preparedStatements.id(for: $0.definition) == $0.id }),
              canOpen(evictIfNeeded: false) else { return nil }
        let server = ServerConnection(loop: loop, pool: self, fd: fd, address: Socket.remoteAddress(fd), host: host)
        server.backendKey = m.backendKey
        for p in m.parameters { server.params[p.key] = (p.name, p.value) }
        server.reportedOrder = m.reportedOrder
        server.sessionSettings = m.settings
        server.sessionDirty = m.dirty
        server.localAddress = Socket.localAddress(fd)
        for st in m.statements {
            loop.preparedStatements.markValidated(st.id)  // this server prepared it
            _ = server.statementCache.insert(st.id)
        }
        return server
    }
}
