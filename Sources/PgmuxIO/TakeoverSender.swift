import Glibc
import CLibEV
import PgmuxCore

/// The old process's side of an online restart. It listens on the takeover socket; a new
/// process (`pgmux -R`) that connects gets the listening sockets, and once it says it accepts on
/// them this process stops accepting and gives it each client as the client becomes idle. Until
/// the new process confirms a client, the client stays here (not read); if the new process goes
/// away at any point, everything not confirmed is served here again and accepting resumes.
///
/// It lives on loop 0 and hands over the clients and servers of every loop: what it does to
/// another loop's connections happens with the world stopped (see `LoopGroup`).
final class TakeoverSender {
    unowned(unsafe) let loop: EventLoop
    let path: String
    private var listenFD: Int32 = -1
    private let acceptWatcher = UnsafeMutablePointer<ev_io>.allocate(capacity: 1)
    private var peer: TakeoverChannel?
    private(set) var progress = TakeoverProgress()
    /// Clients sent and not yet confirmed (not read meanwhile).
    private var inFlight: [UInt64: ClientConnection] = [:]
    /// Clients whose state is too large for one record: they finish here.
    private var kept: Set<UInt64> = []
    /// When the new process took over: servers opened since stay here.
    private var handingOverSince = Double.infinity
    /// With several loops, handing over runs every 5 ms (each round stops the world) rather
    /// than at every iteration of loop 0; this timer wakes loop 0 for it.
    private let tick = UnsafeMutablePointer<ev_timer>.allocate(capacity: 1)
    private var lastRound = 0.0

    init(loop: EventLoop, path: String) throws {
        self.loop = loop
        self.path = path
        acceptWatcher.initialize(to: ev_io())
        tick.initialize(to: ev_timer())
        pgmux_ev_timer_init(tick, { _, _, _ in }, 0.005, 0.005, nil)  // wakes loop 0; its sweep hands over
        try startListening()
    }

    deinit {
        stopListening()
        ev_timer_stop(loop.ev, tick)
        acceptWatcher.deallocate()
        tick.deallocate()
    }

    private func startListening() throws {
        listenFD = try FdPassing.listen(path: path)
        pgmux_ev_io_init(acceptWatcher, takeoverAccept, listenFD, Int32(EV_READ), Unmanaged.passUnretained(self).toOpaque())
        ev_io_start(loop.ev, acceptWatcher)
    }

    /// Closes the listening socket and leaves its file (the new process owns that path now).
    private func stopListening() {
        guard listenFD >= 0 else { return }
        ev_io_stop(loop.ev, acceptWatcher)
        close(listenFD)
        listenFD = -1
    }

    /// The socket file, removed when this process exits without having handed over.
    func removeSocketFile() {
        if listenFD >= 0 { stopListening(); unlink(path) }
    }

    fileprivate func onAccept() {
        let fd = accept4(listenFD, nil, nil, Socket.nonblockCloexec)
        guard fd >= 0 else { return }
        // Only this process's user (or root) may take its sockets.
        guard let uid = Socket.peerUID(fd), uid == geteuid() || uid == 0 else {
            loop.log.warning("takeover: refused a connection from another user")
            close(fd)
            return
        }
        if peer != nil || loop.shuttingDown || loop.takeoverReceiver?.progress.phase == .receiving {
            _ = FdPassing.send(fd, TakeoverMessage.refused(reason: "takeover not possible now").encode(), fds: [])
            close(fd)
            return
        }
        let channel = TakeoverChannel(loop: loop, fd: fd)
        channel.onMessage = { [unowned self] in self.received($0, fds: $1) }
        channel.onClose = { [unowned self] in self.peerLost($0) }
        peer = channel
        loop.log.log("takeover: new process connected")
    }

