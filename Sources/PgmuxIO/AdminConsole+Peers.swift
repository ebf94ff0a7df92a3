import Glibc
import PgmuxCore

/// SHOW PEERS, SHOW PEER_POOLS, and the peer pools' connections in SHOW CLIENTS / SERVERS.
extension AdminConsole {
    func addPeers(to snap: inout AdminSnapshot) {
        let s = loop.config.settings
        for p in loop.config.peers.values {
            snap.peers.append(AdminPeerRow(peerId: p.id, host: p.host, port: p.port,
                                           poolSize: PeerPool.poolSize(of: p, s)))
        }
        snap.lists.peers = loop.config.peers.count
        // Each loop forwards through peer pools of its own: one row per peer, summed.
        var rows: [Int: AdminPeerPoolRow] = [:]
        for pool in loop.group.loops.flatMap({ $0.peerPools.values }) {
            var row = rows[pool.peerId] ?? AdminPeerPoolRow(peerId: pool.peerId)
            defer { rows[pool.peerId] = row }
            for r in pool.queue.waitingRequests where !r.requester.isClosed {
                row.clWaitingCancelReq += 1
                snap.connections.append(requesterRow(r.requester, pool: pool, state: .clWaitingCancelReq, link: nil))
            }
            for f in pool.forwarders.values {
                if f.sent { row.svActiveCancel += 1 } else { row.svLogin += 1 }
                var r = AdminConnectionRow(owner: .peer(id: pool.peerId), state: f.sent ? .svActiveCancel : .svLogin,
                                           user: nil)
                let remote = Socket.remoteAddress(f.fd), local = Socket.localAddress(f.fd)
                r.addr = remote.family == AF_UNIX ? "unix" : remote.hostText
                r.port = remote.family == AF_UNIX ? (loop.config.peers[pool.peerId]?.port ?? 0) : remote.port
                r.localAddr = local.hostText
                r.localPort = local.port
                r.connectTime = AdminConsole.timestamp(f.connectTime)
                r.requestTime = r.connectTime
                r.ptr = "0x\(String(f.id, radix: 16))"
                r.id = f.id
                if case .peer(_, let requester) = f.target {
                    r.link = "0x\(String(requester.id, radix: 16))"
                    if !requester.isClosed {
                        row.clActiveCancelReq += 1
                        snap.connections.append(requesterRow(requester, pool: pool, state: .clActiveCancelReq, link: r.ptr))
                    }
                }
                snap.connections.append(r)
            }
        }
        snap.peerPools = rows.values.sorted { $0.peerId < $1.peerId }
        snap.lists.peerPools = rows.count
    }

    private func requesterRow(_ c: ClientConnection, pool: PeerPool, state: AdminConnectionState,
                              link: String?) -> AdminConnectionRow {
        var r = AdminConnectionRow(owner: .peer(id: pool.peerId), state: state, user: nil)
        r.addr = c.remote.hostText
        r.port = c.isUnixSocket ? loop.config.settings.listenPort : Int(c.remote.port)
        r.connectTime = AdminConsole.timestamp(c.connectTime)
        r.requestTime = r.connectTime
        r.ptr = "0x\(String(c.id, radix: 16))"
        r.link = link
        r.id = c.id
        return r
    }
}
