import Foundation
import Glibc
import XCTest

/// A datagram socket the test owns, at a path or an abstract name, receiving what pgmux sends
/// to systemd (NOTIFY_SOCKET) or to syslog (/dev/log).
private final class DatagramSink {
    let fd: Int32
    let name: String

    /// `path` starting with "@" is an abstract name.
    init(_ path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        name = path
        var sun = sockaddr_un()
        sun.sun_family = sa_family_t(AF_UNIX)
        let bytes: [UInt8] = path.hasPrefix("@") ? [0] + Array(path.utf8.dropFirst()) : Array(path.utf8)
        withUnsafeMutableBytes(of: &sun.sun_path) { p in for (i, b) in bytes.enumerated() { p[i] = b } }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (path.hasPrefix("@") ? 0 : 1))
        if !path.hasPrefix("@") { unlink(path) }
        let rc = withUnsafePointer(to: &sun) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard rc == 0 else { throw Shell.Failed(command: "bind \(path)", status: errno, output: "") }
        if !path.hasPrefix("@") { chmod(path, 0o777) }  // pgmux runs as postgres under root
    }

    deinit {
        close(fd)
        if !name.hasPrefix("@") { unlink(name) }
    }

    /// The next datagram, or nil after `timeout` seconds.
    func next(timeout: Double = 5) -> String? {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, Int32(timeout * 1000)) == 1 else { return nil }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = recv(fd, &buf, buf.count, 0)
        return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : nil
    }

    /// The next datagram that is not a STATUS= line.
    func nextState(timeout: Double = 5) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            guard let m = next(timeout: deadline.timeIntervalSinceNow) else { return nil }
            if !m.hasPrefix("STATUS=") { return m }
        }
        return nil
    }
}

/// Type=notify (sd_notify without libsystemd) and syslog, as operators run PgBouncer.
final class SystemdTests: XCTestCase {
    func testNotifyReadyReloadingStatusAndStopping() throws {
        for name in [NSTemporaryDirectory() + "pgmux-notify-\(getpid()).sock", "@pgmux-notify-\(getpid())"] {
            let sink = try DatagramSink(name)
            let pgmux = try PgmuxProcess(settings: ["stats_period": "1", "log_stats": "0"],
                                         launcher: ["/usr/bin/env", "NOTIFY_SOCKET=\(name)"])
            XCTAssertEqual(sink.nextState(), "READY=1", name)
            // The stats line every stats_period, even with log_stats off (as PgBouncer).
            var status: String?
            for _ in 0..<5 { if let m = sink.next(), m.hasPrefix("STATUS=") { status = m; break } }
            XCTAssertTrue(status?.hasPrefix("STATUS=stats: ") ?? false, "\(String(describing: status))")
            XCTAssertTrue(status?.contains("xacts/s") ?? false)
            pgmux.signal(SIGHUP)
            let reloading = sink.nextState() ?? ""
            XCTAssertTrue(reloading.hasPrefix("RELOADING=1\nMONOTONIC_USEC="), reloading)
            XCTAssertGreaterThan(Int(reloading.split(separator: "=").last ?? "") ?? 0, 0, reloading)
            XCTAssertEqual(sink.nextState(), "READY=1", "after the reload")
            pgmux.signal(SIGTERM)
            XCTAssertEqual(sink.nextState(), "STOPPING=1", name)
        }
    }

    /// Without NOTIFY_SOCKET nothing is sent and nothing fails.
    func testNoNotifySocketIsFine() throws {
        let pgmux = try PgmuxProcess()
        XCTAssertEqual(try PQConnection(pgmux.conninfo()).scalar("SELECT 1"), "1")
    }

    /// syslog = 1: the log lines, without timestamp and pid (syslog adds them), at PgBouncer's
    /// priorities, under syslog_ident and syslog_facility. pgmux runs in a mount namespace of its
    /// own where /dev is a directory holding the test's socket as `log`.
    func testSyslogLinesReachTheSyslogSocket() throws {
        try XCTSkipIf(geteuid() != 0, "a mount namespace needs root")
        let dir = NSTemporaryDirectory() + "pgmux-syslog-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        chmod(dir, 0o755)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let sink = try DatagramSink(dir + "/log")
        let pgmux = try PgmuxProcess(settings: ["syslog": "1", "syslog_ident": "pgmuxtest", "syslog_facility": "local3"],
                                     launcher: ["/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                                                "mount --bind \"$0\" /dev && exec \"$@\"", dir])
        var lines: [String] = []
        while let m = sink.next(timeout: 3) {
            lines.append(m)
            if m.contains("listening on") { break }
        }
        // <priority>: facility local3 (19) * 8 + info (6) = 158.
        let listening = lines.first { $0.contains("listening on 127.0.0.1:\(pgmux.port)") }
        XCTAssertNotNil(listening, lines.description)
        XCTAssertTrue(listening?.hasPrefix("<158>") ?? false, listening ?? "")
        XCTAssertTrue(listening?.contains("pgmuxtest[") ?? false, listening ?? "")
        XCTAssertFalse(listening?.contains(" LOG ") ?? true, "the level is the priority, not text")
        pgmux.signal(SIGHUP)
        var reloaded = false
        while let m = sink.next(timeout: 3) {
            if m.contains("got SIGHUP, re-reading config") { reloaded = m.hasPrefix("<158>"); break }
        }
        XCTAssertTrue(reloaded, "syslog still on after RELOAD")
    }

    /// Socket activation with Debian's systemd-socket-activate: pgmux serves on the TCP and Unix
    /// sockets it is handed (descriptors 3 and 4) instead of listen_addr and unix_socket_dir,
    /// with PgBouncer's warning for the listen_addr it ignores.
    func testSocketActivation() throws {
        let port = PostgresCluster.freePort()
        let dir = NSTemporaryDirectory() + "pgmux-activate-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        chmod(dir, 0o777)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The first connection (the harness's readiness probe) makes systemd-socket-activate
        // exec pgmux with the sockets.
        let pgmux = try PgmuxProcess(settings: ["unix_socket_dir": "/tmp"], launcher: [
            "/usr/bin/systemd-socket-activate", "-l", "127.0.0.1:\(port)", "-l", dir + "/.s.PGSQL.\(port)",
        ], port: port)
        XCTAssertEqual(try PQConnection(pgmux.conninfo()).scalar("SELECT 'over tcp'"), "over tcp")
        let local = try PQConnection("host=\(dir) port=\(port) user=\(PostgresCluster.scramUser.0) "
                                     + "password=\(PostgresCluster.scramUser.1) dbname=\(PostgresCluster.database)")
        XCTAssertEqual(try local.scalar("SELECT 'over unix'"), "over unix")
        XCTAssertTrue(pgmux.log.contains("socket passed from service manager (fd 3)"), pgmux.log)
        XCTAssertTrue(pgmux.log.contains("socket passed from service manager (fd 4)"), pgmux.log)
        XCTAssertTrue(pgmux.log.contains("sockets passed from service manager, cf_listen_addr ignored"), pgmux.log)
        XCTAssertFalse(pgmux.log.contains("listening on 127.0.0.1"), pgmux.log)
    }
}
