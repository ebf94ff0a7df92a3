import Glibc

/// A client's address in 24 bytes (a `sockaddr_storage` is 128): enough to log and show it.
/// Idle clients are pgmux's unit of memory, so every field of a client counts.
struct PeerAddress {
    let family: UInt8
    let port: UInt16
    private let high: UInt64, low: UInt64

    init(_ a: Socket.Address) {
        var s = a.storage
        switch a.family {
        case AF_INET:
            let sin = withUnsafeBytes(of: &s) { $0.load(as: sockaddr_in.self) }
            family = UInt8(AF_INET); port = UInt16(bigEndian: sin.sin_port)
            high = 0; low = UInt64(sin.sin_addr.s_addr)
        case AF_INET6:
            let sin6 = withUnsafeBytes(of: &s) { $0.load(as: sockaddr_in6.self) }
            family = UInt8(AF_INET6); port = UInt16(bigEndian: sin6.sin6_port)
            let words = withUnsafeBytes(of: sin6.sin6_addr) { ($0.load(fromByteOffset: 0, as: UInt64.self), $0.load(fromByteOffset: 8, as: UInt64.self)) }
            high = words.0; low = words.1
        default:
            family = UInt8(AF_UNIX); port = 0; high = 0; low = 0
        }
    }

    var isUnix: Bool { Int32(family) == AF_UNIX }

    /// The address bytes in network order (4 or 16), nil for Unix sockets; for hba matching.
    var bytes: [UInt8]? {
        if isUnix { return nil }
        var words = (high, low)
        return withUnsafeBytes(of: &words) { raw in
            Int32(family) == AF_INET ? Array(raw[8..<12]) : Array(raw)
        }
    }

    /// The address without the port (`unix` for Unix sockets).
    var hostText: String {
        if isUnix { return "unix" }
        var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        var words = (high, low)
        let p = withUnsafeBytes(of: &words) { raw -> UnsafePointer<CChar>? in
            let src = Int32(family) == AF_INET ? raw.baseAddress!.advanced(by: 8) : raw.baseAddress!
            return inet_ntop(Int32(family), src, &buf, socklen_t(buf.count))
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
