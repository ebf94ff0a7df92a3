import Glibc
import CLibEV
import PgmuxCore

/// Cancel keys and cancel requests.
extension EventLoop {
    /// Random 63-bit cancel key for a client (the pid half is positive). No index is kept:
    /// cancels are rare and a scan of the clients costs less than a table entry per idle client.
    func newCancelKey() -> UInt64 {
        while true {
            let key = random.uint64() & ~(UInt64(1) << 63)
            if key != 0 { return key }
        }
    }

    /// A CancelRequest: forwarded with the real backend key if the client has a server.
    func handleCancel(key: UInt64) {
        guard let client = clients.values.first(where: { $0.cancelKey == key }) else { return }
        guard let server = client.server else {
            log.debug("\(client.logPrefix) cancel request for idle client")
            return
        }
        forwardCancel(to: server)
    }

    /// Opens a connection to the server's PostgreSQL and sends its real cancel key. Until that
    /// connection ends, the server is not lent to another client (see `cancelLanded`).
    func forwardCancel(to server: ServerConnection) {
        guard server.backendKey != 0 else { return }
        do {
            let fd = try Socket.connect(server.address)
            let forwarder = CancelForwarder(loop: self, fd: fd, key: server.backendKey, serverID: server.id)
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

    // MARK: pools
}
