import Glibc
import CLibEV
import PgmuxCore

/// Cancel keys and cancel requests.
extension EventLoop {
    /// Random 63-bit cancel key for a client (the pid half is positive), carrying `peer_id` as
    /// PgBouncer encodes it when peering is on. No index is kept: cancels are rare and a scan of
    /// the clients costs less than a table entry per idle client.
    func newCancelKey() -> UInt64 {
        while true {
            let key = PeerCancelKey.make(random: random.uint64(), peerId: config.settings.peerId)
            if key != 0 { return key }
        }
    }

    /// A CancelRequest on `requester`'s connection: ours is forwarded with the real backend key
    /// if the client has a server; another peer's goes to that peer, and the requester waits for
    /// it there. Every other outcome closes the requester at once.
    func handleCancel(key: UInt64, from requester: ClientConnection) {
        let peerId = config.settings.peerId
        switch PeerCancelKey.route(key, ourPeerId: peerId, peers: peerId > 0 ? Set(config.peers.keys) : []) {
        case .local(let key):
            requester.disconnect(reason: cancelLocally(key: key), notify: false)
        case .forward(let id, let key) where index != 0:
            // Peer pools, and their pool_size, are loop 0's: the requester's socket goes there
            // (it has sent all it will send; it only waits for the forward to end).
            requester.stopReading()
            let fd = requester.releaseSocket().fd
            clientClosed(requester)
            group.post(to: 0) { first in
                let moved = ClientConnection(loop: first, fd: fd, remote: Socket.remoteAddress(fd))
                first.clientAccepted(moved)
                first.peerPool(id).forward(moved, key: key)
            }
        case .forward(let id, let key):
            peerPool(id).forward(requester, key: key)
        case .unknownPeer:
            requester.disconnect(reason: "could not find peer to forward request to", notify: false)
        case .ttlExhausted:
            requester.disconnect(reason: "failed to forward cancel request because its TTL was exhausted", notify: false)
        }
    }

    /// Forwards a cancel of one of our clients; returns the requester's close reason. During an
    /// online restart a key of no client here may belong to one still in the old process (which
    /// no longer accepts): the old process gets it.
    ///
    /// The client may be on another loop: the world is stopped while the others are searched,
    /// and the cancel goes out from the client's own loop.
    func cancelLocally(key: UInt64) -> String {
        func owner(in loop: EventLoop) -> ClientConnection? {
            loop.clients.values.first(where: { $0.cancelKey == key && $0.state != .startup })
        }
        if let client = owner(in: self) { return cancel(client) }
        return group.withWorldStopped(from: self) {
            for other in group.loops where other !== self {
                if let client = owner(in: other) { return cancel(client) }
            }
            // Loop 0 talks to the old process of an online restart.
            if let r = group.loop(0).takeoverReceiver, r.forwardCancel(key: key) {
                return "cancel request forwarded to the old process"
            }
            return "failed cancel request"
        }
    }

    /// Cancels what `client` runs, from the client's own loop (the world is stopped when that
    /// is not this one).
    private func cancel(_ client: ClientConnection) -> String {
        guard let server = client.server else {
            log.debug("\(client.logPrefix) cancel request for idle client")
            return "cancel request for idle client"
        }
        server.loop.forwardCancel(to: server)
        return "cancel request"
    }

    /// The peer pool for `id`, made on first use (PgBouncer's get_peer_pool).
    func peerPool(_ id: Int) -> PeerPool {
        if let p = peerPools[id] { return p }
        let p = PeerPool(loop: self, peerId: id)
        peerPools[id] = p
        return p
    }

    /// A peer's address: `host` a directory (its Unix socket, `.s.PGSQL.<port>` inside) or a
    /// name or address (resolved as server hosts are).
    func peerAddress(_ peer: PeerEntry) -> Socket.Address? {
        let host = peer.host ?? ""
        if host.hasPrefix("/") {
            return Socket.Address.unix(path: "\(host)/.s.PGSQL.\(peer.port)")
        }
        do {
            return try Socket.Address.resolve(host: host, port: peer.port).first
        } catch {
            log.warning("peer \(peer.id): \(error)")
            return nil
        }
    }

    /// Opens a connection to the server's PostgreSQL and sends its real cancel key. Until that
    /// connection ends, the server is not lent to another client (see `cancelLanded`).
    func forwardCancel(to server: ServerConnection) {
        guard server.backendKey != 0 else { return }
        do {
            let fd = try Socket.connect(server.address)
            let forwarder = CancelForwarder(loop: self, fd: fd, key: server.backendKey, target: .server(id: server.id))
            cancelForwarders[forwarder.id] = forwarder
            server.cancelsInFlight += 1
        } catch {
            log.warning("\(server.logPrefix) cancel request failed: \(error)")
        }
    }

    /// A cancel connection ended (PostgreSQL closed it after acting on the request, or
    /// cancel_wait_timeout gave up): a server released meanwhile may now go back to its pool.
    func cancelLanded(serverID: UInt64) {
        guard let server = servers[serverID], server.cancelsInFlight > 0 else { return }
        server.cancelsInFlight -= 1
        if server.cancelsInFlight == 0 && server.state == .beingCanceled { server.pool.release(server) }
    }
}
