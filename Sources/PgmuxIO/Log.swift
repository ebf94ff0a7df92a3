import Glibc

/// PgBouncer-style log lines: `YYYY-MM-DD HH:MM:SS.mmm TZ [pid] LEVEL message`, to stderr unless
/// quiet, and to `logfile` when set; with `syslog = 1` also to syslog(3), the message alone
/// (syslog adds time, ident and pid), as PgBouncer. Operators and scripts grep these lines, so
/// wording matters.
/// Shared by every loop of the process: a line is one write(2) (appends do not interleave), and
/// the file, syslog and verbosity change only while the other loops are parked (RELOAD).
public final class Log: @unchecked Sendable {
    public enum Level: Int, Comparable, Sendable {
        case fatal = 0, error, warning, log, debug, noise
        public static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }
        var label: String {
            switch self {
            case .fatal: "FATAL"
            case .error: "ERROR"
            case .warning: "WARNING"
            case .log: "LOG"
            case .debug: "DEBUG"
            case .noise: "NOISE"
            }
        }
    }

    public var quiet = false
    public var verbose = 0
    private var fileFD: Int32 = -1
    private let pid = getpid()
    /// openlog(3) keeps the ident pointer: it lives here until the next configureSyslog.
    private var syslogIdent: UnsafeMutablePointer<CChar>?

    public init() {}

    /// (Re)opens the log file; an empty path logs to stderr only.
    public func open(path: String) {
        if fileFD >= 0 { Glibc.close(fileFD); fileFD = -1 }
        guard !path.isEmpty else { return }
        fileFD = Glibc.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        if fileFD < 0 { write(.warning, "cannot open logfile \(path): \(String(cString: strerror(errno)))") }
    }

    /// syslog, syslog_ident, syslog_facility (at start and RELOAD). An unknown facility is
    /// daemon, as PgBouncer.
    public func configureSyslog(enabled: Bool, ident: String, facility: String) {
        if let old = syslogIdent {
            closelog()
            free(old)
            syslogIdent = nil
        }
        guard enabled else { return }
        syslogIdent = strdup(ident)
        openlog(syslogIdent, LOG_PID, Log.syslogFacility(facility))
    }

    static func syslogFacility(_ name: String) -> Int32 {
        let codes: [String: Int32] = ["auth": LOG_AUTH, "authpriv": LOG_AUTHPRIV, "daemon": LOG_DAEMON, "user": LOG_USER,
                                      "local0": LOG_LOCAL0, "local1": LOG_LOCAL1, "local2": LOG_LOCAL2,
                                      "local3": LOG_LOCAL3, "local4": LOG_LOCAL4, "local5": LOG_LOCAL5,
                                      "local6": LOG_LOCAL6, "local7": LOG_LOCAL7]
        return codes[name] ?? LOG_DAEMON
    }

    public func enabled(_ level: Level) -> Bool {
        level <= .log || level.rawValue - Level.log.rawValue <= verbose
    }

    public func write(_ level: Level, _ message: String) {
        guard enabled(level) else { return }
        let line = "\(Log.timestamp()) [\(pid)] \(level.label) \(message.replacingNewlines())\n"
        var bytes = Array(line.utf8)
        bytes.withUnsafeMutableBytes { b in
            if !quiet { _ = Glibc.write(2, b.baseAddress, b.count) }
            if fileFD >= 0 { _ = Glibc.write(fileFD, b.baseAddress, b.count) }
        }
        // PgBouncer's syslog level is info: debug and noise lines stay out.
        if syslogIdent != nil && level <= .log {
            let priority: Int32 = switch level {
            case .fatal: LOG_CRIT
            case .error: LOG_ERR
            case .warning: LOG_WARNING
            default: LOG_INFO
            }
            message.replacingNewlines().withCString { m in withVaList([m]) { vsyslog(priority, "%s", $0) } }
        }
    }

    public func log(_ m: String) { write(.log, m) }
    public func warning(_ m: String) { write(.warning, m) }
    public func error(_ m: String) { write(.error, m) }
    public func debug(_ m: String) { write(.debug, m) }

    static func timestamp() -> String {
        var tv = timeval()
        gettimeofday(&tv, nil)
        var t = tv.tv_sec
        var tmv = tm()
        localtime_r(&t, &tmv)
        var buf = [CChar](repeating: 0, count: 64)
        let n = strftime(&buf, 64, "%Y-%m-%d %H:%M:%S", &tmv)
        let base = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var zbuf = [CChar](repeating: 0, count: 16)
        let zn = strftime(&zbuf, 16, "%Z", &tmv)
        let zone = String(decoding: zbuf[0..<zn].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let ms = Int(tv.tv_usec / 1000)
        let msText = ms < 10 ? "00\(ms)" : ms < 100 ? "0\(ms)" : "\(ms)"
        return "\(base).\(msText) \(zone)"
    }
}

extension String {
    /// PgBouncer turns embedded newlines into newline + tab so one entry stays one block.
    fileprivate func replacingNewlines() -> String {
        guard contains("\n") else { return self }
        return split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\n\t")
    }
}
