import Glibc
import CLibEV
import PgmuxCore

/// Delivers one CancelRequest on a fresh connection, as the protocol requires: to PostgreSQL
/// with the server's real key (clients only ever see keys pgmux made up), or to the peer process
/// whose key it is, with the client's key as it came (TTL one less).
final class CancelForwarder: Endpoint {
    enum Target {
        /// One of our servers; it stays out of the pool until this connection ends.
        case server(id: UInt64)
        /// A process of the peer group; the requester's connection is held until this one ends,
        /// as PgBouncer holds it, so that its client learns when the cancel went through.
        case peer(PeerPool, requester: ClientConnection)
    }

    let key: UInt64
    let target: Target

    init(loop: EventLoop, fd: Int32, key: UInt64, target: Target) {
        self.key = key
        self.target = target
        super.init(loop: loop, fd: fd)
        setupReadWatcher(cancelEvent)
        startWriting()
    }

    override var writeCallback: pgmux_io_cb { cancelEvent }

    /// The request is written: the other end acts on it and closes (SHOW PEER_POOLS counts
    /// connections before this as `sv_login`, after it as `sv_active_cancel`).
    private(set) var sent = false

    func onEvent() {
        if sent {
            // PostgreSQL (or the peer) closes the connection after reading the request; then we close ours.
            var b: UInt8 = 0
            let n = recv(fd, &b, 1, 0)
            if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) { finish() }
            return
        }
        guard Socket.pendingError(fd) == 0 else { finish(); return }
        var m = MessageBuilder()
        m.cancelRequest(key)
        queue(m.bytes)
        sent = true
        stopWriting()
        startReading()
    }
}

extension CancelForwarder {
    /// Closes the socket and drops the loop's reference (the graveyard keeps it to the iteration's end).
    func finish() {
        guard !isClosed else { return }
        closeSocket()
        loop.cancelForwarders[id] = nil
        switch target {
        case .server(let serverID): loop.cancelLanded(serverID: serverID)
        case .peer(let pool, let requester): pool.forwardEnded(id, requester: requester, delivered: sent)
        }
    }
}

func cancelEvent(_ l: OpaquePointer?, _ w: UnsafeMutablePointer<ev_io>?, _ revents: Int32) {
    guard let w, let ctx = w.pointee.data else { return }
    Unmanaged<CancelForwarder>.fromOpaque(ctx)._withUnsafeGuaranteedRef { $0.onEvent() }
}
