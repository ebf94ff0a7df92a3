import Glibc
import CLibEV
import PgmuxCore

/// One takeover connection inside the event loop: decodes incoming records into messages, and
/// queues outgoing ones (with their descriptors) while the peer's queue is full. Any broken,
/// malformed or unexpected input ends the channel through `onClose`; the owner decides what
/// that means for the restart.
final class TakeoverChannel {
    unowned(unsafe) let loop: EventLoop
    let fd: Int32
    var onMessage: (TakeoverMessage, [Int32]) -> Void = { _, _ in }
    var onClose: (String) -> Void = { _ in }
    private let readWatcher = UnsafeMutablePointer<ev_io>.allocate(capacity: 1)
    private let writeWatcher = UnsafeMutablePointer<ev_io>.allocate(capacity: 1)
    private var outgoing: [(bytes: [UInt8], fds: [Int32])] = []
    private var buffer: [UInt8] = []
    private(set) var closed = false
    /// The close reason when the peer ended the connection in order.
    static let peerClosed = "peer closed the connection"

    init(loop: EventLoop, fd: Int32) {
        self.loop = loop
        self.fd = fd
        readWatcher.initialize(to: ev_io())
        writeWatcher.initialize(to: ev_io())
        let me = Unmanaged.passUnretained(self).toOpaque()
        pgmux_ev_io_init(readWatcher, takeoverReadable, fd, Int32(EV_READ), me)
        pgmux_ev_io_init(writeWatcher, takeoverWritable, fd, Int32(EV_WRITE), me)
        ev_io_start(loop.ev, readWatcher)
    }

    deinit {
        close(reason: nil)
        readWatcher.deallocate()
        writeWatcher.deallocate()
    }

    /// Sends `message` with `fds`, which the caller may close as soon as this returns: a message
    /// the socket cannot take now is queued with duplicates of them.
    func send(_ message: TakeoverMessage, fds: [Int32] = []) { send(encoded: message.encode(), fds: fds) }

    func send(encoded bytes: [UInt8], fds: [Int32]) {
        guard !closed else { return }
        if outgoing.isEmpty {
            let e = FdPassing.send(fd, bytes, fds: fds)
            if e == 0 { return }
            if e != EAGAIN && e != EWOULDBLOCK { close(reason: "send failed: \(String(cString: strerror(e)))"); return }
        }
        outgoing.append((bytes, fds.map { fcntl($0, F_DUPFD_CLOEXEC, 0) }))
        ev_io_start(loop.ev, writeWatcher)
    }

    private func flush() {
        while let next = outgoing.first {
            let e = FdPassing.send(fd, next.bytes, fds: next.fds)
            if e == EAGAIN || e == EWOULDBLOCK { return }
            if e != 0 { close(reason: "send failed: \(String(cString: strerror(e)))"); return }
            for f in next.fds { Glibc.close(f) }
            outgoing.removeFirst()
        }
        ev_io_stop(loop.ev, writeWatcher)
    }

    fileprivate func onWritable() { flush() }

    fileprivate func onReadable() {
        while !closed {
            switch FdPassing.receive(fd, buffer: &buffer) {
            case .wouldBlock: return
            case .closed: close(reason: Self.peerClosed); return
            case .failed(let e): close(reason: "receive failed: \(String(cString: strerror(e)))"); return
            case .record(let bytes, let fds):
                let message: TakeoverMessage
                do { message = try TakeoverMessage.decode(bytes) } catch {
                    for f in fds { Glibc.close(f) }
                    close(reason: "malformed message: \(error)")
                    return
                }
                guard fds.count == message.descriptorCount else {
                    for f in fds { Glibc.close(f) }
                    close(reason: "message with \(fds.count) descriptors, expected \(message.descriptorCount)")
                    return
                }
                onMessage(message, fds)
            }
        }
    }

    /// Stops and closes; `reason` (nil when the owner closes it on purpose) goes to `onClose`.
    func close(reason: String?) {
        guard !closed else { return }
        closed = true
        ev_io_stop(loop.ev, readWatcher)
        ev_io_stop(loop.ev, writeWatcher)
        Glibc.close(fd)
        for m in outgoing { for f in m.fds { Glibc.close(f) } }
        outgoing.removeAll()
        buffer = []
        if let reason { onClose(reason) }
    }
}

private func takeoverReadable(_ l: OpaquePointer?, _ w: UnsafeMutablePointer<ev_io>?, _ revents: Int32) {
    guard let w, let ctx = w.pointee.data else { return }
    Unmanaged<TakeoverChannel>.fromOpaque(ctx)._withUnsafeGuaranteedRef { $0.onReadable() }
}

private func takeoverWritable(_ l: OpaquePointer?, _ w: UnsafeMutablePointer<ev_io>?, _ revents: Int32) {
    guard let w, let ctx = w.pointee.data else { return }
    Unmanaged<TakeoverChannel>.fromOpaque(ctx)._withUnsafeGuaranteedRef { $0.onWritable() }
}
