import Glibc

/// The restart signal (SIGURG, free in PgBouncer, whose SIGUSR2 means RESUME): the running
/// process starts its successor, `<its binary> -R <its arguments>`, which takes over through the
/// takeover socket like any `pgmux -R`. The binary is the path this process started from, so
/// an upgraded binary installed there is the one that starts.
public struct SuccessorCommand: Sendable {
    public let path: String
    public let arguments: [String]

    /// `arguments` without argv[0]; nil when this process's binary cannot be found.
    public init?(arguments: [String]) {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        guard n > 0 else { return nil }
        path = String(decoding: buf[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        self.arguments = ["-R"] + arguments.filter { $0 != "-R" && $0 != "--reboot" }
    }
}

/// Starts the successor and collects its exit status (it stays a child of this process until it
/// daemonizes or this one exits).
final class SuccessorLauncher {
    private(set) var pid: pid_t = 0

    /// Spawns `command`; an error text when it could not start.
    func launch(_ command: SuccessorCommand) -> String? {
        guard pid == 0 else { return "a restart is already under way (pid \(pid))" }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // libev blocks the signals it watches; the successor starts with none blocked and
        // default actions.
        var none = sigset_t(), all = sigset_t()
        sigemptyset(&none)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attr, &none)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv = ([command.path] + command.arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, command.path, nil, &attr, argv, environ)
        guard rc == 0 else { return "cannot start \(command.path): \(String(cString: strerror(rc)))" }
        pid = child
        return nil
    }

    /// The successor's exit status once it has exited (nil while it runs or when there is none).
    func reap() -> Int32? {
        guard pid > 0 else { return nil }
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) == pid else { return nil }
        pid = 0
        return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }
}
