import Glibc
import PgmuxCore
import CLibEV

/// Thin wrappers over the BSD socket calls the shell needs. All sockets are non-blocking and
/// close-on-exec; errors come back as `SocketError` carrying errno's text.
public struct SocketError: Error, CustomStringConvertible {
    public let what: String
    public let code: Int32
    public init(_ what: String, _ code: Int32 = errno) { self.what = what; self.code = code }
    /// `what` alone when there is no errno (a resolver error already carries its own text).
    public var description: String { code == 0 ? what : "\(what): \(String(cString: strerror(code)))" }
}

public enum Socket {
    static let nonblockCloexec = Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue)

    /// A resolved socket address of any family.
    public struct Address {
        public var storage = sockaddr_storage()
        public var length: socklen_t = 0
        public init() {}

        public var family: Int32 { Int32(storage.ss_family) }

        /// `1.2.3.4:5432`, `[::1]:5432` or `unix` — the form PgBouncer logs.
        public var description: String {
            var s = storage
            var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            var serv = [CChar](repeating: 0, count: Int(NI_MAXSERV))
            if family == AF_UNIX { return "unix" }
            let rc = withUnsafePointer(to: &s) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    getnameinfo($0, length, &host, socklen_t(host.count), &serv, socklen_t(serv.count),
                                NI_NUMERICHOST | NI_NUMERICSERV)
                }
            }
            guard rc == 0 else { return "unknown" }
            let h = String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let p = String(decoding: serv.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            return family == AF_INET6 ? "[\(h)]:\(p)" : "\(h):\(p)"
        }

        /// Address text without the port, for SHOW CLIENTS' addr column.
        public var hostText: String {
            let d = description
            if d == "unix" { return "unix" }
            guard let colon = d.lastIndex(of: ":") else { return d }
            return String(d[..<colon]).trimmingCharacters(in: "[]")
        }

        public var port: Int {
            var s = storage
            switch family {
            case AF_INET: return withUnsafePointer(to: &s) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) } }
            case AF_INET6: return withUnsafePointer(to: &s) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) } }
            default: return 0
            }
        }

        public static func unix(path: String) -> Address? {
            var a = Address()
            var sun = sockaddr_un()
            sun.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            guard bytes.count < MemoryLayout.size(ofValue: sun.sun_path) else { return nil }
            withUnsafeMutableBytes(of: &sun.sun_path) { p in
                for (i, b) in bytes.enumerated() { p[i] = b }
                p[bytes.count] = 0
            }
            withUnsafeMutableBytes(of: &a.storage) { dst in
                withUnsafeBytes(of: &sun) { src in dst.copyMemory(from: src) }
            }
            a.length = socklen_t(MemoryLayout<sockaddr_un>.size)
            return a
        }

        /// A numeric IPv4 or IPv6 address with `port`; nil for anything else (never a DNS lookup).
        public static func numeric(_ host: String, port: Int) -> Address? {
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            hints.ai_family = AF_UNSPEC
            hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV
            var res: UnsafeMutablePointer<addrinfo>?
            guard getaddrinfo(host, String(port), &hints, &res) == 0, let ai = res else { return nil }
            defer { freeaddrinfo(res) }
            var a = Address()
            withUnsafeMutableBytes(of: &a.storage) { dst in
                dst.copyMemory(from: UnsafeRawBufferPointer(start: ai.pointee.ai_addr, count: Int(ai.pointee.ai_addrlen)))
            }
            a.length = ai.pointee.ai_addrlen
            return a
        }

        /// Resolves `host`:`port` (blocking getaddrinfo; numeric and local names resolve at once).
        public static func resolve(host: String, port: Int, passive: Bool = false) throws -> [Address] {
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            hints.ai_family = AF_UNSPEC
            if passive { hints.ai_flags = AI_PASSIVE }
            var res: UnsafeMutablePointer<addrinfo>?
            let h: String? = (host == "*" || host.isEmpty) ? nil : host
            let rc = getaddrinfo(h, String(port), &hints, &res)
            guard rc == 0, let first = res else {
                throw SocketError("could not resolve \(host): \(String(cString: gai_strerror(rc)))", 0)
            }
            defer { freeaddrinfo(res) }
            var out: [Address] = []
            var cur: UnsafeMutablePointer<addrinfo>? = first
            while let ai = cur {
                var a = Address()
                withUnsafeMutableBytes(of: &a.storage) { dst in
                    dst.copyMemory(from: UnsafeRawBufferPointer(start: ai.pointee.ai_addr, count: Int(ai.pointee.ai_addrlen)))
                }
                a.length = ai.pointee.ai_addrlen
                out.append(a)
                cur = ai.pointee.ai_next
            }
            return out
        }
    }

    /// A listening socket bound to `address`.
    public static func listen(_ address: Address, backlog: Int32, reusePort: Bool, deferAccept: Bool = false) throws -> Int32 {
        let fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | nonblockCloexec, 0)
        guard fd >= 0 else { throw SocketError("socket") }
        var one: Int32 = 1
        if address.family != AF_UNIX {
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            if reusePort { setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size)) }
            if address.family == AF_INET6 {
                setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
            }
        }
        var a = address
        let rc = withUnsafePointer(to: &a.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, a.length) }
        }
        guard rc == 0 else { let e = SocketError("bind \(address.description)"); Glibc.close(fd); throw e }
        guard Glibc.listen(fd, backlog) == 0 else { let e = SocketError("listen"); Glibc.close(fd); throw e }
        if address.family != AF_UNIX { setDeferAccept(fd, deferAccept) }
        return fd
    }

    /// tcp_defer_accept: the kernel hands over a connection only once its first bytes (the startup
    /// packet or SSLRequest) have arrived, so accept is followed by a read instead of a wait.
    /// The value 1 is what PgBouncer sets (the kernel rounds it up to its first retransmit).
    public static func setDeferAccept(_ fd: Int32, _ on: Bool) {
        var v: Int32 = on ? 1 : 0
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_DEFER_ACCEPT, &v, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Starts a non-blocking connect; completion is signalled by writability.
    public static func connect(_ address: Address) throws -> Int32 {
        let fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | nonblockCloexec, 0)
        guard fd >= 0 else { throw SocketError("socket") }
        var a = address
        let rc = withUnsafePointer(to: &a.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, a.length) }
        }
        if rc != 0 && errno != EINPROGRESS {
            let e = SocketError("connect to \(address.description)")
            Glibc.close(fd)
            throw e
        }
        return fd
    }

    /// The pending error of a non-blocking connect (0 when it succeeded).
    public static func pendingError(_ fd: Int32) -> Int32 {
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
        return err
    }

    public static func accept(_ listenFD: Int32, into address: inout Address) -> Int32 {
        address.length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        return withUnsafeMutablePointer(to: &address.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                accept4(listenFD, $0, &address.length, nonblockCloexec)
            }
        }
    }

    public static func localAddress(_ fd: Int32) -> Address {
        var a = Address()
        a.length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &a.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &a.length) }
        }
        return a
    }

    /// The address a connected socket leads to (an unconnected one gives an empty address).
    public static func remoteAddress(_ fd: Int32) -> Address {
        var a = Address()
        a.length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &a.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &a.length) }
        }
        return a
    }

    /// The login name of the process at the other end of a Unix socket (SO_PEERCRED).
    /// The uid of the process at the other end of a Unix socket (SO_PEERCRED).
    public static func peerUID(_ fd: Int32) -> uid_t? {
        var uid: UInt32 = 0
        return pgmux_peer_uid(fd, &uid) == 0 ? uid_t(uid) : nil
    }

    public static func peerUserName(_ fd: Int32) -> String? {
        var uid: UInt32 = 0
        guard pgmux_peer_uid(fd, &uid) == 0, let pw = getpwuid(uid) else { return nil }
        return String(cString: pw.pointee.pw_name)
    }

    /// TCP_NODELAY, keepalive, user timeout and socket buffer settings of a new TCP connection to a
    /// server (no-op on Unix sockets), as PgBouncer's tune_socket.
    public static func tune(_ fd: Int32, family: Int32, settings s: borrowing Settings) {
        guard family == AF_INET || family == AF_INET6 else { return }
        tune(fd, to: TCPTuning(s), from: .kernelDefault)
    }

    /// Sets the options where `new` differs from what the socket has (`old`). A listening
    /// socket's options are inherited by every connection it accepts (TCP_NODELAY, keepalive and
    /// its timings, TCP_USER_TIMEOUT, buffer sizes), so clients are tuned once on the listener
    /// instead of with two or more setsockopt calls per connection.
    public static func tune(_ fd: Int32, to new: TCPTuning, from old: TCPTuning) {
        let sz = socklen_t(MemoryLayout<Int32>.size)
        func set(_ level: Int32, _ name: Int32, _ value: Int) {
            var v = Int32(clamping: value)
            setsockopt(fd, level, name, &v, sz)
        }
        let tcp = Int32(IPPROTO_TCP)
        if new.noDelay != old.noDelay { set(tcp, TCP_NODELAY, new.noDelay ? 1 : 0) }
        if new.socketBuffer != old.socketBuffer && new.socketBuffer > 0 {
            set(SOL_SOCKET, SO_SNDBUF, new.socketBuffer)
            set(SOL_SOCKET, SO_RCVBUF, new.socketBuffer)
        }
        if new.userTimeout != old.userTimeout { set(tcp, TCP_USER_TIMEOUT, new.userTimeout) }
        if new.keepalive != old.keepalive { set(SOL_SOCKET, SO_KEEPALIVE, new.keepalive ? 1 : 0) }
        // 0 means the kernel's default, which has to be read back to be restored.
        if new.keepIdle != old.keepIdle {
            set(tcp, TCP_KEEPIDLE, new.keepIdle > 0 ? new.keepIdle : kernelSetting("tcp_keepalive_time", 7200))
        }
        if new.keepInterval != old.keepInterval {
            set(tcp, TCP_KEEPINTVL, new.keepInterval > 0 ? new.keepInterval : kernelSetting("tcp_keepalive_intvl", 75))
        }
        if new.keepCount != old.keepCount {
            set(tcp, TCP_KEEPCNT, new.keepCount > 0 ? new.keepCount : kernelSetting("tcp_keepalive_probes", 9))
        }
    }

    /// A value of /proc/sys/net/ipv4 (the default a 0 setting stands for).
    private static func kernelSetting(_ name: String, _ fallback: Int) -> Int {
        guard let f = fopen("/proc/sys/net/ipv4/\(name)", "r") else { return fallback }
        defer { fclose(f) }
        var buf = [CChar](repeating: 0, count: 32)
        guard fgets(&buf, 32, f) != nil else { return fallback }
        let text = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return Int(text.trimmingCharacters(in: " \n")) ?? fallback
    }
}

