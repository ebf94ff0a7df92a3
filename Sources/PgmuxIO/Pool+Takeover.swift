import Glibc
import PgmuxCore

extension Pool {
    /// A server the old process handed over joins the idle list as if it had just logged in
    /// (it can greet this pool's clients, and is lent next). Refused (false) when its host is no
    /// longer in the database's list or the pool has no room (pool size, max_db_connections,
    /// max_user_connections), or when one of its statements has another id here than its name
    /// on the server says (one the two processes first saw during the restart): the caller ends
    /// that session.
    func adoptServer(_ m: TakeoverServer, fd: Int32) -> Bool {
        guard let host = selector.hosts.first(where: { $0.name == m.hostName && $0.port == m.hostPort }),
              m.statements.allSatisfy({ loop.preparedStatements.id(for: $0.definition) == $0.id }),
              canOpen(evictIfNeeded: false) else { return false }
        let server = ServerConnection(loop: loop, pool: self, fd: fd, address: Socket.remoteAddress(fd), host: host)
        server.backendKey = m.backendKey
        for p in m.parameters { server.params[p.key] = (p.name, p.value) }
        server.reportedOrder = m.reportedOrder
        server.sessionSettings = m.settings
        server.localAddress = Socket.localAddress(fd)
        for st in m.statements {
            loop.preparedStatements.markValidated(st.id)  // this server prepared it
            _ = server.statementCache.insert(st.id)
        }
        machine.connectStarted()
        loop.serverOpened(server)
        serverLoggedIn(server)
        return true
    }
}
