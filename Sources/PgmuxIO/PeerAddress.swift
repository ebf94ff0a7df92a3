import Glibc

/// A client's address in 19 bytes (a `sockaddr_storage` is 128): enough to log and show it.
/// Idle clients are pgmux's unit of memory, so every field of a client counts; 4-byte words and
/// the one-byte family last leave the tail free for the client's own one-byte fields.
struct PeerAddress {
    /// Network-order address bytes: IPv4 in the first word, IPv6 in all four.
    private let words: (UInt32, UInt32, UInt32, UInt32)
    let port: UInt16
    let family: UInt8

    init(_ a: Socket.Address) {
        var s = a.storage
        switch a.family {
        case AF_INET:
            let sin = withUnsafeBytes(of: &s) { $0.load(as: sockaddr_in.self) }
            family = UInt8(AF_INET); port = UInt16(bigEndian: sin.sin_port)
            words = (sin.sin_addr.s_addr, 0, 0, 0)
        case AF_INET6:
            let sin6 = withUnsafeBytes(of: &s) { $0.load(as: sockaddr_in6.self) }
            family = UInt8(AF_INET6); port = UInt16(bigEndian: sin6.sin6_port)
            words = withUnsafeBytes(of: sin6.sin6_addr) { $0.loadUnaligned(as: (UInt32, UInt32, UInt32, UInt32).self) }
        default:
            family = UInt8(AF_UNIX); port = 0; words = (0, 0, 0, 0)
        }
    }

    var isUnix: Bool { Int32(family) == AF_UNIX }

    /// The address bytes in network order (4 or 16), nil for Unix sockets; for hba matching.
    var bytes: [UInt8]? {
        if isUnix { return nil }
        return withUnsafeBytes(of: words) { raw in
            Int32(family) == AF_INET ? Array(raw[0..<4]) : Array(raw)
        }
    }

    /// The address without the port (`unix` for Unix sockets).
    var hostText: String {
        if isUnix { return "unix" }
        var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let p = withUnsafeBytes(of: words) { raw -> UnsafePointer<CChar>? in
            inet_ntop(Int32(family), raw.baseAddress!, &buf, socklen_t(buf.count))
        }
        guard p != nil else { return "unknown" }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `1.2.3.4:5432`, `[::1]:5432` or `unix`, as PgBouncer logs it.
    var description: String {
        if isUnix { return "unix" }
        return Int32(family) == AF_INET6 ? "[\(hostText)]:\(port)" : "\(hostText):\(port)"
    }
}
