import Glibc
import CLibEV
import PgmuxCore

/// One application connection: its login, then the relay of its messages to whichever server the
/// pool lends it. States follow PgBouncer's client lists (login, idle, waiting, active).
public final class ClientConnection: Endpoint {
    public enum State: Equatable {
        /// Waiting for the startup packet (possibly after answering SSLRequest with 'N').
        case startup
        /// Answered SSLRequest with 'S'; the TLS handshake is in progress.
        case tlsHandshake
        /// Password / SASL exchange in progress.
        case authenticating
        /// Authenticated; the pool has no server parameters to greet with yet.
        case waitingForWelcome
        /// Logged in, not linked to a server.
        case idle
        /// Has a request buffered and waits in its pool's queue for a server.
        case waiting
        /// Linked to a server.
        case active
        case closing
    }

    // Layout: the address (19 bytes, 4-aligned) starts in the word that ends Endpoint's fields and
    // the one-byte fields fill its tail, so the object stays in malloc's 256-byte class.
    let remote: PeerAddress
    public internal(set) var state: State = .startup
    /// Admin console rights, for a client of the `pgbouncer`/`pgmux` pseudo-database.
    var adminRole: AdminRole?
    /// Named prepared statements across servers (transaction/statement mode with
    /// max_prepared_statements > 0); off when they pass through untouched.
    var tracksStatements = false
    /// What this client is counted in, and how its TLS began, one bit each (the object has no
    /// room for more bytes).
    private var countFlags: UInt8 = 0
    /// Counted against max_client_conn (from a valid startup packet until close).
    var countedAsLoggedIn: Bool { get { flag(1) } set { setFlag(1, newValue) } }
    /// Counted against max_db_client_connections / max_user_client_connections (LoginHandler).
    var countedInDatabase: Bool { get { flag(2) } set { setFlag(2, newValue) } }
    var countedAsUser: Bool { get { flag(4) } set { setFlag(4, newValue) } }
    /// Its first byte has been looked at for a direct TLS handshake (LoginHandler.checkDirectTLS).
    var firstByteChecked: Bool { get { flag(8) } set { setFlag(8, newValue) } }
    /// Began TLS without SSLRequest (sslnegotiation=direct): ALPN is checked after the handshake.
    var directTLS: Bool { get { flag(16) } set { setFlag(16, newValue) } }
    /// The `replication` startup parameter (bits 32 and 64: the mode's raw value).
    var replication: ReplicationMode {
        get { ReplicationMode(rawValue: (countFlags >> 5) & 3) ?? .none }
        set { countFlags = countFlags & ~96 | newValue.rawValue << 5 }
    }
    /// Keeps its server between transactions: the session holds state that cannot be replayed
    /// elsewhere (`SessionPins`).
    var pinned: Bool { get { flag(128) } set { setFlag(128, newValue) } }
    @inline(__always) private func flag(_ bit: UInt8) -> Bool { countFlags & bit != 0 }
    @inline(__always) private func setFlag(_ bit: UInt8, _ on: Bool) { if on { countFlags |= bit } else { countFlags &= ~bit } }
    /// query_wait_notify was sent for the current wait.
    var toldToWait = false
    var isUnixSocket: Bool { remote.isUnix }
    public internal(set) var user = ""
    public internal(set) var database = ""
    /// Tracked parameters this client asked for (lowercased name → value).
    var params: [String: String] = [:]
    /// Authentication in progress (only while logging in: it is large, and idle clients are many).
    var login: LoginState?
    // Borrowed (the loop owns pools and servers), as Unmanaged so that the relay reaches them at
    // +0; an `unowned(unsafe)` field read costs a retain/release pair.
    private var poolRef: Unmanaged<Pool>?
    private var serverRef: Unmanaged<ServerConnection>?
    var pool: Pool? {
        get { poolRef?.takeUnretainedValue() }
        set { poolRef = newValue.map(Unmanaged.passUnretained) }
    }
    var server: ServerConnection? {
        get { serverRef?.takeUnretainedValue() }
        set { serverRef = newValue.map(Unmanaged.passUnretained) }
    }
    /// The key this client was given in BackendKeyData.
    var cancelKey: UInt64 = 0
    /// When the current wait for a server began (state `.waiting`) or, once linked (`.active`),
    /// when the server was lent (transaction time in the stats). One field: a client is never both.
    var stateSince: Double = 0
    var queryStart: Double = 0
    /// Last time this client sent anything (client_idle_timeout).
    var lastActivity: Double = 0
    /// The client's statement names and settings, allocated with its first Parse/Bind/Describe/
    /// Close or SET.
    var sessionBox: ClientSession?

