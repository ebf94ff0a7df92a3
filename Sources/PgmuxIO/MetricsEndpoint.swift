import Glibc
import CLibEV
import PgmuxCore

/// The optional Prometheus endpoint (`metrics_port`): a tiny HTTP/1.0 responder on the same event
/// loop. Requests are bounded (8 KiB, 5 s); anything but `GET /metrics` gets 404; every
/// connection closes after one answer, so a slow or malformed client costs one fd for 5 s at most.
final class MetricsEndpoint {
    unowned(unsafe) let loop: EventLoop
    let fd: Int32
    private let watcher = UnsafeMutablePointer<ev_io>.allocate(capacity: 1)
    var connections: [UInt64: MetricsConnection] = [:]

    convenience init(loop: EventLoop, address: Socket.Address) throws {
        self.init(loop: loop, fd: try Socket.listen(address, backlog: 64, reusePort: false))
    }

    /// Serves on a listening socket already open (one an online restart handed over).
    init(loop: EventLoop, fd: Int32) {
        self.loop = loop
        self.fd = fd
        watcher.initialize(to: ev_io())
        pgmux_ev_io_init(watcher, metricsAccept, fd, Int32(EV_READ), Unmanaged.passUnretained(self).toOpaque())
        ev_io_start(loop.ev, watcher)
    }

    func onAccept() {
        for _ in 0..<16 {
            var remote = Socket.Address()
            let cfd = Socket.accept(fd, into: &remote)
            if cfd < 0 { return }
            let c = MetricsConnection(loop: loop, fd: cfd, endpoint: self)
            connections[c.id] = c
            c.startReading()
        }
    }

    /// Closes requests that did not complete in time (called by the maintenance timer).
    func expire(now: Double) {
        for c in connections.values where now - c.connectTime > 5 { c.finish() }
    }

    /// The exposition text from the live figures of every loop (the world stopped).
    func render() -> String {
        loop.group.withWorldStopped(from: loop) { renderStopped() }
    }

    private func renderStopped() -> String {
        var text = PrometheusText(version: Version.string)
        let s = loop.config.settings
        let loops = loop.group.loops
        let pools = loops.flatMap { $0.pools.values }
        text.maxClientConn = s.maxClientConn
        // One row per pool, whatever loops hold a part of it.
        var rows: [String: PrometheusText.Pool] = [:]
        for p in pools {
            if var r = rows[p.key] {
                r.waitHistogram = r.waitHistogram.merged(with: p.waitHistogram)
                r.queryHistogram = r.queryHistogram.merged(with: p.queryHistogram)
                r.transactionHistogram = r.transactionHistogram.merged(with: p.transactionHistogram)
                if let since = p.machine.oldestWaitStart, since > 0 { r.maxWaitSeconds = max(r.maxWaitSeconds, loop.now - since) }
                rows[p.key] = r
                continue
            }
            var r = PrometheusText.Pool(database: p.databaseName, user: p.userName, mode: p.mode.rawValue)
            r.waitHistogram = p.waitHistogram
            r.queryHistogram = p.queryHistogram
            r.transactionHistogram = p.transactionHistogram
            if let since = p.machine.oldestWaitStart, since > 0 { r.maxWaitSeconds = loop.now - since }
            rows[p.key] = r
        }
        for c in loops.flatMap({ $0.clients.values }) {
            guard let p = c.pool else { continue }
            switch c.state {
            case .active, .idle:
                rows[p.key]?.clientActive += 1
                if c.pinned { rows[p.key]?.clientPinned += 1 }
            case .waiting, .waitingForWelcome: rows[p.key]?.clientWaiting += 1
            default: break
            }
        }
        for sv in loops.flatMap({ $0.servers.values }) {
            let key = sv.pool.key
            switch sv.state {
            case .active, .beingCanceled: rows[key]?.serverActive += 1
            case .idle: rows[key]?.serverIdle += 1
            case .ownQuery(let q): if q == .reset { rows[key]?.serverTesting += 1 } else { rows[key]?.serverUsed += 1 }
            case .resolving, .connecting, .tlsRequest, .tlsHandshake, .loggingIn: rows[key]?.serverLogin += 1
            case .listening, .closed: break
            }
        }
        text.pools = rows.values.sorted { ($0.database, $0.user) < ($1.database, $1.user) }
        var dbs: [String: PrometheusText.Database] = [:]
        for p in pools {
            var d = dbs[p.databaseName] ?? PrometheusText.Database(name: p.databaseName, database: p.database.dbname)
            d.stats = Stats.add(d.stats, p.counters)
            d.currentConnections = loop.group.budget.count(database: p.database.dbname)
            d.maxConnections = p.database.maxDbConnections ?? s.maxDbConnections
            d.poolSize = p.machine.limits.size
            d.paused = loop.isPaused(p.databaseName)
            d.disabled = loop.disabledDatabases.contains(p.databaseName)
            dbs[p.databaseName] = d
        }
        text.databases = dbs.values.sorted { $0.name < $1.name }
        text.clients = loops.reduce(0) { $0 + $1.clients.count }
        text.servers = loops.reduce(0) { $0 + $1.servers.count }
        text.openFDs = MetricsEndpoint.countOpenFDs()
        text.residentBytes = MetricsEndpoint.residentBytes()
        return text.render()
    }

