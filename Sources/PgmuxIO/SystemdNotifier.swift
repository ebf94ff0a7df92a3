import Glibc
import CLibEV  // the socket constants (SOCK_*, MSG_NOSIGNAL) come with its headers

/// systemd's readiness protocol (`Type=notify`), without libsystemd: one datagram per state
/// change to the Unix socket named by `NOTIFY_SOCKET` (a path, or `@name` for an abstract
/// socket). What PgBouncer sends, when: READY=1 once listening and after each SIGHUP reload,
/// RELOADING=1 with MONOTONIC_USEC (so `Type=notify-reload` works too) before it, STOPPING=1 on
/// SIGTERM and SIGINT, and STATUS= with the stats line every stats_period. Without
/// `NOTIFY_SOCKET` (not started by systemd) every call does nothing.
struct SystemdNotifier {
    private let address: Socket.Address?

    init(environment value: String? = getenv("NOTIFY_SOCKET").map { String(cString: $0) }) {
        guard let value, value.utf8.count > 1, value.hasPrefix("/") || value.hasPrefix("@") else { address = nil; return }
        guard value.hasPrefix("@") else { address = Socket.Address.unix(path: value); return }
        // An abstract name is exactly its bytes after a leading NUL: no padding in the length.
        var a = Socket.Address.unix(path: "\0" + value.dropFirst())
        a?.length = socklen_t(MemoryLayout<sa_family_t>.size + value.utf8.count)
        address = a
    }

    var isActive: Bool { address != nil }

    func ready() { send("READY=1") }
    func stopping() { send("STOPPING=1") }
    func status(_ line: String) { send("STATUS=\(line)") }

    func reloading() {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        send("RELOADING=1\nMONOTONIC_USEC=\(Int(ts.tv_sec) * 1_000_000 + Int(ts.tv_nsec) / 1000)")
    }

    /// Best effort, as sd_notify: a failure is not the pooler's concern.
    private func send(_ text: String) {
        guard var a = address else { return }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        _ = withUnsafePointer(to: &a.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, a.length) }
            }
        }
    }
}