    init(loop: EventLoop, fd: Int32, remote: Socket.Address) {
        self.remote = PeerAddress(remote)
        super.init(loop: loop, fd: fd)
        setupReadWatcher(clientReadable)
    }

    override var writeCallback: pgmux_io_cb { clientWritable }

    /// `C-0x…: db/user@addr:port` prefix as PgBouncer logs it.
    var logPrefix: String {
        let db = database.isEmpty ? "(nodb)" : database, u = user.isEmpty ? "(nouser)" : user
        let addr = isUnixSocket ? "unix" : remote.description
        return "C-0x\(String(id, radix: 16)): \(db)/\(u)@\(addr)"
    }

    // MARK: reading

    func onReadable() {
        if state == .tlsHandshake { loop.login.continueTLS(self); return }
        if state == .startup, !firstByteChecked, loop.login.checkDirectTLS(self) { return }
        switch readSome() {
        case .data: lastActivity = loop.now
        case .wouldBlock: return
        case .full: stopReading(); return
        case .eof:
            disconnect(reason: state == .startup ? "client unexpected eof" : "client close request", notify: false)
            return
        case .error(let e):
            disconnect(reason: "read failed: \(String(cString: strerror(e)))", notify: false)
            return
        }
        switch state {
        case .startup:
            loop.login.handleStartup(self)
            releaseLoginBuffer()
        case .tlsHandshake: break
        case .authenticating:
            loop.login.handleAuthMessage(self)
            releaseLoginBuffer()
        case .waiting:
            break  // kept in the buffer until a server is lent; reading on notices a client that leaves
        case .waitingForWelcome, .closing: stopReading()
        case .idle:
            if adminRole != nil { loop.admin.handle(self) } else { requestServer() }
        case .active: relay()
        }
    }

    /// A login waits a round trip for each password message: it holds no relay buffer meanwhile,
    /// or a login storm would pin one per client in flight (and fragment the heap with them).
    private func releaseLoginBuffer() {
        if inbuf.isEmpty && (state == .startup || state == .authenticating) { releaseBufferIfEmpty() }
    }

    /// Called when the client sent data while unlinked: queue for a server of its pool.
    /// The read watcher stays on: stopping and restarting it per transaction costs libev an
    /// epoll_ctl each time, and a queued client that disconnects is noticed at once.
    func requestServer() {
        guard let poolRef else { return }
        if answeredWithoutServer() { return }
        if let base = inbuf.base, inbuf.pending >= 5, base.load(fromByteOffset: inbuf.start, as: UInt8.self) == UInt8(ascii: "X") {
            // Terminate between transactions: nothing to forward, no server to take.
            disconnect(reason: "client close request", notify: false)
            return
        }
        state = .waiting
        stateSince = loop.now
        toldToWait = false
        poolRef._withUnsafeGuaranteedRef { $0.enqueue(self) }
    }

    /// Requests that need no server are answered here: leading Flushes (nothing is owed), and
    /// Parse + Sync batches of statements some server already accepted (see
    /// `PreparedStatementRewriter.answerWithoutServer`). True when nothing is left that needs a
    /// server. The first byte decides cheaply for every other request.
    private func answeredWithoutServer() -> Bool {
        guard sessionBox?.oversizedParse == nil else { return false }
        // Batches and Flushes alternate (libpq's pipeline exit sends Sync + Flush): until what is
        // left needs a server, or nothing is left.
        while let base = inbuf.base, inbuf.pending >= 5 {
            let pending = UnsafeRawBufferPointer(start: base + inbuf.start, count: inbuf.pending)
            let flushes = FlushWithoutServer.leadingBytes(pending)
            if flushes > 0 {
                inbuf.start += flushes
                inbuf.scanned = inbuf.start
                continue
            }
            let first = pending[0]
            if let waits = NotificationHub.serve(self, pending) {
                if waits { return true }  // LISTEN: reading and serving resume once it is answered
                continue
            }
            if tracksStatements, first == UInt8(ascii: "Q"),
               let answer = session.rewriter.answerDeallocateWithoutServer(pending, maxPacketSize: loop.maxPacketSize) {
                inbuf.start += answer.consumed
                inbuf.scanned = inbuf.start
                queue(answer.reply)
                continue
            }
            guard tracksStatements, first == UInt8(ascii: "P") || first == UInt8(ascii: "S"),
                  let answer = session.rewriter.answerWithoutServer(pending, registry: loop.preparedStatements,
                                                                           maxPacketSize: loop.maxPacketSize)
            else { return false }
            inbuf.start += answer.consumed
            inbuf.scanned = inbuf.start
            pool?.counters.psClientParseCount &+= UInt64(answer.parses)
            queue(answer.reply)
        }
        return finishedWithoutServer()
    }

