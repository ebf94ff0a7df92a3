import Glibc
import CLibEV
import PgmuxCore
import COpenSSL

/// Socket plumbing shared by client and server connections: the fd, two watchers at stable
/// addresses, the inbound relay buffer and a small queue of bytes the pooler writes itself.
/// Subclasses are final; the loop keeps the strong references, watchers carry unretained ones.
public class Endpoint {
    // Field order is memory layout: pointers and 8-byte values first, the 4-byte fd and the
    // flags last, so that a subclass's own small fields fill the same word (idle clients are
    // many; every 16 bytes saved is a malloc size class).
    /// The loop owns every endpoint. Unmanaged, so that hot paths borrow it at +0 (`withLoop`).
    /// A variable only for a client that moves to another loop (`rehome`).
    private var loopRef: Unmanaged<EventLoop>
    public let id: UInt64
    private(set) var readWatcher: UnsafeMutablePointer<ev_io>
    /// Allocated on first use: most idle clients never wait for writability.
    private var writeWatcherStorage: UnsafeMutablePointer<ev_io>?
    /// Bytes read from this socket, waiting to be forwarded to the peer.
    var inbuf = IOBuffer()
    /// Message walk over `inbuf` (passthrough state of the current message).
    var scanner = RelayScanner()
    /// Bytes the pooler generated for this socket (errors, login replies, its own queries).
    var ownOut: [UInt8] = []
    let connectTime: Double
    /// The TLS session once a handshake began; all socket I/O then goes through it.
    var ssl: OpaquePointer?
    public internal(set) var fd: Int32
    public internal(set) var isClosed = false
    /// Set when the socket should close once everything queued has been written.
    var closeAfterFlush = false
    /// Servers keep their output queue's storage (rewritten messages pass through it on every
    /// transaction with prepared statements); clients give it back (an idle client holds nothing).
    var keepsOutputCapacity = false
    /// The admin client that issued SUSPEND keeps being read (it must be able to say RESUME).
    var exemptFromSuspend = false

    /// `connectTime`: when the connection was made, for one that comes from another loop.
    init(loop: EventLoop, fd: Int32, connectTime: Double? = nil) {
        self.loopRef = Unmanaged.passUnretained(loop)
        self.id = loop.nextID()
        self.fd = fd
        self.connectTime = connectTime ?? loop.now
        readWatcher = loop.watchers.take()
    }

    var loop: EventLoop { loopRef.takeUnretainedValue() }
    @inline(__always) func withLoop<R>(_ body: (EventLoop) -> R) -> R { loopRef._withUnsafeGuaranteedRef(body) }

    deinit {
        // closeSocket stopped them; a slot handed back while libev still held it would corrupt its lists.
        stopReading()
        stopWriting()
        loop.watchers.give(readWatcher)
        if let w = writeWatcherStorage { loop.watchers.give(w) }
    }

    /// Installs the read watcher's callback (the fd may be set later for outgoing connections).
    func setupReadWatcher(_ read: pgmux_io_cb) {
        pgmux_ev_io_init(readWatcher, read, fd, Int32(EV_READ), Unmanaged.passUnretained(self).toOpaque())
    }

    /// The connection moves to `target`'s loop, the world stopped, with nothing buffered or
    /// queued: its watchers (stopped) go back to this loop's slab and come again from the target's,
    /// so that each slab only ever holds its own loop's connections' watchers.
    func rehome(to target: EventLoop, read: pgmux_io_cb) {
        precondition(inbuf.isEmpty && ownOut.isEmpty && !isClosed)
        stopReading()
        stopWriting()
        releaseBufferIfEmpty()
        loop.watchers.give(readWatcher)
        if let w = writeWatcherStorage { loop.watchers.give(w); writeWatcherStorage = nil }
        loopRef = Unmanaged.passUnretained(target)
        readWatcher = target.watchers.take()
        setupReadWatcher(read)
    }

    /// The write watcher's callback, a property of the subclass rather than of every instance.
    var writeCallback: pgmux_io_cb { fatalError("Endpoint subclasses provide writeCallback") }

