import Glibc
import CLibEV
import PgmuxCore

/// The new process's first step of an online restart (`pgmux -R`), before its event loop runs:
/// connect to the old process's takeover socket, say hello, receive the prepared-statement
/// definitions and the listening sockets. Blocking, with a deadline: nothing else runs yet.
public final class TakeoverHandshake {
    let fd: Int32
    let listeners: [(TakeoverListener, Int32)]
    /// The old process's statement definitions, by id.
    let definitions: [TakeoverStatement.Definition]

    private init(fd: Int32, listeners: [(TakeoverListener, Int32)], definitions: [TakeoverStatement.Definition]) {
        self.fd = fd
        self.listeners = listeners
        self.definitions = definitions
    }

    /// Where a process listening on `port` with `unix_socket_dir` = `dir` takes takeover requests.
    public static func socketPath(unixSocketDir dir: String, port: Int) -> String { "\(dir)/.s.PGSQL.\(port).takeover" }

    /// The listening sockets of the process at `path`; nil when no process listens there.
    public static func begin(path: String, timeout: Double) throws -> TakeoverHandshake? {
        let fd: Int32
        do { fd = try FdPassing.connect(path: path) } catch let e as SocketError where [ENOENT, ECONNREFUSED].contains(e.code) {
            return nil
        }
        do {
            try wait(fd, for: POLLOUT, timeout: timeout)
            let e = FdPassing.send(fd, TakeoverMessage.hello(version: TakeoverMessage.version).encode(), fds: [])
            guard e == 0 else { throw SocketError("takeover: sending hello", e) }
            var buffer: [UInt8] = [], definitions: [TakeoverStatement.Definition] = []
            while true {
                try wait(fd, for: POLLIN, timeout: timeout)
                guard case .record(let bytes, let fds) = FdPassing.receive(fd, buffer: &buffer) else {
                    throw SocketError("takeover: the old process closed the connection", 0)
                }
                let message: TakeoverMessage
                do { message = try TakeoverMessage.decode(bytes) } catch {
                    for f in fds { close(f) }
                    throw SocketError("takeover: invalid data from old process: \(error)", 0)
                }
                switch message {
                case .registry(let first, let more) where first == definitions.count && fds.isEmpty:
                    definitions += more
                case .listeners(let ls) where ls.count == fds.count:
                    return TakeoverHandshake(fd: fd, listeners: Array(zip(ls, fds)), definitions: definitions)
                case .refused(let reason):
                    throw SocketError("takeover refused by the old process: \(reason)", 0)
                default:
                    for f in fds { close(f) }
                    throw SocketError("takeover: invalid data from old process", 0)
                }
            }
        } catch {
            close(fd)
            throw error
        }
    }

    private static func wait(_ fd: Int32, for event: Int32, timeout: Double) throws {
        var pfd = pollfd(fd: fd, events: Int16(event), revents: 0)
        let n = poll(&pfd, 1, Int32(timeout * 1000))
        guard n == 1 else { throw SocketError("takeover: no answer from the old process", n == 0 ? ETIMEDOUT : errno) }
    }
}

/// The new process's side once its loop runs: tells the old process it accepts on the sockets,
/// then adopts each client the old process sends and confirms it.
final class TakeoverReceiver {
    unowned(unsafe) let loop: EventLoop
    private let channel: TakeoverChannel
    private(set) var progress = TakeoverProgress()

    init(loop: EventLoop, fd: Int32) {
        self.loop = loop
        channel = TakeoverChannel(loop: loop, fd: fd)
        progress.phase = .receiving
        channel.onMessage = { [unowned self] in self.received($0, fds: $1) }
        channel.onClose = { [unowned self] in self.ended($0) }
        channel.send(.ready)
    }

    private func received(_ message: TakeoverMessage, fds: [Int32]) {
        switch message {
        case .client(let c):
            if loop.adoptClient(c, fd: fds[0], serverFD: fds.count > 1 ? fds[1] : nil) { progress.servers += 1 }
            progress.clients += 1
            channel.send(.ack(id: c.id))
        case .server(let s):
            if loop.adoptServer(s, fd: fds[0]) { progress.servers += 1 }
        default:
            for f in fds { close(f) }
            channel.close(reason: "unexpected message from old process")
        }
    }

    /// Sends a cancel key to the old process while it still has clients; false after.
    func forwardCancel(key: UInt64) -> Bool {
        guard progress.phase == .receiving else { return false }
        channel.send(.cancel(key: key))
        return true
    }

    private func ended(_ reason: String) {
        progress.phase = .none
        if reason == TakeoverChannel.peerClosed {
            loop.log.log("old process killed, resuming work (\(progress.clients) clients, \(progress.servers) servers taken over)")
        } else {
            loop.log.warning("takeover: \(reason); clients still in the old process stay there")
        }
    }
}