    /// After answering without a server: true when no byte is left (a partial message waits for
    /// more input, read while idle).
    private func finishedWithoutServer() -> Bool {
        guard inbuf.isEmpty else { return false }
        inbuf.clear()
        releaseBufferIfEmpty()
        return true
    }

    /// Walks newly read client messages, counts requests on the server's tracker, forwards them.
    /// With prepared-statement tracking, Parse/Bind/Describe/Close are read whole and rewritten.
    @inline(__always)
    func relay() {
        guard let serverRef else { return }
        serverRef._withUnsafeGuaranteedRef { server in
            server.withPool { pool in withLoop { loop in relay(to: server, of: pool, in: loop) } }
        }
    }

    /// The relay proper; its references are borrowed (+0) for the whole walk.
    @inline(__always)
    private func relay(to server: ServerConnection, of pool: Pool, in loop: EventLoop) {
        if server.state != .active { stopReading(); return }  // parameter sync in progress
        if sessionBox?.oversizedParse != nil {
            switch gatherOversizedParse(for: server, of: pool, in: loop) {
            case .whole: break
            case .needMore: return finishRelayWalk(to: server)
            case .failed: return
            }
        }
        let base = UnsafeRawPointer(inbuf.base!)
        var pos = inbuf.scanned
        let maxPacket = loop.maxPacketSize
        let rewriting = tracksStatements
        let refusesQuery = loop.refusesSimpleQuery
        // Transaction and statement pooling read Queries and Parses whole: SET/RESET follow the
        // client, pinning state is noticed. Session pooling reads them until the session is marked
        // as changed (`DirtySession`), and no longer then.
        let sessionMode = pool.mode == .session
        let readsQueries = !refusesQuery && (rewriting || !sessionMode || !server.sessionDirty)
        scan: while true {
            let step = scanner.next(base, position: pos, end: inbuf.end, capacity: loop.buffers.size,
                                    maxPacketSize: maxPacket,
                                    wantWhole: { (($0 == UInt8(ascii: "Q") || $0 == UInt8(ascii: "P")) && readsQueries)
                                                 || (rewriting && ($0 == UInt8(ascii: "P") || $0 == UInt8(ascii: "B")
                                                                   || $0 == UInt8(ascii: "D") || $0 == UInt8(ascii: "C"))) },
                                    wantHeader: { _ in true })
            switch step {
            case .needMore(let p):
                pos = p
                break scan
            case .header(let type, let start, let total):
                if sessionMode && (type == UInt8(ascii: "Q") || type == UInt8(ascii: "P") || type == UInt8(ascii: "F")) {
                    server.sessionDirty = true  // not scanned (too large, or a function call)
                }
                if type == UInt8(ascii: "Q") && refusesQuery {
                    // disable_pqexec: what came before the Query goes on, the Query never does.
                    scanner.passthrough = 0
                    inbuf.scanned = start
                    inbuf.end = start
                    _ = server.forward(from: self)
                    loop.log.error("\(logPrefix) client used \"Query\" packet type")
                    sendError("PQexec disallowed")
                    return
                }
                if type == UInt8(ascii: "X") {
                    // Terminate: forward what came before it, never the Terminate itself.
                    scanner.passthrough = 0
                    inbuf.scanned = start
                    inbuf.end = start
                    _ = server.forward(from: self)
                    disconnect(reason: "client close request", notify: false)
                    return
                }
                if rewriting {
                    switch type {
                    case UInt8(ascii: "S"), UInt8(ascii: "Q"), UInt8(ascii: "F"):
                        server.expectations.append(.sync)
                    case UInt8(ascii: "B"):
                        server.retry.cancel()
                        // Larger than the buffer: rewrite its names, stream the rest.
                        let prefix = UnsafeRawBufferPointer(start: base + start + 5, count: inbuf.end - start - 5)
                        if let (rw, consumed) = session.rewriter.rewriteBindPrefix(prefix, bodyLength: total - 5,
                                                                              server: &server.statementCache,
                                                                              registry: loop.preparedStatements) {
                            server.expectations.append(contentsOf: rw.expectations)
                            countStatementTraffic(type, rw)
                            if rw.mayPin { server.pinCheck = true }
                            stage(upTo: start, then: rw.replacement!, for: server)
                            scanner.passthrough = total - 5 - consumed
                            inbuf.start = start + 5 + consumed
                            inbuf.scanned = inbuf.start
                            server.tracker.sent(type)
                            pos = inbuf.start
                            continue scan
                        }
                    case UInt8(ascii: "P"):
                        // Larger than the relay buffer: gathered whole, then rewritten like any Parse.
                        stage(upTo: start, then: [], for: server)
                        scanner.passthrough = 0
                        session.oversizedParse = ([], total)
                        switch gatherOversizedParse(for: server, of: pool, in: loop) {
                        case .whole: pos = inbuf.start; continue scan
                        case .needMore: pos = inbuf.start; break scan
                        case .failed: return
                        }
                    case UInt8(ascii: "C"):
                        server.expectations.append(.close(swallow: false))
                    default:
                        break
                    }
                }
                if server.retry.isCapturing {
                    if inbuf.end - start >= total { server.retry.add(type, UnsafeRawBufferPointer(start: base + start, count: total)) }
                    else { server.retry.cancel() }
                }
                server.tracker.sent(type)
                if queryStart == 0 { queryStart = loop.now }
                pos = start
            case .message(let type, let start, let total) where type == UInt8(ascii: "Q"):
                server.retry.cancel()
                // A simple Query in transaction or statement pooling: SET/RESET are followed,
                // and with prepared-statement tracking SQL PREPARE/EXECUTE/DEALLOCATE rewritten.
                let body = UnsafeRawBufferPointer(start: base + start + 5, count: total - 5)
                if sessionMode {
                    if DirtySession.mayChange(body) { server.sessionDirty = true }
                } else {
                    if server.tracker.isQuiet { followSessionCommand(body, on: server, in: loop) }
                    if SessionPins.mayPin(body) { server.pinCheck = true }
                }
                server.tracker.sent(type)
                if queryStart == 0 { queryStart = loop.now }
                pos = start + total
                guard rewriting else { break }
                let rw = session.rewriter.rewriteQuery(body, server: &server.statementCache, registry: loop.preparedStatements,
                                                       inFailedTransaction: server.tracker.status == UInt8(ascii: "E"))
                if rw.mayPin { server.pinCheck = true }
                server.expectations.append(contentsOf: rw.expectations)
                server.expectations.append(.sync)
                if let bytes = rw.replacement {
                    stage(upTo: start, then: bytes, for: server)
                    inbuf.start = start + total
                    inbuf.scanned = inbuf.start
                }
            case .message(let type, let start, let total) where !rewriting:
                // A Parse read whole for its SET/RESET and pinning state only; it passes unchanged.
                let body = UnsafeRawBufferPointer(start: base + start + 5, count: total - 5)
                if sessionMode {
                    // A named statement outlives the session's client; an unnamed one, its text tells.
                    if body.first != 0 || DirtySession.mayChange(body) { server.sessionDirty = true }
                } else {
                    if server.tracker.isQuiet { followSessionCommand(parse: body, on: server, in: loop) }
                    if SessionPins.mayPin(body) { server.pinCheck = true }
                }
                server.tracker.sent(type)
                if queryStart == 0 { queryStart = loop.now }
                pos = start + total
            case .message(let type, let start, let total):
                // P, B, D or C with prepared-statement tracking on.
                let body = UnsafeRawBufferPointer(start: base + start + 5, count: total - 5)
                if type == UInt8(ascii: "P") {
                    if server.tracker.isQuiet { followSessionCommand(parse: body, on: server, in: loop) }
                    if SessionPins.mayPin(body) { server.pinCheck = true }
                }
                switch session.rewriter.rewrite(type: type, body: body, server: &server.statementCache,
                                           registry: loop.preparedStatements) {
                case .failure(.nameInUse):
                    sendError("prepared statement name is already in use")
                    return
                case .failure(.malformed(let what)):
                    protocolError("malformed \(what) message")
                    return
                case .success(let rw):
                    if type == UInt8(ascii: "B") {
                        // A batch that may be sent again after a stale plan (`StalePlanRetry`).
                        if let id = rw.statement, rw.expectations.isEmpty, let bytes = rw.replacement,
                           server.tracker.isQuiet, server.tracker.status == UInt8(ascii: "I") {
                            server.retry.begin(statement: id, bind: bytes)
                        } else {
                            server.retry.cancel()
                        }
                    } else if server.retry.isCapturing {
                        if rw.replacement == nil { server.retry.add(type, UnsafeRawBufferPointer(start: base + start, count: total)) }
                        else { server.retry.cancel() }
                    }
                    server.expectations.append(contentsOf: rw.expectations)
                    countStatementTraffic(type, rw)
                    if rw.mayPin { server.pinCheck = true }
                    server.tracker.sent(type)
                    if queryStart == 0 { queryStart = loop.now }
                    if let bytes = rw.replacement {
                        stage(upTo: start, then: bytes, for: server)
                        inbuf.start = start + total
                        inbuf.scanned = inbuf.start
                    }
                    pos = start + total
                }
            case .invalid(let length):
                protocolError("invalid packet length \(length)")
                return
            }
        }
        if server.retry.isCapturing { server.retry.cancel() }  // the batch is split across reads
        pool.counters.clientBytes &+= UInt64(max(0, pos - inbuf.scanned))
        inbuf.scanned = pos
        finishRelayWalk(to: server)
    }

