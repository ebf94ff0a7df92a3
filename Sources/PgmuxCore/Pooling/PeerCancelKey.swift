/// Cancel keys of a peer group, encoded as PgBouncer 1.21+ does, so that pgmux and PgBouncer
/// processes can forward each other's cancel requests (several poolers behind one TCP load
/// balancer or one `so_reuseport` port: the CancelRequest arrives on a new connection, often at
/// another process than the one whose client it cancels).
///
/// The key is the 8 bytes of BackendKeyData / CancelRequest, held big-endian in a `UInt64`
/// (byte 0 is the top byte). With `peer_id` > 0, bytes 1 and 2 carry the peer id (byte 1 its
/// low byte) and the two low bits of byte 7 a TTL, 3 when the key is handed out, decremented at
/// each forward so that a request that went round a misconfigured group dies after 3 hops.
public enum PeerCancelKey {
    /// PgBouncer's CANCELLATION_TTL_MASK, in the last byte of the key.
    public static let ttlMask: UInt64 = 0x03

    /// A client's key from 64 random bits: the peer id and a full TTL put in with `peerId` > 0,
    /// the sign bit of the pid half cleared (pg_basebackup used to reject negative pids).
    public static func make(random: UInt64, peerId: Int) -> UInt64 {
        var key = random
        if peerId > 0 {
            let id = UInt64(peerId & 0xFFFF)
            key &= ~(UInt64(0xFFFF) << 40)
            key |= (id & 0xFF) << 48 | (id >> 8) << 40
            key |= ttlMask
        }
        return key & ~(UInt64(1) << 63)
    }

    /// The peer id a key carries (`key[1] + (key[2] << 8)`).
    public static func peerId(of key: UInt64) -> Int {
        Int((key >> 48) & 0xFF) | Int((key >> 40) & 0xFF) << 8
    }

    /// What to do with a CancelRequest.
    public enum Route: Equatable, Sendable {
        /// Ours: look the client up with this key (TTL bits restored to the value handed out).
        case local(key: UInt64)
        /// Another process's: send this key (TTL one less) to that peer.
        case forward(peerId: Int, key: UInt64)
        /// The key names a peer that is not in `[peers]`.
        case unknownPeer(Int)
        /// Forwarded 3 times already: dropped.
        case ttlExhausted
    }

    /// PgBouncer's accept_cancel_request / accept_cancel_request_for_peer decision. Without
    /// peering (`ourPeerId` 0) every key is looked up as it is.
    public static func route(_ key: UInt64, ourPeerId: Int, peers: Set<Int>) -> Route {
        guard ourPeerId > 0 else { return .local(key: key) }
        let id = peerId(of: key)
        if id == ourPeerId { return .local(key: key | ttlMask) }
        if key & ttlMask == 0 { return .ttlExhausted }
        guard peers.contains(id) else { return .unknownPeer(id) }
        return .forward(peerId: id, key: key - 1)
    }
}