    private func received(_ message: TakeoverMessage, fds: [Int32]) {
        guard let peer else { return }
        switch (progress.phase, message) {
        case (.none, .hello(let version)):
            guard version == TakeoverMessage.version else {
                peer.send(.refused(reason: "unsupported takeover protocol version \(version)"))
                peer.close(reason: "unsupported protocol version \(version)")
                return
            }
            var offered: [TakeoverListener] = [], sockets: [Int32] = []
            for l in loop.listeners {
                offered.append(TakeoverListener(kind: .pooler, description: l.description, unixPath: l.unixPath))
                sockets.append(l.fd)
            }
            if let m = loop.metrics {
                offered.append(TakeoverListener(kind: .metrics, description: "metrics", unixPath: nil))
                sockets.append(m.fd)
            }
            progress.phase = .offered
            sendRegistry(on: peer)
            peer.send(.listeners(offered), fds: sockets)
            loop.log.log("takeover: sent \(sockets.count) listening sockets")
        case (.offered, .ready):
            // Both processes accepted on the sockets until now: no connection was refused.
            loop.group.everywhere(from: loop) { for l in $0.listeners { l.handedOver = true } }
            stopListening()
            if loop.group.count > 1 { ev_timer_start(loop.ev, tick) }
            progress.phase = .handingOver
            handingOverSince = loop.now
            loop.log.log("takeover: new process accepts connections, handing over idle clients")
        case (.handingOver, .ack(let id)):
            guard let c = inFlight.removeValue(forKey: id) else {
                peer.close(reason: "confirmation of an unknown client")
                return
            }
            loop.group.withWorldStopped(from: loop) {
                if let s = c.server {  // session pooling: its server went along (no Terminate)
                    c.server = nil
                    s.client = nil
                    s.close(reason: "handed over to the new process", notifyClient: false, serverEOF: true)
                }
                c.disconnect(reason: "handed over to the new process", notify: false)
            }
        case (.handingOver, .cancel(let key)):
            _ = loop.cancelLocally(key: key)
        default:
            for f in fds { close(f) }
            peer.close(reason: "unexpected message in phase \(progress.phase.rawValue)")
        }
    }

    /// The new process is gone (or misbehaved): serve everything here again.
    private func peerLost(_ reason: String) {
        peer = nil
        let phase = progress.phase
        progress = TakeoverProgress()
        switch phase {
        case .none, .receiving:
            loop.log.log("takeover: connection closed (\(reason))")
        case .offered:
            loop.log.warning("takeover: new process failed before taking over (\(reason)), continuing")
        case .handingOver:
            loop.log.warning("takeover: lost the new process (\(reason)), accepting connections again")
            ev_timer_stop(loop.ev, tick)
            loop.group.everywhere(from: loop) { for l in $0.listeners { l.handedOver = false } }
            loop.group.withWorldStopped(from: loop) {
                for c in inFlight.values { c.startReading(); c.server?.startReading() }
            }
            inFlight.removeAll()
            do { try startListening() } catch { loop.log.warning("takeover socket \(path): \(error)") }
        }
    }

    /// Every statement definition in id order, in records well under the size limit.
    private func sendRegistry(on peer: TakeoverChannel) {
        let registry = loop.preparedStatements
        var first = 0, chunk: [TakeoverStatement.Definition] = [], size = 0
        for id in 0..<registry.count {
            guard let d = registry.definition(id) else { continue }
            chunk.append(d)
            if case .parse(let b) = d { size += b.count + 5 } else if case .sql(let t) = d { size += t.utf8.count + 5 }
            if size > FdPassing.maxRecord / 4 {
                peer.send(.registry(first: first, chunk))
                first = id + 1
                chunk = []
                size = 0
            }
        }
        if !chunk.isEmpty { peer.send(.registry(first: first, chunk)) }
    }

    /// Called at the start of each loop iteration while handing over: sends every client that
    /// may go now. True when this process holds nothing more and may exit.
    func handOver() -> Bool {
        guard progress.phase == .handingOver, peer != nil else { return false }
        if loop.group.count > 1 {
            guard loop.now - lastRound >= 0.005 else { return false }
            lastRound = loop.now
        }
        return loop.group.withWorldStopped(from: loop) { handOverStopped() }
    }