    /// A Query that is one SET/RESET of a parameter PostgreSQL does not report: the server
    /// notes it, to be settled by its reply (`PendingSessionCommands`). Only when nothing else is
    /// in flight, so that the next ReadyForQuery answers it.
    private func followSessionCommand(_ body: UnsafeRawBufferPointer, on server: ServerConnection, in loop: EventLoop) {
        guard let last = body.last, last == 0 else { return }
        let command = SessionCommand.classify(UnsafeRawBufferPointer(rebasing: body.dropLast()))
        switch command {
        case .other: return
        case .set(let key, _), .reset(let key): if loop.isTracked(key) { return }
        case .resetAll: break
        }
        server.pendingSession.sent(command, inTransaction: server.tracker.status != UInt8(ascii: "I"))
    }

    /// The same for the text of an unnamed Parse (drivers of the extended protocol send SET so).
    private func followSessionCommand(parse body: UnsafeRawBufferPointer, on server: ServerConnection, in loop: EventLoop) {
        guard body.first == 0, let end = body.dropFirst().firstIndex(of: 0) else { return }
        followSessionCommand(UnsafeRawBufferPointer(rebasing: body[1...end]), on: server, in: loop)
    }

    /// Sends what the walk staged or left to forward.
    @inline(__always)
    private func finishRelayWalk(to server: ServerConnection) {
        if !server.ownOut.isEmpty {
            // Rewritten messages are staged: append what follows and send it all in one write.
            stage(upTo: inbuf.scanned, then: [], for: server)
            _ = server.flushOwn()
            if !server.ownOut.isEmpty { stopReading(); return }
            if inbuf.isEmpty { inbuf.clear(); releaseBufferIfEmpty() }
            return
        }
        if server.forward(from: self) {
            if inbuf.isEmpty { releaseBufferIfEmpty() }
        }
    }