    @inline(__always) func startReading() {
        if pgmux_ev_is_active(readWatcher) == 0 && !isClosed && !(loop.suspended && !exemptFromSuspend) {
            ev_io_start(loop.ev, readWatcher)
            // Bytes OpenSSL already decrypted will not wake epoll again: deliver them now.
            if let ssl, SSL_pending(ssl) > 0 { ev_feed_event(loop.ev, readWatcher, Int32(EV_READ)) }
        }
    }
    @inline(__always) func stopReading() {
        if pgmux_ev_is_active(readWatcher) != 0 { ev_io_stop(loop.ev, readWatcher) }
    }
    @inline(__always) func startWriting() {
        guard !isClosed else { return }
        let w: UnsafeMutablePointer<ev_io>
        if let existing = writeWatcherStorage { w = existing } else {
            w = loop.watchers.take()
            pgmux_ev_io_init(w, writeCallback, fd, Int32(EV_WRITE), Unmanaged.passUnretained(self).toOpaque())
            writeWatcherStorage = w
        }
        if pgmux_ev_is_active(w) == 0 { ev_io_start(loop.ev, w) }
    }
    @inline(__always) func stopWriting() {
        if let w = writeWatcherStorage, pgmux_ev_is_active(w) != 0 { ev_io_stop(loop.ev, w) }
    }

    enum ReadResult { case data, wouldBlock, eof, error(Int32), full }

    /// Reads what the socket has into `inbuf`, taking a pooled buffer if this connection has none.
    @inline(__always)
    func readSome() -> ReadResult {
        let size = withLoop { loop in
            if inbuf.base == nil { inbuf.base = loop.buffers.take(); inbuf.clear() }
            return loop.buffers.size
        }
        if inbuf.end == size { inbuf.compact() }
        let space = size - inbuf.end
        if space == 0 { return .full }
        let n = ioRead(inbuf.base! + inbuf.end, space)
        if n > 0 { inbuf.end += n; return .data }
        if n == 0 { return .eof }
        let e = errno
        if e == EAGAIN || e == EWOULDBLOCK || e == EINTR { return .wouldBlock }
        return .error(e)
    }

    /// Gives the relay buffer back to the pool when nothing is pending in it.
    @inline(__always)
    func releaseBufferIfEmpty() {
        if let b = inbuf.base, inbuf.isEmpty {
            withLoop { $0.buffers.give(b) }
            inbuf.base = nil
            inbuf.clear()
        }
    }

    /// Holds pooler-generated bytes back until the next `queue`, so that both leave in one send.
    func stage(_ bytes: [UInt8]) {
        guard !isClosed else { return }
        ownOut.append(contentsOf: bytes)
    }

    /// Queues pooler-generated bytes and writes as much as the socket takes now.
    func queue(_ bytes: [UInt8]) {
        guard !isClosed else { return }
        ownOut.append(contentsOf: bytes)
        _ = flushOwn()
    }

    /// Writes queued own bytes; true when none are left. After a partial write the rest moves to
    /// the front (rare: the socket is full), which spares every connection a "sent" offset.
    func flushOwn() -> Bool {
        var sent = 0
        while sent < ownOut.count {
            let n = ownOut.withUnsafeBytes { b in ioWrite(b.baseAddress! + sent, b.count - sent) }
            if n > 0 { sent += n; continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                ownOut.removeFirst(sent)
                startWriting()
                return false
            }
            ownOut.removeAll()
            return true  // the socket is broken; the read side will notice
        }
        ownOut.removeAll(keepingCapacity: keepsOutputCapacity)
        return true
    }

