import Glibc
import PgmuxCore
import PgmuxIO

extension ProcessSetup {
    /// `-R`: the running process's listening sockets (PgBouncer's preconditions and words);
    /// nil when there is no running process, which is not an error.
    static func takeOver(_ s: Settings, log: (String) -> Void) -> TakeoverHandshake? {
        if s.unixSocketDir.isEmpty { fail("cannot reboot if unix dir not configured") }
        if s.unixSocketDir.hasPrefix("@") { fail("cannot reboot with abstract Unix socket") }
        if getenv("LISTEN_FDS") != nil { fail("cannot reboot under service manager") }
        let path = TakeoverHandshake.socketPath(unixSocketDir: s.unixSocketDir, port: s.listenPort)
        log("takeover_init: launching connection")
        do {
            guard let h = try TakeoverHandshake.begin(path: path, timeout: 10) else {
                log("old process not found, try to continue normally")
                return nil
            }
            return h
        } catch {
            fail("takeover failed: \(error)")
        }
    }

    /// Removes the pid file if it still names this process (after an online restart it names
    /// the new one).
    static func removePidFile(_ path: String) {
        guard !path.isEmpty, let f = fopen(path, "r") else { return }
        var buf = [UInt8](repeating: 0, count: 32)
        let n = fread(&buf, 1, 31, f)
        fclose(f)
        if Int32(String(decoding: buf[0..<n], as: UTF8.self).trimmingWhitespace()) == getpid() { unlink(path) }
    }
}