    private enum Gathered { case whole, needMore, failed }

    /// Moves the next bytes of an oversized Parse out of the relay buffer; once it is whole, it is
    /// rewritten and staged for the server.
    private func gatherOversizedParse(for server: ServerConnection, of pool: Pool, in loop: EventLoop) -> Gathered {
        guard let box = sessionBox, var parse = box.oversizedParse, let base = inbuf.base else { return .needMore }
        box.oversizedParse = nil  // no copy-on-write of the bytes while they are appended
        let take = min(parse.total - parse.bytes.count, inbuf.end - inbuf.start)
        parse.bytes.append(contentsOf: UnsafeRawBufferPointer(start: base + inbuf.start, count: take))
        pool.counters.clientBytes &+= UInt64(take)
        inbuf.start += take
        inbuf.scanned = inbuf.start
        if inbuf.isEmpty { inbuf.clear() }
        guard parse.bytes.count == parse.total else { box.oversizedParse = parse; return .needMore }
        let result = parse.bytes.withUnsafeBytes { raw in
            box.rewriter.rewrite(type: UInt8(ascii: "P"), body: UnsafeRawBufferPointer(rebasing: raw[5...]),
                                 server: &server.statementCache, registry: loop.preparedStatements)
        }
        switch result {
        case .failure(.nameInUse):
            sendError("prepared statement name is already in use")
            return .failed
        case .failure(.malformed(let what)):
            protocolError("malformed \(what) message")
            return .failed
        case .success(let rw):
            server.expectations.append(contentsOf: rw.expectations)
            countStatementTraffic(UInt8(ascii: "P"), rw)
            server.tracker.sent(UInt8(ascii: "P"))
            if queryStart == 0 { queryStart = loop.now }
            server.ownOut.append(contentsOf: rw.replacement ?? parse.bytes)
            return .whole
        }
    }

