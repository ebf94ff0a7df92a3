import Glibc
import CLibEV

/// Records with descriptors attached (SCM_RIGHTS) over a SOCK_SEQPACKET Unix socket: each send
/// is one record, received whole with exactly the descriptors sent with it.
enum FdPassing {
    /// cmsghdr's size and the alignment of its data (CMSG_* are macros Swift cannot import).
    private static let headerSize = MemoryLayout<cmsghdr>.size
    private static func aligned(_ n: Int) -> Int { (n + MemoryLayout<Int>.size - 1) & ~(MemoryLayout<Int>.size - 1) }
    /// The most descriptors one record may carry.
    static let maxDescriptors = 64
    /// The largest record accepted (a client with many prepared statements; the kernel bounds a
    /// record by the socket's send buffer anyway).
    static let maxRecord = 1 << 18

    /// A connected, non-blocking, close-on-exec SOCK_SEQPACKET socket to `path`.
    static func connect(path: String) throws -> Int32 {
        guard let a = Socket.Address.unix(path: path) else { throw SocketError("socket path too long: \(path)", 0) }
        let fd = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Socket.nonblockCloexec, 0)
        guard fd >= 0 else { throw SocketError("socket") }
        var address = a
        let rc = withUnsafePointer(to: &address.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, address.length) }
        }
        guard rc == 0 else { let e = SocketError("connect to \(path)"); close(fd); throw e }
        return fd
    }

    /// A listening SOCK_SEQPACKET socket at `path` (an existing file there is replaced), mode 0600.
    static func listen(path: String) throws -> Int32 {
        guard let a = Socket.Address.unix(path: path) else { throw SocketError("socket path too long: \(path)", 0) }
        let fd = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Socket.nonblockCloexec, 0)
        guard fd >= 0 else { throw SocketError("socket") }
        unlink(path)
        var address = a
        let rc = withUnsafePointer(to: &address.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, address.length) }
        }
        guard rc == 0, Glibc.listen(fd, 4) == 0 else { let e = SocketError("bind \(path)"); close(fd); throw e }
        chmod(path, 0o600)
        return fd
    }

    /// Sends one record with `fds`; returns 0, or errno (EAGAIN when the peer's queue is full).
    static func send(_ fd: Int32, _ bytes: [UInt8], fds: [Int32]) -> Int32 {
        var iov = iovec()
        var msg = msghdr()
        let dataSize = fds.count * MemoryLayout<Int32>.size
        let controlSize = fds.isEmpty ? 0 : aligned(headerSize) + aligned(dataSize)
        var control = [UInt8](repeating: 0, count: max(controlSize, 1))
        let rc: Int = bytes.withUnsafeBytes { b in
            control.withUnsafeMutableBytes { c in
                iov.iov_base = UnsafeMutableRawPointer(mutating: b.baseAddress)
                iov.iov_len = b.count
                return withUnsafeMutablePointer(to: &iov) { iovp in
                    msg.msg_iov = iovp
                    msg.msg_iovlen = 1
                    if !fds.isEmpty {
                        let h = c.baseAddress!.assumingMemoryBound(to: cmsghdr.self)
                        h.pointee.cmsg_len = headerSize + dataSize
                        h.pointee.cmsg_level = SOL_SOCKET
                        h.pointee.cmsg_type = Int32(SCM_RIGHTS)
                        let data = c.baseAddress! + aligned(headerSize)
                        for (i, f) in fds.enumerated() { data.storeBytes(of: f, toByteOffset: i * 4, as: Int32.self) }
                        msg.msg_control = c.baseAddress
                        msg.msg_controllen = controlSize
                    }
                    return sendmsg(fd, &msg, Int32(MSG_NOSIGNAL))
                }
            }
        }
        if rc < 0 { return errno == EINTR ? EAGAIN : errno }
        return rc == bytes.count ? 0 : EMSGSIZE
    }

    enum Received {
        case record([UInt8], fds: [Int32])
        case wouldBlock
        case closed
        case failed(Int32)
    }

    /// Receives one record. Descriptors arrive close-on-exec; a record whose descriptors did not
    /// fit (MSG_CTRUNC) or whose bytes did not (MSG_TRUNC) is `failed`, its descriptors closed.
    /// `buffer` is the caller's, reused across calls (`maxRecord` bytes).
    static func receive(_ fd: Int32, buffer: inout [UInt8]) -> Received {
        if buffer.count < maxRecord { buffer = [UInt8](repeating: 0, count: maxRecord) }
        let controlSize = aligned(headerSize) + aligned(maxDescriptors * MemoryLayout<Int32>.size)
        var control = [UInt8](repeating: 0, count: controlSize)
        var msg = msghdr()
        var iov = iovec()
        var fds: [Int32] = []
        let n: Int = buffer.withUnsafeMutableBytes { b in
            control.withUnsafeMutableBytes { c in
                iov.iov_base = b.baseAddress
                iov.iov_len = b.count
                return withUnsafeMutablePointer(to: &iov) { iovp in
                    msg.msg_iov = iovp
                    msg.msg_iovlen = 1
                    msg.msg_control = c.baseAddress
                    msg.msg_controllen = controlSize
                    let n = recvmsg(fd, &msg, Int32(MSG_CMSG_CLOEXEC))
                    guard n >= 0 else { return n }
                    // Walk the control messages (CMSG_FIRSTHDR / CMSG_NXTHDR).
                    var offset = 0
                    while offset + headerSize <= msg.msg_controllen {
                        let h = (c.baseAddress! + offset).assumingMemoryBound(to: cmsghdr.self).pointee
                        guard h.cmsg_len >= headerSize, offset + h.cmsg_len <= msg.msg_controllen else { break }
                        if h.cmsg_level == SOL_SOCKET && h.cmsg_type == Int32(SCM_RIGHTS) {
                            let count = (h.cmsg_len - aligned(headerSize)) / 4
                            let data = c.baseAddress! + offset + aligned(headerSize)
                            for i in 0..<count { fds.append(data.load(fromByteOffset: i * 4, as: Int32.self)) }
                        }
                        offset += aligned(h.cmsg_len)
                    }
                    return n
                }
            }
        }
        if n < 0 {
            let e = errno
            return e == EAGAIN || e == EWOULDBLOCK || e == EINTR ? .wouldBlock : .failed(e)
        }
        if msg.msg_flags & Int32(MSG_CTRUNC | MSG_TRUNC) != 0 {
            for f in fds { close(f) }
            return .failed(EMSGSIZE)
        }
        if n == 0 && fds.isEmpty { return .closed }
        return .record(Array(buffer[..<n]), fds: fds)
    }
}
