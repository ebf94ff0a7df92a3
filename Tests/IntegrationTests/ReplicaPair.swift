import Foundation
import Glibc

/// A PostgreSQL primary and a streaming standby made from it with `pg_basebackup -R`, both on
/// loopback ports, for the high-availability tests: stopped, promoted and restarted by the test,
/// torn down at the end (and by a watchdog shell if the test process dies first).
final class ReplicaPair {
    let dir: String
    /// Ports of node 0 (the first primary) and node 1 (the first standby).
    let ports: [Int]
    private let cluster = PostgresCluster.shared

    init() throws {
        var template = Array("/tmp/pgmux-ha-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw PostgresCluster.Failure(description: "mkdtemp failed") }
        dir = String(cString: made)
        chmod(dir, 0o755)
        if cluster.runAsPostgres { try Shell.run("chown", ["postgres:postgres", dir]) }
        ports = [PostgresCluster.freePort(), PostgresCluster.freePort()]
        startWatchdog()
        try cluster.asPostgres("\(cluster.binDir)/initdb", ["-D", data(0), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                                                            "--locale=C"])
        try append(data(0) + "/postgresql.conf", """
            listen_addresses = '127.0.0.1'
            unix_socket_directories = '\(dir)'
            fsync = off
            synchronous_commit = off
            full_page_writes = on
            wal_level = replica
            max_wal_senders = 5
            wal_keep_size = 64MB
            hot_standby = on
            log_min_messages = warning
            """)
        try append(data(0) + "/pg_hba.conf", "host replication all 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 trust")
        try setPort(0)
        try start(0)
        try psql(0, "CREATE TABLE ha_writes (id bigserial PRIMARY KEY, port int, at timestamptz DEFAULT clock_timestamp())")
        try Shell.run("/usr/bin/pgbench", ["-i", "-q", "-s", "1", "-h", "127.0.0.1", "-p", "\(ports[0])", "-U", "postgres", "postgres"])
        try cluster.asPostgres("\(cluster.binDir)/pg_basebackup", ["-D", data(1), "-R", "-X", "stream", "-c", "fast",
                                                                   "-h", "127.0.0.1", "-p", "\(ports[0])", "-U", "postgres"])
        try setPort(1)
        try start(1)
        guard waitUntil(20, { (try? psql(1, "SELECT pg_is_in_recovery()")) == "t" }) else {
            throw PostgresCluster.Failure(description: "standby did not come up")
        }
    }

    func data(_ node: Int) -> String { "\(dir)/node\(node)" }

    /// The last `port =` line wins: each node keeps its own port through pg_basebackup's copy.
    private func setPort(_ node: Int) throws { try append(data(node) + "/postgresql.conf", "port = \(ports[node])") }

    func start(_ node: Int) throws {
        try cluster.asPostgres("\(cluster.binDir)/pg_ctl", ["-D", data(node), "-l", "\(dir)/node\(node).log", "-w", "-t", "30", "start"])
    }

    func stop(_ node: Int, mode: String = "fast") throws {
        try cluster.asPostgres("\(cluster.binDir)/pg_ctl", ["-D", data(node), "-m", mode, "-w", "stop"])
    }

    func promote(_ node: Int) throws {
        try cluster.asPostgres("\(cluster.binDir)/pg_ctl", ["-D", data(node), "-w", "promote"])
    }

    /// Restarts a stopped former primary as a standby of `primary` (a clean switchover: it has
    /// no WAL the new primary lacks, so it follows the new timeline).
    func restartAsStandby(_ node: Int, following primary: Int) throws {
        try append(data(node) + "/postgresql.auto.conf",
                   "primary_conninfo = 'host=127.0.0.1 port=\(ports[primary]) user=postgres'")
        _ = FileManager.default.createFile(atPath: data(node) + "/standby.signal", contents: nil)
        if cluster.runAsPostgres { try Shell.run("chown", ["postgres:postgres", data(node) + "/standby.signal"]) }
        try start(node)
    }

    /// SQL on one node directly; trimmed output.
    @discardableResult
    func psql(_ node: Int, _ sql: String) throws -> String {
        try Shell.run("/usr/bin/psql", ["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                                        "-p", "\(ports[node])", "-U", "postgres", "-d", "postgres", "-c", sql])
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `host=127.0.0.1,127.0.0.1 port=P0,P1` plus `extra`, for a `[databases]` line.
    func databaseLine(_ extra: String) -> String {
        "host=127.0.0.1,127.0.0.1 port=\(ports[0]),\(ports[1]) dbname=postgres \(extra)"
    }

    private func append(_ path: String, _ text: String) throws {
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        h.seekToEndOfFile()
        h.write(("\n" + text + "\n").data(using: .utf8)!)
        h.closeFile()
    }

    private func startWatchdog() {
        let pid = getpid()
        let ctl = "\(cluster.runAsPostgres ? "runuser -u postgres -- " : "")\(cluster.binDir)/pg_ctl"
        let script = """
            while kill -0 \(pid) 2>/dev/null && [ -d \(dir) ]; do sleep 1; done
            \(ctl) -D \(data(0)) -m immediate stop >/dev/null 2>&1
            \(ctl) -D \(data(1)) -m immediate stop >/dev/null 2>&1
            rm -rf \(dir)
            """
        _ = try? Child("/usr/bin/setsid", ["/bin/sh", "-c", script], outputPath: "/dev/null")
    }

    deinit {
        for node in 0..<2 { _ = try? stop(node, mode: "immediate") }
        try? FileManager.default.removeItem(atPath: dir)
    }
}
