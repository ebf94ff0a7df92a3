import Foundation
import Glibc

/// A pgmux process started from the binary `swift test` built, with its own config file, port and
/// Unix socket directory. Stopped (SIGQUIT, the immediate exit) by `stop()` or when the test ends.
final class PgmuxProcess {
    let port: Int
    let dir: String
    let configPath: String
    let logPath: String
    private var child: Child!

    /// The pgmux next to the test bundle, or PGMUX_BINARY (`make tsan` gives its sanitized build).
    static var binary: String {
        if let path = ProcessInfo.processInfo.environment["PGMUX_BINARY"], !path.isEmpty { return path }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("pgmux").path
    }

    /// Writes the config (`[pgmux]` settings plus `extra` sections) and starts pgmux.
    /// `instance` names one of several processes sharing a port (so_reuseport): each gets its own
    /// directory, hence its own Unix socket; `peers` is the `[peers]` section.
    init(settings: [String: String] = [:], databases: [String: String]? = nil, users: [String: String] = [:],
         userlist: [(String, String)]? = nil, launcher: [String] = [], port: Int? = nil,
         instance: String? = nil, peers: [Int: String] = [:]) throws {
        let cluster = PostgresCluster.shared
        self.port = port ?? PostgresCluster.freePort()
        dir = cluster.dir + "/pgmux-\(self.port)" + (instance.map { "-" + $0 } ?? "")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        chmod(dir, 0o777)
        configPath = dir + "/pgmux.ini"
        logPath = dir + "/pgmux.log"
        let list = userlist ?? [PostgresCluster.scramUser, PostgresCluster.md5User, ("postgres", "unused")]
        try list.map { "\"\($0.0)\" \"\($0.1)\"" }.joined(separator: "\n")
            .write(toFile: dir + "/userlist.txt", atomically: false, encoding: .utf8)
        var s: [String: String] = [
            "listen_addr": "127.0.0.1", "listen_port": "\(self.port)", "unix_socket_dir": dir,
            "auth_type": "scram-sha-256", "auth_file": dir + "/userlist.txt", "pool_mode": "transaction",
            "default_pool_size": "5", "log_connections": "0", "log_disconnections": "0",
            // Light test loads would gather every client on one loop; tests that want that say so.
            "worker_placement": "even",
        ]
        for (k, v) in settings { s[k] = v }
        let dbs = databases ?? [
            PostgresCluster.database: "host=127.0.0.1 port=\(cluster.port) dbname=\(PostgresCluster.database)",
            "*": "host=127.0.0.1 port=\(cluster.port)",
        ]
        var text = "[databases]\n" + dbs.map { "\($0.key) = \($0.value)" }.sorted().joined(separator: "\n")
        text += "\n\n[users]\n" + users.map { "\($0.key) = \($0.value)" }.joined(separator: "\n")
        if !peers.isEmpty {
            text += "\n\n[peers]\n" + peers.map { "\($0.key) = \($0.value)" }.sorted().joined(separator: "\n")
        }
        text += "\n\n[pgmux]\n" + s.map { "\($0.key) = \($0.value)" }.sorted().joined(separator: "\n") + "\n"
        try text.write(toFile: configPath, atomically: false, encoding: .utf8)

        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        chmod(logPath, 0o666)
        let args = (geteuid() == 0 ? ["-u", "postgres"] : []) + [configPath]
        child = launcher.isEmpty ? try Child(Self.binary, args, outputPath: logPath)
                                 : try Child(launcher[0], Array(launcher.dropFirst()) + [Self.binary] + args, outputPath: logPath)
        try waitForPort()
        if instance != nil { try waitForUnixSocket() }
    }

    /// The shared TCP port may answer from another process: this one is up when its own
    /// Unix socket is.
    private func waitForUnixSocket() throws {
        for _ in 0..<200 {
            if !child.isRunning { throw PostgresCluster.Failure(description: "pgmux exited: \(self.log)") }
            if FileManager.default.fileExists(atPath: "\(dir)/.s.PGSQL.\(port)") { return }
            usleep(25_000)
        }
        throw PostgresCluster.Failure(description: "pgmux did not open its Unix socket: \(log)")
    }

    private func waitForPort() throws {
        for _ in 0..<200 {
            if !child.isRunning { throw PostgresCluster.Failure(description: "pgmux exited: \(self.log)") }
            if let fd = loopbackConnect(port: port) { close(fd); return }
            usleep(25_000)
        }
        throw PostgresCluster.Failure(description: "pgmux did not start listening: \(log)")
    }

    var pid: Int32 { child.pid }
    var isRunning: Bool { child.isRunning }
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func signal(_ sig: Int32) { child.signal(sig) }

    /// Stops pgmux and returns its exit status.
    @discardableResult
    func stop() -> Int32 {
        if child.isRunning { child.signal(SIGQUIT) }
        return child.wait(timeout: 10)
    }

    /// libpq connection string for `user` through this pgmux.
    func conninfo(user: String = PostgresCluster.scramUser.0, password: String? = PostgresCluster.scramUser.1,
                  database: String = PostgresCluster.database, extra: String = "") -> String {
        var s = "host=127.0.0.1 port=\(port) user=\(user) dbname=\(database) connect_timeout=10 \(extra)"
        if let password { s += " password=\(password)" }
        return s
    }

    /// Open file descriptors of the pgmux process.
    var openFDs: Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
    }

    /// Resident set size in kB.
    var rssKB: Int {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
        }
        return -1
    }

    deinit { stop() }
}