    /// SHOW STATS' client parses, server parses (statements prepared on a server) and binds.
    private func countStatementTraffic(_ type: UInt8, _ rw: PreparedStatementRewriter.Rewrite) {
        guard let pool else { return }
        if type == UInt8(ascii: "P") { pool.counters.psClientParseCount &+= 1 }
        if type == UInt8(ascii: "B") { pool.counters.psBindCount &+= 1 }
        for case .parse(_?, _, _) in rw.expectations { pool.counters.psServerParseCount &+= 1 }
    }

    /// Moves the untouched bytes before a rewritten message, then its replacement, into the
    /// server's output queue, so order holds without a write per message.
    private func stage(upTo start: Int, then replacement: [UInt8], for server: ServerConnection) {
        if start > inbuf.start {
            server.ownOut.append(contentsOf: UnsafeRawBufferPointer(start: inbuf.base! + inbuf.start, count: start - inbuf.start))
            inbuf.start = start
            if inbuf.scanned < start { inbuf.scanned = start }
        }
        server.ownOut.append(contentsOf: replacement)
    }

    func onWritable() {
        if state == .tlsHandshake { loop.login.continueTLS(self); return }
        guard flushOwn() else { return }
        if closeAfterFlush { finishClose(); return }
        if let server {
            guard forward(from: server) else { return }
            stopWriting()
            // A walk that stopped to cut out a reply resumes now that what preceded it is out.
            if case .active = server.state, server.inbuf.scanned < server.inbuf.end { server.relay(); return }
            server.afterClientFlushed()
        } else {
            stopWriting()
        }
    }

    // MARK: pooler messages

    /// Sends an ErrorResponse; FATAL errors close the connection once written.
    func sendError(_ message: String, code: String = SQLState.protocolViolation, fatal: Bool = true) {
        if loop.config.settings.logPoolerErrors {
            loop.log.warning("\(logPrefix) pooler error: \(message)")
        }
        var m = MessageBuilder()
        m.errorResponse(severity: fatal ? "FATAL" : "ERROR", code: code, message: message)
        if !fatal { m.readyForQuery(UInt8(ascii: "I")) }
        queue(m.bytes)
        if fatal {
            disconnect(reason: message, notify: false)
        }
    }

    func protocolError(_ detail: String) {
        sendError("protocol violation: \(detail)")
    }

