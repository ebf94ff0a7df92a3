import Glibc

/// Process-level chores done before the loop starts: daemonizing, the pid file, dropping root.
enum ProcessSetup {
    static func fail(_ message: String) -> Never {
        let line = message + "\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
        exit(1)
    }

    /// Switches to `name`'s uid/gid.
    static func dropPrivileges(to name: String) {
        guard let pw = getpwnam(name) else { fail("could not find user '\(name)'") }
        let uid = pw.pointee.pw_uid, gid = pw.pointee.pw_gid
        if setgid(gid) != 0 || initgroups(name, gid) != 0 || setuid(uid) != 0 {
            fail("could not switch to user '\(name)': \(String(cString: strerror(errno)))")
        }
    }

    /// Refuses to start when the pid file names a live process; removes a stale one.
    static func checkPidFile(_ path: String, log: (String) -> Void) {
        guard !path.isEmpty, let f = fopen(path, "r") else { return }
        var buf = [UInt8](repeating: 0, count: 32)
        let n = fread(&buf, 1, 31, f)
        fclose(f)
        let text = String(decoding: buf[0..<n], as: UTF8.self)
        if let pid = Int32(text.trimmingWhitespace()), pid > 0, kill(pid, 0) == 0 {
            fail("pidfile \(path) exists, another instance running? (pid \(pid))")
        }
        log("stale pidfile, removing")
        unlink(path)
    }

    static func writePidFile(_ path: String) {
        guard !path.isEmpty else { return }
        let text = "\(getpid())\n"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { fail("cannot write pidfile \(path): \(String(cString: strerror(errno)))") }
        _ = text.withCString { write(fd, $0, strlen($0)) }
        close(fd)
    }

    /// Double fork into the background (before any thread or event loop exists).
    static func daemonize() {
        var pid = fork()
        if pid < 0 { fail("fork failed") }
        if pid > 0 { _exit(0) }
        setsid()
        pid = fork()
        if pid < 0 { fail("fork failed") }
        if pid > 0 { _exit(0) }
        let devnull = open("/dev/null", O_RDWR)
        if devnull >= 0 { dup2(devnull, 0); dup2(devnull, 1); dup2(devnull, 2); if devnull > 2 { close(devnull) } }
    }

    /// Raises the open-files limit as far as the hard limit allows.
    static func raiseFileLimit(wanted: Int, log: (String) -> Void) {
        var rl = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) == 0 else { return }
        let want = rlim_t(wanted)
        if rl.rlim_cur >= want { return }
        rl.rlim_cur = min(want, rl.rlim_max)
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
        if rl.rlim_cur < want {
            log("file descriptor limit \(rl.rlim_cur) (hard limit) is below the \(wanted) that max_client_conn needs")
        }
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\n" || c == "\t" || c == "\r" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\n" || c == "\t" || c == "\r" { s.removeLast() }
        return String(s)
    }
}