    private func handOverStopped() -> Bool {
        guard let peer else { return false }
        let loops = loop.group.loops
        var remaining = 0
        for c in loops.flatMap({ $0.clients.values }) where c.adminRole == nil && inFlight[c.id] == nil {
            guard self.peer != nil else { return false }  // a failed send ended the restart
            guard !kept.contains(c.id) else { remaining += 1; continue }
            var sessionServer: HandOverRule.ServerFacts?
            if let s = c.server, c.pool?.mode == .session || c.pinned, c.state == .active {
                sessionServer = HandOverRule.ServerFacts(
                    tls: s.ssl != nil, replication: s.pool.replication != .none,
                    idle: s.state == .active && s.tracker.isIdle && s.scanner.passthrough == 0 && c.scanner.passthrough == 0
                        && s.inbuf.isEmpty && s.ownOut.isEmpty && s.cancelsInFlight == 0 && !s.releaseAfterFlush,
                    closing: s.closeNeeded)
            }
            let facts = HandOverRule.Facts(
                tls: c.ssl != nil, adminConsole: false, replication: c.replication != .none,
                idle: c.state == .idle, linked: c.server != nil, sessionServer: sessionServer,
                bufferedBytes: !c.inbuf.isEmpty || !c.ownOut.isEmpty || c.closeAfterFlush,
                partialMessage: c.sessionBox?.oversizedParse != nil,
                listens: c.pool?.notificationsIfAny?.subscriptions.channels(of: c.id).isEmpty == false)
            guard HandOverRule.verdict(facts) == .now else { remaining += 1; continue }
            send(c, on: peer)
        }
        for s in loops.flatMap({ $0.servers.values }) where self.peer != nil {
            let facts = HandOverRule.ServerFacts(
                tls: s.ssl != nil, replication: s.pool.replication != .none,
                idle: s.state == .idle && s.client == nil && s.inbuf.isEmpty && s.ownOut.isEmpty && s.cancelsInFlight == 0,
                closing: s.closeNeeded, openedDuringRestart: s.connectTime >= handingOverSince)
            if HandOverRule.verdict(facts) == .now { send(s, on: peer) }
        }
        return progress.oldProcessMayExit(remainingClients: remaining, inFlight: inFlight.count)
    }

    private func described(_ s: ServerConnection) -> TakeoverServer {
        let registry = loop.preparedStatements
        let statements = s.statementCache.idsByLastUse.compactMap { id in
            registry.definition(id).map { TakeoverServer.Prepared(id: id, definition: $0) }
        }
        return TakeoverServer(
            database: s.pool.databaseName, user: s.pool.userName, hostName: s.host.name, hostPort: s.host.port,
            backendKey: s.backendKey,
            parameters: s.params.map { TakeoverServer.Parameter(key: $0.key, name: $0.value.name, value: $0.value.value) },
            reportedOrder: s.reportedOrder, settings: s.sessionSettings, dirty: s.sessionDirty, statements: statements)
    }

    /// An idle server goes at once: it leaves the pool here (no Terminate: the session goes on).
    private func send(_ s: ServerConnection, on peer: TakeoverChannel) {
        let bytes = TakeoverMessage.server(described(s)).encode()
        guard bytes.count < FdPassing.maxRecord / 2 else { return }  // stays; closed when this process exits
        peer.send(encoded: bytes, fds: [s.fd])
        guard !peer.closed else { return }
        progress.servers += 1
        s.close(reason: "handed over to the new process", notifyClient: false, serverEOF: true)
    }

    private func send(_ c: ClientConnection, on peer: TakeoverChannel) {
        var statements: [TakeoverStatement] = []
        for (name, id) in c.sessionBox?.rewriter.clientStatements ?? [:] {
            if let d = loop.preparedStatements.definition(id) { statements.append(TakeoverStatement(name: name, definition: d)) }
        }
        let message = TakeoverMessage.client(TakeoverClient(
            id: c.id, isUnix: c.isUnixSocket, user: c.user, database: c.database, cancelKey: c.cancelKey,
            params: c.params, settings: c.sessionBox?.settings ?? [:], pinned: c.pinned, statements: statements,
            server: c.server.map(described)))
        let bytes = message.encode()
        guard bytes.count < FdPassing.maxRecord / 2 else {
            kept.insert(c.id)
            loop.log.log("\(c.logPrefix) takeover: client state too large to hand over, it stays here")
            return
        }
        c.stopReading()
        c.server?.stopReading()
        inFlight[c.id] = c
        progress.clients += 1
        if c.server != nil { progress.servers += 1 }
        peer.send(encoded: bytes, fds: [c.fd] + (c.server.map { [$0.fd] } ?? []))
    }
}

private func takeoverAccept(_ l: OpaquePointer?, _ w: UnsafeMutablePointer<ev_io>?, _ revents: Int32) {
    guard let w, let ctx = w.pointee.data else { return }
    Unmanaged<TakeoverSender>.fromOpaque(ctx)._withUnsafeGuaranteedRef { $0.onAccept() }
}
