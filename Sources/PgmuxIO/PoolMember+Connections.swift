import PgmuxCore

/// A connection is known to its pool's state machine by its address: no table to look it up in,
/// no reference count to keep. A pool only holds members of live connections (a closing client
/// leaves its queue, a closing server its idle list), and closed connections are freed only
/// after the loop iteration, so converting back is always to a live object.
extension ClientConnection {
    var member: PoolMember { PoolMember(UInt(bitPattern: Unmanaged.passUnretained(self).toOpaque())) }
}

extension ServerConnection {
    var member: PoolMember { PoolMember(UInt(bitPattern: Unmanaged.passUnretained(self).toOpaque())) }
}

extension PoolMember {
    var client: ClientConnection {
        Unmanaged<ClientConnection>.fromOpaque(UnsafeRawPointer(bitPattern: raw)!).takeUnretainedValue()
    }

    var server: ServerConnection {
        Unmanaged<ServerConnection>.fromOpaque(UnsafeRawPointer(bitPattern: raw)!).takeUnretainedValue()
    }

    /// The client at +0 (no retain and release around its use), for the lending paths.
    @inline(__always) func withClient<R>(_ body: (ClientConnection) -> R) -> R {
        Unmanaged<ClientConnection>.fromOpaque(UnsafeRawPointer(bitPattern: raw)!)._withUnsafeGuaranteedRef(body)
    }

    /// The server at +0, for the lending paths.
    @inline(__always) func withServer<R>(_ body: (ServerConnection) -> R) -> R {
        Unmanaged<ServerConnection>.fromOpaque(UnsafeRawPointer(bitPattern: raw)!)._withUnsafeGuaranteedRef(body)
    }
}
