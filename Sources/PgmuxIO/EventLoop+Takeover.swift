import Glibc
import CLibEV
import PgmuxCore

/// Online restart (`pgmux -R`): what the loop does with sockets and clients another process
/// hands it, and the takeover socket it offers its own to a successor on.
extension EventLoop {
    /// The listening sockets of the old process replace listen_addr and unix_socket_dir (as
    /// socket activation's do); false when the handshake brought none.
    func adoptHandedOverListeners() -> Bool {
        guard let h = takeoverHandshake else { return false }
        for (l, fd) in h.listeners where l.kind == .pooler {
            let isUnix = SocketActivation.listeningFamily(fd) == AF_UNIX
            listeners.append(Listener(loop: self, fd: fd, description: l.description, isUnix: isUnix, unixPath: l.unixPath))
            log.log("takeover: listening on \(l.description) (fd \(fd)) from the old process")
        }
        return true
    }

    /// The old process's metrics socket, when metrics stay on; closed otherwise.
    func adoptHandedOverMetrics() -> Bool {
        guard let (_, fd) = takeoverHandshake?.listeners.first(where: { $0.0.kind == .metrics }) else { return false }
        guard config.settings.metricsPort > 0 else { close(fd); return false }
        metrics = MetricsEndpoint(loop: self, fd: fd)
        return true
    }

    /// Once the loop accepts: confirm to the old process (which stops accepting then), and offer
    /// this process's own takeover socket.
    func startTakeoverSockets() {
        if let h = takeoverHandshake {
            // Same ids as in the old process, before any client of this one registers a statement.
            for d in h.definitions { _ = preparedStatements.id(for: d) }
            takeoverReceiver = TakeoverReceiver(loop: self, fd: h.fd)
            takeoverHandshake = nil
        }
        let s = config.settings
        guard !s.unixSocketDir.isEmpty else { return }
        let path = TakeoverHandshake.socketPath(unixSocketDir: s.unixSocketDir, port: s.listenPort)
        do { takeoverSender = try TakeoverSender(loop: self, path: path) } catch {
            log.warning("takeover socket \(path): \(error); online restart (-R) not possible")
        }
    }

    /// A client the old process handed over: logged in, idle, attached to its pool; in session
    /// pooling linked to the server it brought along (`serverFD`). True when that server was kept.
    @discardableResult
    func adoptClient(_ m: TakeoverClient, fd: Int32, serverFD: Int32?) -> Bool {
        var remote = Socket.Address()
        if m.isUnix { remote.storage.ss_family = sa_family_t(AF_UNIX) } else { remote = Socket.remoteAddress(fd) }
        let c = ClientConnection(loop: self, fd: fd, remote: remote)
        c.user = m.user
        c.database = m.database
        c.lastActivity = now
        clientAccepted(c)
        group.clientCounts.adopt()
        c.countedAsLoggedIn = true
        c.state = .idle  // before attaching: a refusal closes it as a logged-in client
        guard login.attachHandedOver(c), let pool = c.pool else {
            if let serverFD { endSession(serverFD) }
            return false
        }
        c.params = interned(m.params)
        c.cancelKey = m.cancelKey
        if !m.settings.isEmpty { c.session.settings = m.settings }
        if pool.mode != .session && config.settings.maxPreparedStatements > 0 {
            c.tracksStatements = true
            for s in m.statements {
                c.session.rewriter.clientStatements[s.name] = preparedStatements.id(for: s.definition)
            }
        }
        if config.settings.logConnections { log.log("\(c.logPrefix) taken over from the old process") }
        c.startReading()
        guard let sm = m.server, let serverFD else { return false }
        if pool.adoptServer(sm, fd: serverFD, lentTo: c, pinned: m.pinned) { return true }
        endSession(serverFD)
        c.sendError("its server connection could not be taken over by the new process", code: SQLState.connectionFailure)
        return false
    }

    /// A server the old process handed over; false when it was not kept (its session is ended).
    func adoptServer(_ m: TakeoverServer, fd: Int32) -> Bool {
        if let pool = login.handedOverPool(database: m.database, user: m.user), pool.replication == .none,
           pool.adoptServer(m, fd: fd) { return true }
        log.log("takeover: a server of \(m.database)/\(m.user) from the old process not kept (pool full, or it changed)")
        endSession(fd)
        return false
    }

    /// Ends a handed-over server session this process does not keep.
    private func endSession(_ fd: Int32) {
        var t = MessageBuilder()
        t.terminate()
        t.bytes.withUnsafeBytes { b in _ = send(fd, b.baseAddress, b.count, Int32(MSG_NOSIGNAL)) }
        close(fd)
    }

    /// Progress of a restart this process takes part in, for SHOW STATE.
    var takeoverProgress: TakeoverProgress {
        if let r = takeoverReceiver, r.progress.phase != .none { return r.progress }
        return takeoverSender?.progress ?? TakeoverProgress()
    }
}
