import Glibc
import CLibEV
import PgmuxCore

/// The sockets pgmux accepts connections on.
extension EventLoop {
    func openListeners() throws {
        if !adoptHandedOverListeners() {  // pgmux -R takes the old process's sockets
            let activated = SocketActivation.listenFDs()
            if !activated.isEmpty {
                try adoptActivatedSockets(activated)
            } else {
                try openConfiguredListeners()
            }
        }
        guard !listeners.isEmpty else { throw SocketError("nothing to listen on (listen_addr and unix_socket_dir are empty)", 0) }
        try openMetricsListener()
    }

    /// systemd socket activation (LISTEN_FDS), as PgBouncer built with systemd support: the
    /// sockets handed over replace listen_addr and unix_socket_dir, tuned like pgmux's own.
    /// A connection accepted by a listener of this loop or of another one (which hands it over
    /// before reading from it). TCP options come from the listener (see `Listener.retune`).
    func adoptAccepted(fd: Int32, remote: Socket.Address, readNow: Bool) {
        let client = ClientConnection(loop: self, fd: fd, remote: remote)
        clientAccepted(client)
        client.startReading()
        if readNow { client.onReadable() }
    }

    /// Loops 1..n-1 watch loop 0's listening sockets (before their threads start).
    func shareListeners(of first: EventLoop) {
        listeners = first.listeners.map { $0.shared(with: self) }
    }

    private func adoptActivatedSockets(_ fds: [Int32]) throws {
        let s = config.settings
        // PgBouncer's own words, for the same settings.
        if !s.listenAddr.filter({ !$0.isEmpty }).isEmpty {
            log.warning("sockets passed from service manager, cf_listen_addr ignored")
        }
        if !s.unixSocketDir.isEmpty && s.unixSocketDir != "/tmp" {
            log.warning("sockets passed from service manager, cf_unix_socket_dir ignored")
        }
        for fd in fds {
            guard let family = SocketActivation.listeningFamily(fd) else {
                throw SocketError("failed to set up socket passed from service manager (fd \(fd))", 0)
            }
            if family != AF_UNIX { Socket.setDeferAccept(fd, s.tcpDeferAccept) }
            listeners.append(Listener(loop: self, fd: fd, description: "fd \(fd)", isUnix: family == AF_UNIX))
            log.log("socket passed from service manager (fd \(fd))")
        }
    }

    private func openConfiguredListeners() throws {
        let s = config.settings
        for addr in s.listenAddr where !addr.isEmpty {
            let host = addr == "*" ? "" : addr
            var addresses = try Socket.Address.resolve(host: host, port: s.listenPort, passive: true)
            if addr == "*" { addresses.sort { $0.family == AF_INET && $1.family != AF_INET } }
            for a in addresses {
                let fd = try Socket.listen(a, backlog: Int32(s.listenBacklog), reusePort: s.soReuseport,
                                           deferAccept: s.tcpDeferAccept)
                listeners.append(Listener(loop: self, fd: fd, description: a.description))
                log.log("listening on \(a.description)")
            }
        }
        if !s.unixSocketDir.isEmpty {
            let path = "\(s.unixSocketDir)/.s.PGSQL.\(s.listenPort)"
            guard let a = Socket.Address.unix(path: path) else { throw SocketError("unix socket path too long: \(path)", 0) }
            // A socket file left by a dead process is removed; a live one means another pooler.
            if access(path, F_OK) == 0 {
                if let probe = try? Socket.connect(a) {
                    var pfd = pollfd(fd: probe, events: Int16(POLLOUT), revents: 0)
                    _ = poll(&pfd, 1, 200)
                    let alive = Socket.pendingError(probe) == 0 && pfd.revents & Int16(POLLOUT) != 0
                    Glibc.close(probe)
                    if alive { throw SocketError("unix socket \(path) is in use by another process", 0) }
                }
                unlink(path)
            }
            let fd = try Socket.listen(a, backlog: Int32(s.listenBacklog), reusePort: false)
            chmod(path, mode_t(s.unixSocketMode))
            if !s.unixSocketGroup.isEmpty {
                guard let group = getgrnam(s.unixSocketGroup) else {
                    throw SocketError("unix_socket_group: no such group: \(s.unixSocketGroup)", 0)
                }
                chown(path, uid_t.max, group.pointee.gr_gid)
            }
            listeners.append(Listener(loop: self, fd: fd, description: "unix:\(path)", unixPath: path))
            log.log("listening on unix:\(path)")
        }
    }

    private func openMetricsListener() throws {
        let s = config.settings
        if !adoptHandedOverMetrics() && s.metricsPort > 0 {
            guard let a = try Socket.Address.resolve(host: s.metricsAddr, port: s.metricsPort, passive: true).first else {
                throw SocketError("cannot resolve metrics_addr \(s.metricsAddr)", 0)
            }
            metrics = try MetricsEndpoint(loop: self, address: a)
            log.log("metrics on http://\(a.description)/metrics")
        }
    }
}