    /// Sends the welcome: AuthenticationOk, the pool's server parameters with this client's own
    /// values in place, a fresh cancel key, ReadyForQuery.
    func sendWelcome(serverParameters: [(String, String)]) {
        let welcome: Welcome
        if let pool {
            welcome = pool.welcomes.welcome(serverParameters: serverParameters, clientParameters: params,
                                            isTracked: loop.isTracked, share: loop.interned)
        } else {
            welcome = Welcome(serverParameters: serverParameters, clientParameters: params, isTracked: loop.isTracked)
        }
        params = welcome.params
        cancelKey = loop.newCancelKey()
        if let pool, pool.mode != .session, loop.config.settings.maxPreparedStatements > 0 {
            tracksStatements = true
        }
        var m = MessageBuilder()
        m.backendKeyData(cancelKey)
        m.readyForQuery(UInt8(ascii: "I"))
        stage(welcome.bytes)
        queue(m.bytes)
        state = .idle
        loop.heapChurned = true  // the login's state is freed: see EventLoop.returnIdleMemory
        if loop.config.settings.logConnections {
            let tls = ssl.map { TLSContexts.describe($0) } ?? "no"
            loop.log.log("\(logPrefix) login attempt: db=\(database) user=\(user) tls=\(tls) replication=\(replication.startupValue)")
        }
        // The client may already have pipelined its first query behind the startup packet.
        if inbuf.isEmpty { releaseBufferIfEmpty(); startReading() }
        else if adminRole != nil { startReading(); loop.admin.handle(self) }
        else { requestServer() }
    }

    /// A ParameterStatus from the linked server: the client's own view follows it.
    func noteParameter(_ name: String, _ value: String, tracked: Bool) {
        guard tracked else { return }
        let key = name.lowercased()
        if params[key] != value { params[key] = value }
    }

    // MARK: closing

    /// Closes this client. Its server, if any, goes back to the pool only if it is clean.
    func disconnect(reason: String, notify: Bool) {
        guard state != .closing else { return }
        if notify {
            var m = MessageBuilder()
            m.errorResponse(severity: "FATAL", code: SQLState.protocolViolation, message: reason)
            ownOut.append(contentsOf: m.bytes)
        }
        let previous = state
        state = .closing
        stopReading()
        if let pool { pool.clientLeft(self, previous: previous) }
        if let server {
            self.server = nil
            server.clientGone(unsentBytes: !inbuf.isEmpty && inbuf.scanned > inbuf.start)
        }
        if countedAsLoggedIn { loop.group.clientCounts.left(); countedAsLoggedIn = false }
        if countFlags & 6 != 0 { loop.login.uncount(self) }
        if replication != .none { loop.login.forgetReplicationOptions(self) }
        if adminRole != nil { loop.admin.forget(self) }
        if loop.config.settings.logDisconnections {
            loop.log.log("\(logPrefix) closing because: \(reason) (age=\(Int(loop.now - connectTime))s)")
        }
        loop.clientClosed(self)
        if flushOwn() { finishClose() } else { closeAfterFlush = true }
    }

    private func finishClose() {
        closeSocket()
    }
}

/// A client's session state in transaction pooling (its prepared-statement names, the settings
/// it made), boxed so clients that never prepare or SET anything pay 8 bytes.
final class ClientSession {
    var rewriter = PreparedStatementRewriter()
    /// SET/RESET of parameters PostgreSQL does not report, replayed on each server it is lent.
    var settings: SessionSettings = [:]
    /// A Parse larger than the relay buffer, gathered whole (up to max_packet_size) so that it can
    /// be registered and rewritten: its bytes so far and its full size.
    var oversizedParse: (bytes: [UInt8], total: Int)?
}

extension ClientConnection {
    var session: ClientSession {
        if let b = sessionBox { return b }
        let b = ClientSession()
        sessionBox = b
        return b
    }
}

/// What a client needs only while it authenticates.
final class LoginState {
    var authenticator: ClientAuthenticator
    /// pam / ldap / gss: how the client is to be checked.
    var externalCheck: ExternalCheck?
    /// gss: the security context, across the client's tokens.
    var gssAcceptor: GSSAcceptor?
    init(_ authenticator: ClientAuthenticator) { self.authenticator = authenticator }
}

func clientReadable(_ l: OpaquePointer?, _ w: UnsafeMutablePointer<ev_io>?, _ revents: Int32) {
    guard let w, let ctx = w.pointee.data else { return }
    Unmanaged<ClientConnection>.fromOpaque(ctx)._withUnsafeGuaranteedRef { $0.onReadable() }
}

func clientWritable(_ l: OpaquePointer?, _ w: UnsafeMutablePointer<ev_io>?, _ revents: Int32) {
    guard let w, let ctx = w.pointee.data else { return }
    Unmanaged<ClientConnection>.fromOpaque(ctx)._withUnsafeGuaranteedRef { $0.onWritable() }
}
