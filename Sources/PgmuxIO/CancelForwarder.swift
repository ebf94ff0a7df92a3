import Glibc
import CLibEV
import PgmuxCore

/// Delivers one CancelRequest to PostgreSQL on a fresh connection, as the protocol requires,
/// using the server's real key (clients only ever see keys pgmux made up).
final class CancelForwarder: Endpoint {
    let key: UInt64
    /// The server the cancel is for; it stays out of the pool until this connection ends.
    let serverID: UInt64

    init(loop: EventLoop, fd: Int32, key: UInt64, serverID: UInt64) {
        self.key = key
        self.serverID = serverID
        super.init(loop: loop, fd: fd)
        setupReadWatcher(cancelEvent)
        startWriting()
    }

    override var writeCallback: pgmux_io_cb { cancelEvent }

    private var sent = false

    func onEvent() {
        if sent {
            // PostgreSQL closes the connection after reading the request; then we close ours.
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
        loop.cancelLanded(serverID: serverID)
    }
}

func cancelEvent(_ l: OpaquePointer?, _ w: UnsafeMutablePointer<ev_io>?, _ revents: Int32) {
    guard let w, let ctx = w.pointee.data else { return }
    Unmanaged<CancelForwarder>.fromOpaque(ctx)._withUnsafeGuaranteedRef { $0.onEvent() }
}