    static func countOpenFDs() -> Int {
        guard let dir = opendir("/proc/self/fd") else { return 0 }
        defer { closedir(dir) }
        var n = 0
        while readdir(dir) != nil { n += 1 }
        return max(0, n - 3)  // ".", ".." and the directory's own fd
    }

    static func residentBytes() -> Int {
        guard let f = fopen("/proc/self/statm", "r") else { return 0 }
        defer { fclose(f) }
        var size = 0, resident = 0
        guard withUnsafeMutablePointer(to: &size, { s in withUnsafeMutablePointer(to: &resident) { r in
            vfscanfStatm(f, s, r) } }) else { return 0 }
        return resident * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    private static func vfscanfStatm(_ f: UnsafeMutablePointer<FILE>, _ size: UnsafeMutablePointer<Int>, _ resident: UnsafeMutablePointer<Int>) -> Bool {
        var buf = [CChar](repeating: 0, count: 128)
        guard fgets(&buf, 128, f) != nil else { return false }
        let text = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let parts = text.split(separator: " ")
        guard parts.count >= 2, let s = Int(parts[0]), let r = Int(parts[1]) else { return false }
        size.pointee = s
        resident.pointee = r
        return true
    }
}

/// One HTTP request to the metrics endpoint.
final class MetricsConnection: Endpoint {
    unowned(unsafe) let endpoint: MetricsEndpoint
    private var request: [UInt8] = []
    private var answered = false

    init(loop: EventLoop, fd: Int32, endpoint: MetricsEndpoint) {
        self.endpoint = endpoint
        super.init(loop: loop, fd: fd)
        setupReadWatcher(metricsReadable)
    }

    override var writeCallback: pgmux_io_cb { metricsWritable }

    func onReadable() {
        var buf = [UInt8](repeating: 0, count: 2048)
        let n = recv(fd, &buf, buf.count, 0)
        if n <= 0 {
            if n == 0 || (errno != EAGAIN && errno != EINTR) { finish() }
            return
        }
        request += buf[0..<n]
        if request.count > 8192 { respond(status: "431 Request Header Fields Too Large", body: "request too large\n"); return }
        guard !answered, let end = headerEnd() else { return }
        let line = String(decoding: request[..<end].prefix { $0 != 13 && $0 != 10 }, as: UTF8.self)
        let parts = line.split(separator: " ")
        if parts.count >= 2 && parts[0] == "GET" && (parts[1] == "/metrics" || parts[1].hasPrefix("/metrics?")) {
            respond(status: "200 OK", body: endpoint.render(), type: "text/plain; version=0.0.4; charset=utf-8")
        } else {
            respond(status: "404 Not Found", body: "pgmux serves GET /metrics\n")
        }
    }

    private func headerEnd() -> Int? {
        guard request.count >= 4 else { return nil }
        for i in 0...(request.count - 4) where request[i] == 13 && request[i + 1] == 10 && request[i + 2] == 13 && request[i + 3] == 10 {
            return i
        }
        return nil
    }

    private func respond(status: String, body: String, type: String = "text/plain; charset=utf-8") {
        answered = true
        stopReading()
        let head = "HTTP/1.0 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n"
        queue(Array(head.utf8) + Array(body.utf8))
        if ownOut.isEmpty { finish() }
    }

    func onWritable() {
        if flushOwn() { finish() }
    }

    func finish() {
        closeSocket()
        endpoint.connections[id] = nil
    }
}

private func metricsAccept(_ l: OpaquePointer?, _ w: UnsafeMutablePointer<ev_io>?, _ revents: Int32) {
    guard let w, let ctx = w.pointee.data else { return }
    Unmanaged<MetricsEndpoint>.fromOpaque(ctx)._withUnsafeGuaranteedRef { $0.onAccept() }
}

private func metricsReadable(_ l: OpaquePointer?, _ w: UnsafeMutablePointer<ev_io>?, _ revents: Int32) {
    guard let w, let ctx = w.pointee.data else { return }
    Unmanaged<MetricsConnection>.fromOpaque(ctx)._withUnsafeGuaranteedRef { $0.onReadable() }
}

private func metricsWritable(_ l: OpaquePointer?, _ w: UnsafeMutablePointer<ev_io>?, _ revents: Int32) {
    guard let w, let ctx = w.pointee.data else { return }
    Unmanaged<MetricsConnection>.fromOpaque(ctx)._withUnsafeGuaranteedRef { $0.onWritable() }
}