    /// Sends `[start, scanned)` of `source.inbuf` to this socket. Returns true when all was sent;
    /// on a partial write the source stops reading and this socket waits for writability.
    @inline(__always)
    func forward(from source: Endpoint) -> Bool {
        if !ownOut.isEmpty {
            // Bytes the pooler queued for this socket (a rewritten message) go out first.
            source.stopReading()
            startWriting()
            return false
        }
        let count = source.inbuf.scanned - source.inbuf.start
        if count > 0 {
            let n = ioWrite(source.inbuf.base! + source.inbuf.start, count)
            if n > 0 { source.inbuf.start += n }
            if n != count {
                if n < 0 && !(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                    return false  // broken socket: its own read watcher reports the close
                }
                source.stopReading()
                startWriting()
                return false
            }
        }
        if source.inbuf.start == source.inbuf.end {
            source.inbuf.clear()
        }
        return true
    }

    /// recv(), or SSL_read() on a TLS connection, with the same conventions (-1 + errno EAGAIN
    /// when nothing can be read now). `pgmux_recv`: the syscall without glibc's cancellation
    /// bracket (see shim.h).
    @inline(__always)
    func ioRead(_ p: UnsafeMutableRawPointer, _ n: Int) -> Int {
        guard let ssl else { return pgmux_recv(fd, p, n, 0) }
        let r = SSL_read(ssl, p, Int32(min(n, Int(Int32.max))))
        if r > 0 { return Int(r) }
        return tlsFailure(ssl, r)
    }

    /// send(), or SSL_write() on a TLS connection (`pgmux_send`, as `ioRead`).
    @inline(__always)
    func ioWrite(_ p: UnsafeRawPointer, _ n: Int) -> Int {
        guard let ssl else { return pgmux_send(fd, p, n, Int32(MSG_NOSIGNAL)) }
        let r = SSL_write(ssl, p, Int32(min(n, Int(Int32.max))))
        if r > 0 { return Int(r) }
        return tlsFailure(ssl, r)
    }

    private func tlsFailure(_ ssl: OpaquePointer, _ r: Int32) -> Int {
        switch SSL_get_error(ssl, r) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            errno = EAGAIN
            return -1
        case SSL_ERROR_ZERO_RETURN:
            return 0
        default:
            ERR_clear_error()
            errno = ECONNRESET
            return -1
        }
    }

    enum HandshakeResult { case done, pending, failed(String) }

    /// Drives a non-blocking TLS handshake; waits for the direction OpenSSL needs.
    func continueHandshake() -> HandshakeResult {
        guard let ssl else { return .failed("no TLS session") }
        let r = SSL_do_handshake(ssl)
        if r == 1 { stopWriting(); return .done }
        switch SSL_get_error(ssl, r) {
        case SSL_ERROR_WANT_READ:
            stopWriting(); startReading(); return .pending
        case SSL_ERROR_WANT_WRITE:
            startWriting(); return .pending
        default:
            let why = TLSContexts.lastError()
            ERR_clear_error()
            return .failed(why)
        }
    }

    /// Starts TLS on this socket with `ctx` (server side for clients, client side for servers).
    func beginTLS(_ ctx: OpaquePointer, accept: Bool, hostName: String? = nil, verifyHost: Bool = false) -> Bool {
        guard let s = SSL_new(ctx) else { return false }
        SSL_set_fd(s, fd)
        if accept { SSL_set_accept_state(s) } else {
            SSL_set_connect_state(s)
            if let hostName {
                _ = pgmux_SSL_set_tlsext_host_name(s, hostName)
                if verifyHost { SSL_set1_host(s, hostName) }
            }
        }
        ssl = s
        return true
    }

    /// Stops watchers and closes the socket; the loop frees the object after this iteration.
    /// Gives the socket and its TLS session up without closing them (they go on in another
    /// loop's endpoint): this endpoint is closed and freed like a closed one.
    func releaseSocket() -> (fd: Int32, ssl: OpaquePointer?) {
        let taken = (fd, ssl)
        ssl = nil
        fd = -1
        closeSocket()
        return taken
    }

    func closeSocket() {
        guard !isClosed else { return }
        stopReading(); stopWriting()
        isClosed = true
        if let ssl { SSL_free(ssl); self.ssl = nil }
        if fd >= 0 { Glibc.close(fd); fd = -1 }
        if let b = inbuf.base { loop.buffers.give(b); inbuf.base = nil; inbuf.clear() }
        loop.bury(self)
    }
}
