import Glibc
import CLibEV  // the socket constants (SOCK_*, MSG_NOSIGNAL) come with its headers

/// systemd socket activation without libsystemd (sd_listen_fds): the service manager opens the
/// listening sockets and passes them as descriptors 3, 4, … with `LISTEN_PID` (this process)
/// and `LISTEN_FDS` (how many) in the environment.
enum SocketActivation {
    static let firstFD: Int32 = 3

    /// The descriptors passed to this process; empty when not socket-activated.
    static func listenFDs() -> [Int32] {
        guard let pid = getenv("LISTEN_PID").flatMap({ Int32(String(cString: $0)) }), pid == getpid(),
              let n = getenv("LISTEN_FDS").flatMap({ Int32(String(cString: $0)) }), n > 0, n < 1024 else { return [] }
        let fds = Array(firstFD..<firstFD + n)
        for fd in fds {
            // Handed over blocking and inheritable; the loop needs neither.
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        return fds
    }

    /// AF_INET, AF_INET6 or AF_UNIX for a listening stream socket; nil for anything else.
    static func listeningFamily(_ fd: Int32) -> Int32? {
        var type: Int32 = 0, listening: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0, type == Int32(SOCK_STREAM.rawValue) else { return nil }
        len = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0, listening == 1 else { return nil }
        var storage = sockaddr_storage()
        len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        guard rc == 0 else { return nil }
        let family = Int32(storage.ss_family)
        return [AF_INET, AF_INET6, AF_UNIX].contains(family) ? family : nil
    }
}
