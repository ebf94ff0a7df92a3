import Glibc
import CLibEV
import PgmuxCore

/// A listening socket. Accepts in a loop until EAGAIN; when the process runs out of file
/// descriptors it pauses accepting for a moment instead of spinning, and says so once.
final class Listener {
    unowned(unsafe) let loop: EventLoop
    let fd: Int32
    let description: String
    /// A Unix socket (clients are local); its file, when pgmux created it, is `unixPath`.
    let isUnix: Bool
    /// Removed on close; nil for TCP and for sockets systemd handed over.
    let unixPath: String?
    private let watcher = UnsafeMutablePointer<ev_io>.allocate(capacity: 1)
    private let pauseTimer = UnsafeMutablePointer<ev_timer>.allocate(capacity: 1)
    private var closed = false
    /// Loop 0's listener owns the socket; the other loops watch the same socket (the kernel gives
    /// each connection to one of the loops whose accept comes first) and only stop watching.
    let ownsSocket: Bool
    /// An online restart gave this socket to a new process: this one no longer accepts on it, and
    /// leaves its socket file in place when it exits.
    var handedOver = false {
        didSet { if handedOver { ev_io_stop(loop.ev, watcher); ev_timer_stop(loop.ev, pauseTimer) } else { resume() } }
    }
    /// TCP options set on this (TCP) listener, which every accepted connection inherits; nil for
    /// a Unix socket.
    private var tuning: TCPTuning?

    init(loop: EventLoop, fd: Int32, description: String, isUnix: Bool = false, unixPath: String? = nil,
         ownsSocket: Bool = true) {
        self.loop = loop
        self.ownsSocket = ownsSocket
        self.fd = fd
        self.description = description
        self.unixPath = unixPath
        self.isUnix = isUnix || unixPath != nil
        watcher.initialize(to: ev_io())
        pauseTimer.initialize(to: ev_timer())
        let me = Unmanaged.passUnretained(self).toOpaque()
        pgmux_ev_io_init(watcher, listenerReadable, fd, Int32(EV_READ), me)
        pgmux_ev_timer_init(pauseTimer, listenerResume, 0.5, 0, me)
        ev_io_start(loop.ev, watcher)
        if !self.isUnix && ownsSocket { retune(loop.config.settings) }
    }

    /// The same socket, watched by another loop.
    func shared(with other: EventLoop) -> Listener {
        Listener(loop: other, fd: fd, description: description, isUnix: isUnix, unixPath: unixPath, ownsSocket: false)
    }

    /// Sets the tcp_* settings on the listener (at start and on RELOAD): connections accepted
    /// from then on have them without a setsockopt of their own. Going back from a
    /// tcp_socket_buffer to 0 (the kernel's auto-sizing) needs a restart: a listener's buffer size,
    /// once set, stays fixed.
    func retune(_ s: borrowing Settings) {
        let new = TCPTuning(s)
        let old = tuning ?? .kernelDefault
        if new.socketBuffer == 0 && old.socketBuffer != 0 {
            loop.log.warning("\(description): tcp_socket_buffer = 0 applies to new connections after a restart")
        }
        Socket.tune(fd, to: new, from: old)
        tuning = new
    }

    func onReadable() {
        // With several loops on one socket, one connection per wake-up: a loop busy relaying
        // then leaves the next ones to the others instead of draining the whole backlog.
        for _ in 0..<(loop.group.count > 1 ? 1 : 64) {
            var remote = Socket.Address()
            let cfd = Socket.accept(fd, into: &remote)
            if cfd < 0 {
                let e = errno
                if e == EAGAIN || e == EWOULDBLOCK || e == EINTR || e == ECONNABORTED { return }
                if e == EMFILE || e == ENFILE {
                    loop.log.warning("accept() failed: \(String(cString: strerror(e))); new connections paused for 0.5 s")
                    ev_io_stop(loop.ev, watcher)
                    ev_timer_start(loop.ev, pauseTimer)
                    return
                }
                loop.log.warning("accept() failed: \(String(cString: strerror(e)))")
                return
            }
            if isUnix { remote = Socket.Address(); remote.storage.ss_family = sa_family_t(AF_UNIX) }
            // With tcp_defer_accept the startup packet is already here (PgBouncer's sbuf_accept
            // reads at once too): one wait and wake-up fewer per connection.
            let readNow = !isUnix && loop.config.settings.tcpDeferAccept
            // The kernel wakes whichever loop it likes: connections made one after the other
            // (an application's pool filling up) could all land on one. A loop with two
            // clients more than the least loaded one hands the new one over, before reading.
            if let target = loop.group.lessLoadedLoop(than: loop.index) {
                let address = remote
                loop.group.post(to: target) { $0.adoptAccepted(fd: cfd, remote: address, readNow: readNow) }
                continue
            }
            loop.adoptAccepted(fd: cfd, remote: remote, readNow: readNow)
        }
    }

    func resume() {
        if !closed && !loop.suspended && !handedOver { ev_io_start(loop.ev, watcher) }
    }

    /// SUSPEND: connections wait in the kernel's backlog until RESUME.
    func pause() { ev_io_stop(loop.ev, watcher) }

    func close() {
        guard !closed else { return }
        closed = true
        ev_io_stop(loop.ev, watcher)
        ev_timer_stop(loop.ev, pauseTimer)
        guard ownsSocket else { return }
        Glibc.close(fd)
        if let unixPath, !handedOver { unlink(unixPath) }
    }
}

private func listenerReadable(_ l: OpaquePointer?, _ w: UnsafeMutablePointer<ev_io>?, _ revents: Int32) {
    guard let w, let ctx = w.pointee.data else { return }
    Unmanaged<Listener>.fromOpaque(ctx)._withUnsafeGuaranteedRef { $0.onReadable() }
}

private func listenerResume(_ l: OpaquePointer?, _ w: UnsafeMutablePointer<ev_timer>?, _ revents: Int32) {
    guard let w, let ctx = w.pointee.data else { return }
    Unmanaged<Listener>.fromOpaque(ctx)._withUnsafeGuaranteedRef { $0.resume() }
}
