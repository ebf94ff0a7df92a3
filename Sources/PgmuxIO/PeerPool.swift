import Glibc
import PgmuxCore

/// The cancel requests this process forwards to one `[peers]` entry (PgBouncer's peer pool):
/// at most `pool_size` connections to the peer at once, each carrying one CancelRequest; the
/// requester's own connection waits for its forward to end (or for cancel_wait_timeout).
final class PeerPool {
    struct Request {
        let requester: ClientConnection
        let key: UInt64
    }

    unowned(unsafe) let loop: EventLoop
    let peerId: Int
    private(set) var queue: PeerPoolQueue<Request>
    /// Forwards in flight, for SHOW CLIENTS / SERVERS / PEER_POOLS.
    private(set) var forwarders: [UInt64: CancelForwarder] = [:]

    init(loop: EventLoop, peerId: Int) {
        self.loop = loop
        self.peerId = peerId
        queue = PeerPoolQueue(poolSize: 0)
    }

    /// Nothing forwarded or waiting.
    var isIdle: Bool { forwarders.isEmpty && queue.waitingCount == 0 }

    /// The peer's `pool_size`, else `default_pool_size` (as PgBouncer's SHOW PEERS prints it).
    static func poolSize(of entry: PeerEntry?, _ settings: Settings) -> Int {
        entry?.poolSize ?? settings.defaultPoolSize
    }

    /// Takes over a requester whose key belongs to this peer. Its socket is no longer read: it
    /// said all it had to say, and a byte after the CancelRequest must not start a login.
    func forward(_ requester: ClientConnection, key: UInt64) {
        requester.stopReading()
        loop.log.debug("forwarding cancellation request to peer \(peerId)")
        queue.poolSize = Self.poolSize(of: loop.config.peers[peerId], loop.config.settings)
        if let r = queue.submit(Request(requester: requester, key: key), now: loop.now) { start(r) }
    }

    private func start(_ r: Request) {
        guard let entry = loop.config.peers[peerId] else {
            // Removed from [peers] by a RELOAD while the request waited.
            r.requester.disconnect(reason: "could not find peer to forward request to", notify: false)
            startNext()
            return
        }
        do {
            guard let address = loop.peerAddress(entry) else { throw SocketError("could not resolve host \(entry.host ?? "")", 0) }
            let fd = try Socket.connect(address)
            let f = CancelForwarder(loop: loop, fd: fd, key: r.key, target: .peer(self, requester: r.requester))
            loop.cancelForwarders[f.id] = f
            forwarders[f.id] = f
        } catch {
            loop.log.warning("\(r.requester.logPrefix) sending cancel request failed: \(error)")
            r.requester.disconnect(reason: "failed to send cancel request", notify: false)
            startNext()
        }
    }

    /// A forward's connection ended (the peer closed it after acting on the request, or it
    /// failed, or cancel_wait_timeout gave up on it): the requester is let go, the next one starts.
    func forwardEnded(_ forwarderID: UInt64, requester: ClientConnection, delivered: Bool) {
        forwarders[forwarderID] = nil
        requester.disconnect(reason: delivered ? "successfully sent cancel request" : "failed to send cancel request",
                             notify: false)
        startNext()
    }

    private func startNext() {
        queue.poolSize = Self.poolSize(of: loop.config.peers[peerId], loop.config.settings)
        if let next = queue.finished() { start(next) }
    }

    /// Janitor: requests that waited longer than cancel_wait_timeout for a free connection are
    /// dropped (PgBouncer's peer_pool_client_maint); requesters that went away leave the queue.
    func maintain(now: Double, timeout: Double) {
        queue.remove { $0.requester.isClosed }
        for r in queue.expire(now: now, timeout: timeout) {
            r.requester.disconnect(reason: "cancel_wait_timeout", notify: false)
        }
        queue.poolSize = Self.poolSize(of: loop.config.peers[peerId], loop.config.settings)
        while let r = queue.next() { start(r) }
    }
}
