import Foundation
import Glibc

/// A second, short-lived PostgreSQL cluster (initdb in a temp dir, its own port), for tests that
/// need another server than the shared one, such as a logical replication subscriber. Stopped
/// (immediate) and removed by `stop()` or when released.
final class ScratchCluster {
    let dir: String
    let port: Int
    private let shared = PostgresCluster.shared
    private var running = false

    init() throws {
        port = PostgresCluster.freePort()
        dir = shared.dir + "/scratch-\(port)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        if shared.runAsPostgres { try Shell.run("chown", ["postgres:postgres", dir]) }
        try shared.asPostgres("\(shared.binDir)/initdb", ["-D", "\(dir)/data", "-U", "postgres", "--auth=trust",
                                                         "-E", "UTF8", "--locale=C", "--no-sync"])
        try shared.asPostgres("\(shared.binDir)/pg_ctl", [
            "-D", "\(dir)/data", "-l", "\(dir)/postgres.log", "-w", "start",
            "-o", "-c listen_addresses=127.0.0.1 -c port=\(port) -c unix_socket_directories=\(dir) -c fsync=off",
        ])
        running = true
    }

    /// Runs SQL as the superuser over TCP.
    @discardableResult
    func psql(_ sql: String, db: String = "postgres") throws -> String {
        try Shell.run("/usr/bin/psql", ["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                                        "-p", "\(port)", "-U", "postgres", "-d", db, "-c", sql])
    }

    var log: String { (try? String(contentsOfFile: "\(dir)/postgres.log", encoding: .utf8)) ?? "" }

    func stop() {
        guard running else { return }
        running = false
        _ = try? shared.asPostgres("\(shared.binDir)/pg_ctl", ["-D", "\(dir)/data", "-m", "immediate", "stop"])
        try? FileManager.default.removeItem(atPath: dir)
    }

    deinit { stop() }
}
