import Foundation
import Glibc

/// A throwaway PostgreSQL 15 cluster shared by all integration tests: created in a temp dir on first
/// use, started as the `postgres` user when the tests run as root (postgres refuses root), and torn
/// down at exit. A watchdog shell also stops it if the test process dies without cleaning up.
final class PostgresCluster: @unchecked Sendable {
    static let shared: PostgresCluster = {
        do { return try PostgresCluster() } catch { fatalError("cannot start PostgreSQL: \(error)") }
    }()

    let dir: String
    let port: Int
    let binDir: String
    let runAsPostgres: Bool
    /// Users created for the tests, with their passwords and how the server checks them.
    static let scramUser = ("scram_user", "scram_pw")
    static let md5User = ("md5_user", "md5_pw")
    static let database = "pgmux_test"

    struct Failure: Error, CustomStringConvertible { let description: String }

    private init() throws {
        binDir = ["/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin"].first {
            FileManager.default.fileExists(atPath: "\($0)/initdb")
        } ?? "/usr/lib/postgresql/15/bin"
        runAsPostgres = geteuid() == 0
        var template = Array("/tmp/pgmux-test-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw Failure(description: "mkdtemp failed") }
        dir = String(cString: made)
        chmod(dir, 0o755)
        if runAsPostgres { try Shell.run("chown", ["postgres:postgres", dir]) }
        port = PostgresCluster.freePort()
        try asPostgres("\(binDir)/initdb", ["-D", "\(dir)/data", "-U", "postgres", "--auth=trust", "-E", "UTF8",
                                            "--locale=C"])
        let conf = """
            listen_addresses = '127.0.0.1'
            port = \(port)
            unix_socket_directories = '\(dir)'
            max_connections = 300
            fsync = off
            synchronous_commit = off
            full_page_writes = off
            shared_buffers = 64MB
            password_encryption = 'scram-sha-256'
            log_min_messages = warning
            wal_level = logical
            max_wal_senders = 20
            max_replication_slots = 20
            """
        try makeCertificates()
        try appendFile("\(dir)/data/postgresql.conf", conf + """

            ssl = on
            ssl_cert_file = '\(dir)/tls/server.crt'
            ssl_key_file = '\(dir)/tls/server.key'
            """)
        let hba = """
            local all postgres trust
            local all all trust
            host all postgres 127.0.0.1/32 trust
            host all \(PostgresCluster.md5User.0) 127.0.0.1/32 md5
            host all all 127.0.0.1/32 scram-sha-256
            local replication all trust
            host replication postgres 127.0.0.1/32 trust
            host replication all 127.0.0.1/32 scram-sha-256
            """
        try writeFile("\(dir)/data/pg_hba.conf", hba)
        try asPostgres("\(binDir)/pg_ctl", ["-D", "\(dir)/data", "-l", "\(dir)/postgres.log", "-w", "start"])
        startWatchdog()
        atexit {
            let c = PostgresCluster.shared
            _ = try? c.asPostgres("\(c.binDir)/pg_ctl", ["-D", "\(c.dir)/data", "-m", "immediate", "stop"])
            try? FileManager.default.removeItem(atPath: c.dir)
        }
        try psql("CREATE ROLE \(Self.scramUser.0) LOGIN SUPERUSER PASSWORD '\(Self.scramUser.1)'")
        try psql("SET password_encryption = 'md5'; CREATE ROLE \(Self.md5User.0) LOGIN SUPERUSER PASSWORD '\(Self.md5User.1)'")
        try psql("CREATE DATABASE \(Self.database) OWNER \(Self.scramUser.0)")
        try Shell.run("/usr/bin/pgbench", ["-i", "-q", "-s", "1", "-h", "127.0.0.1", "-p", "\(port)", "-U", "postgres",
                                           Self.database])
        try psql("GRANT ALL ON ALL TABLES IN SCHEMA public TO \(Self.md5User.0), \(Self.scramUser.0);", db: Self.database)
    }

    /// A throwaway CA and a certificate for 127.0.0.1/localhost signed by it, in `<dir>/tls`:
    /// PostgreSQL serves it (ssl = on) and pgmux's TLS tests use it toward clients.
    var tlsDir: String { dir + "/tls" }

    private func makeCertificates() throws {
        let t = tlsDir
        try FileManager.default.createDirectory(atPath: t, withIntermediateDirectories: true)
        try "subjectAltName = IP:127.0.0.1, DNS:localhost\n".write(toFile: t + "/san.ext", atomically: false, encoding: .utf8)
        try Shell.run("/usr/bin/openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=pgmux test CA",
                                           "-keyout", t + "/ca.key", "-out", t + "/ca.crt"])
        try Shell.run("/usr/bin/openssl", ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                                           "-keyout", t + "/server.key", "-out", t + "/server.csr"])
        try Shell.run("/usr/bin/openssl", ["x509", "-req", "-in", t + "/server.csr", "-CA", t + "/ca.crt", "-CAkey", t + "/ca.key",
                                           "-CAcreateserial", "-days", "2", "-extfile", t + "/san.ext", "-out", t + "/server.crt"])
        chmod(t, 0o755)
        for f in ["ca.crt", "server.crt"] { chmod(t + "/" + f, 0o644) }
        chmod(t + "/server.key", 0o600)
        if runAsPostgres { try Shell.run("chown", ["-R", "postgres:postgres", t]) }
        // A client certificate for auth_type=cert, owned by whoever runs the tests (libpq checks).
        let c = clientCertDir
        try FileManager.default.createDirectory(atPath: c, withIntermediateDirectories: true)
        try Shell.run("/usr/bin/openssl", ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=\(Self.scramUser.0)",
                                           "-keyout", c + "/client.key", "-out", c + "/client.csr"])
        try Shell.run("/usr/bin/openssl", ["x509", "-req", "-in", c + "/client.csr", "-CA", t + "/ca.crt", "-CAkey", t + "/ca.key",
                                           "-CAcreateserial", "-CAserial", c + "/ca.srl", "-days", "2", "-out", c + "/client.crt"])
        chmod(c + "/client.key", 0o600)
    }

    var clientCertDir: String { dir + "/tls-client" }

    /// Runs a command as the postgres user (via runuser) when we are root.
    @discardableResult
    func asPostgres(_ cmd: String, _ args: [String]) throws -> String {
        if runAsPostgres { return try Shell.run("/usr/sbin/runuser", ["-u", "postgres", "--", cmd] + args) }
        return try Shell.run(cmd, args)
    }

    /// Runs SQL as the superuser over TCP, directly (not through pgmux).
    @discardableResult
    func psql(_ sql: String, db: String = "postgres") throws -> String {
        try Shell.run("/usr/bin/psql", ["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                                        "-p", "\(port)", "-U", "postgres", "-d", db, "-c", sql])
    }

    /// Backends PostgreSQL has for `user` (excluding the querying one).
    func backendCount(user: String) throws -> Int {
        let out = try psql("SELECT count(*) FROM pg_stat_activity WHERE usename = '\(user)' AND pid <> pg_backend_pid()")
        return Int(out.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }

    private func startWatchdog() {
        let pid = getpid()
        let script = """
            while kill -0 \(pid) 2>/dev/null; do sleep 1; done
            \(runAsPostgres ? "runuser -u postgres -- " : "")\(binDir)/pg_ctl -D \(dir)/data -m immediate stop >/dev/null 2>&1
            rm -rf \(dir)
            """
        _ = try? Child("/usr/bin/setsid", ["/bin/sh", "-c", script], outputPath: "/dev/null")
    }

    private func writeFile(_ path: String, _ text: String) throws {
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        if runAsPostgres { try Shell.run("chown", ["postgres:postgres", path]) }
    }

    private func appendFile(_ path: String, _ text: String) throws {
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        h.seekToEndOfFile()
        h.write(("\n" + text + "\n").data(using: .utf8)!)
        h.closeFile()
    }

    /// A loopback TCP port nobody listens on right now.
    static func freePort() -> Int {
        for _ in 0..<200 {
            let candidate = Int.random(in: 20000...50000)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(candidate).bigEndian)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            close(fd)
            if rc == 0 { return candidate }
        }
        return 45432
    }
}

/// Runs external programs with posix_spawn (Foundation's Process can miss the exit of a child
/// whose own children, like postgres under pg_ctl, keep its output open). Output goes to a file.
enum Shell {
    struct Failed: Error, CustomStringConvertible {
        let command: String, status: Int32, output: String
        var description: String { "\(command) exited \(status): \(output)" }
    }

    @discardableResult
    static func run(_ cmd: String, _ args: [String], env: [String: String] = [:], timeout: Double = 120) throws -> String {
        let r = try runStatus(cmd, args, env: env, timeout: timeout)
        guard r.status == 0 else { throw Failed(command: ([cmd] + args).joined(separator: " "), status: r.status, output: r.output) }
        return r.output
    }

    static func runStatus(_ cmd: String, _ args: [String], env: [String: String] = [:], timeout: Double = 120) throws -> (status: Int32, output: String) {
        let outPath = "/tmp/pgmux-shell-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).out"
        defer { unlink(outPath) }
        let child = try Child(cmd, args, env: env, outputPath: outPath)
        let status = child.wait(timeout: timeout)
        let output = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        return (status, output)
    }
}

/// A spawned child process: stdin from /dev/null, stdout and stderr appended to `outputPath`.
final class Child: @unchecked Sendable {
    let pid: pid_t
    private var exitStatus: Int32?

    init(_ cmd: String, _ args: [String], env: [String: String] = [:], outputPath: String) throws {
        var environment = ProcessInfo.processInfo.environment
        for (k, v) in env { environment[k] = v }
        let path = cmd.hasPrefix("/") ? cmd : (["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map { "\($0)/\(cmd)" }
            .first { FileManager.default.isExecutableFile(atPath: $0) } ?? cmd)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_APPEND, 0o666)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv = ([path] + args).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
        var p: pid_t = 0
        let rc = posix_spawn(&p, path, &actions, nil, argv, envp)
        guard rc == 0 else { throw PostgresCluster.Failure(description: "spawn \(path): \(String(cString: strerror(rc)))") }
        pid = p
    }

    /// Waits up to `timeout` seconds; kills the child when it runs over. Returns the exit status
    /// (128 + signal when killed by a signal).
    @discardableResult
    func wait(timeout: Double) -> Int32 {
        if let exitStatus { return exitStatus }
        let deadline = Date().addingTimeInterval(timeout)
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { break }
            if r < 0 { exitStatus = -1; return -1 }
            if Date() > deadline { kill(pid, SIGKILL); waitpid(pid, &status, 0); break }
            usleep(10_000)
        }
        let code: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        exitStatus = code
        return code
    }

    var isRunning: Bool {
        if exitStatus != nil { return false }
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid {
            exitStatus = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            return false
        }
        return r == 0
    }

    func signal(_ sig: Int32) { kill(pid, sig) }
}