/// The TCP options pgmux sets on its connections (tcp_* settings; TCP_NODELAY always).
public struct TCPTuning: Equatable, Sendable {
    var noDelay: Bool
    var keepalive: Bool
    var keepIdle: Int
    var keepInterval: Int
    var keepCount: Int
    var userTimeout: Int
    var socketBuffer: Int

    /// What a new socket has before pgmux sets anything.
    static let kernelDefault = TCPTuning(noDelay: false, keepalive: false, keepIdle: 0, keepInterval: 0, keepCount: 0,
                                         userTimeout: 0, socketBuffer: 0)

    init(noDelay: Bool, keepalive: Bool, keepIdle: Int, keepInterval: Int, keepCount: Int, userTimeout: Int,
         socketBuffer: Int) {
        self.noDelay = noDelay
        self.keepalive = keepalive
        self.keepIdle = keepIdle
        self.keepInterval = keepInterval
        self.keepCount = keepCount
        self.userTimeout = userTimeout
        self.socketBuffer = socketBuffer
    }

    init(_ s: borrowing Settings) {
        // Keepalive timings only matter, and are only set, with keepalive on (as before).
        self.init(noDelay: true, keepalive: s.tcpKeepalive, keepIdle: s.tcpKeepalive ? s.tcpKeepidle : 0,
                  keepInterval: s.tcpKeepalive ? s.tcpKeepintvl : 0, keepCount: s.tcpKeepalive ? s.tcpKeepcnt : 0,
                  userTimeout: s.tcpUserTimeout, socketBuffer: s.tcpSocketBuffer)
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s.removeFirst() }
        while let l = s.last, set.contains(l) { s.removeLast() }
        return String(s)
    }
}
