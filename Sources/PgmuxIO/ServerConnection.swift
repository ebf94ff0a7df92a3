import Glibc
import CLibEV
import PgmuxCore

/// One connection to PostgreSQL, owned by a pool: connect, log in, then relay the responses to the
/// client it is lent to, watching ReadyForQuery to know when it can be given back.
public final class ServerConnection: Endpoint {
    public enum State: Equatable {
        /// Waiting for the DNS lookup of its host name (no socket yet).
        case resolving
        case connecting
        /// SSLRequest sent, waiting for 'S' or 'N'.
        case tlsRequest
        case tlsHandshake
        case loggingIn
        /// In the pool's idle list.
        case idle
        /// Linked to a client.
        case active
        /// Released while cancel requests for it are still on their way to PostgreSQL: kept out of
        /// the pool until they have landed (PgBouncer's SV_BEING_CANCELED), so that a late cancel
        /// never stops the next client's query. Counted as in use.
        case beingCanceled
        /// Running the pooler's own query (parameter sync, reset, health check); its replies are
        /// swallowed until ReadyForQuery.
        case ownQuery(OwnQuery)
        /// A pool's listener connection for LISTEN/NOTIFY, after its login (see NotificationHub).
        case listening
        case closed
    }

    public enum OwnQuery: Equatable { case parameterSync, reset, healthCheck, authQuery, pinCheck }

    /// How a connect or login that ended before ReadyForQuery failed (see `Pool.loginAttemptFailed`).
    enum LoginFailure {
        /// The connection or the protocol broke (connect error or timeout, TLS, EOF, a broken or
        /// oversized packet): the reason is cached, waiting clients run into their timeouts.
        case transport
        /// The server refused the login (ErrorResponse, with its SQLSTATE and severity), asked
        /// for authentication the pooler cannot give, or failed the TLS the settings require
        /// (certain to fail again): clients waiting on the pool get the message at once.
        case rejected(code: String, severity: String?)
    }

    public internal(set) var state: State = .connecting
    // The loop owns pools and connections; these references borrow. They are kept as Unmanaged so
    // that the relay can use them at +0 (`_withUnsafeGuaranteedRef`): reading an `unowned(unsafe)`
    // field into a strong reference costs a retain/release pair per message.
    private let poolRef: Unmanaged<Pool>
    private(set) var clientRef: Unmanaged<ClientConnection>?
    var pool: Pool { poolRef.takeUnretainedValue() }
    /// The pool at +0, for the relay.
    @inline(__always) func withPool<R>(_ body: (Pool) -> R) -> R { poolRef._withUnsafeGuaranteedRef(body) }
    var client: ClientConnection? {
        get { clientRef?.takeUnretainedValue() }
        set { clientRef = newValue.map(Unmanaged.passUnretained) }
    }
    var tracker = TransactionTracker()
    /// The backend's own cancel key (never shown to clients).
    var backendKey: UInt64 = 0
    /// Parameters as the server reported them: lowercased name → (spelling, value).
    var params: [String: (name: String, value: String)] = [:]
    /// The client parameter set these parameters are known to match (skips the per-link check).
    var paramsInSync: [String: String]?
    /// Reported parameters in arrival order, used as the pool's welcome.
    var reportedOrder: [String] = []
    var authenticator: ServerAuthenticator?
    /// Prepared statements this server has (by registry id), for transaction pooling.
    var statementCache: ServerStatementCache
    /// Replies owed for Parse/Close/Sync, to swallow those of injected messages.
    var expectations = ResponseExpectations()
    /// Settings of parameters PostgreSQL does not report that this session has had made (by its
    /// clients' SET, or pgmux's sync), and the client's SET/RESET still waiting for their reply.
    var sessionSettings: SessionSettings = [:]
    var pendingSession = PendingSessionCommands()
    /// The client's transaction may have taken session state that pins it (`SessionPins`): the
    /// server is asked before it is released. Stays set while the client is pinned.
    var pinCheck = false
    /// The answer of the pin check: how much pinning state the session holds.
    private var pinsHeld = 0
    /// The client's ReadyForQuery 'I', held back until the pin check has answered.
    private var readyWithheld = false
    /// The client's last batch, kept to be sent again after a stale plan (`StalePlanRetry`).
    var retry = StalePlanRetry()
    /// The batch to send again once the failed one's ReadyForQuery has arrived (and been cut out).
    private var pendingResend: (bytes: [UInt8], types: [UInt8], expectations: [Expectation])?
    /// Session pooling: a client may have changed this session's state since its last reset
    /// (`DirtySession`), so it is reset when its client leaves.
    var sessionDirty = false
    /// auth_query in flight: where its answer goes, and the secret read so far.
    var authLookup: ((AuthQueryAnswer) -> Void)?
    var authSecret: String?
    /// An error reply to the pooler's own query (kept across reads: the reply may be split).
    var ownQueryError: String?
    /// Cancel requests forwarded for this server whose connections to PostgreSQL are still open.
    var cancelsInFlight = 0
    /// connect_query was sent after the login and its ReadyForQuery has not come yet.
    var runningConnectQuery = false
    /// Release once everything has reached the client.
    var releaseAfterFlush = false
    /// Close once the reply in progress ends (set by reload, lifetime, errors).
    var closeNeeded = false
    /// Why, for the log line when it closes.
    var closeReason = "database configuration changed"
    var lastUsed: Double
    /// When the last ReadyForQuery arrived (idle_transaction_timeout).
    var lastReadyAt: Double = 0
    /// When the open transaction began (transaction_timeout); 0 outside a transaction.
    var transactionStart: Double = 0
    /// Set when the connect starts (after the DNS lookup of a host name).
    private(set) var address: Socket.Address
    /// The host of the database's list this server was opened to.
    let host: ServerHost
    var localAddress = Socket.Address()
    /// Set on a pool's listener connection: its hub gets its login, replies and close, and the
    /// pool does not count it.
    weak var notificationHub: NotificationHub?

    /// `address` and `fd` are placeholders (an empty address, -1) while the host name is resolved.
    init(loop: EventLoop, pool: Pool, fd: Int32, address: Socket.Address, host: ServerHost, connectTime: Double? = nil) {
        self.poolRef = Unmanaged.passUnretained(pool)
        self.address = address
        self.host = host
        self.lastUsed = 0
        self.statementCache = ServerStatementCache(capacity: loop.config.settings.maxPreparedStatements)
        super.init(loop: loop, fd: fd, connectTime: connectTime)
        keepsOutputCapacity = true
        lastUsed = loop.now
        setupReadWatcher(serverReadable)
    }

    override var writeCallback: pgmux_io_cb { serverWritable }

    var logPrefix: String {
        "S-0x\(String(id, radix: 16)): \(pool.databaseName)/\(pool.userName)@\(address.length == 0 ? host.description : address.description)"
    }

    // MARK: connect and login

    /// The DNS lookup of `host` gave `addressText`: connect to it (state resolving → connecting).
    func resolved(_ addressText: String) {
        guard state == .resolving else { return }
        guard let a = Socket.Address.numeric(addressText, port: host.port) else {
            close(reason: "could not resolve host \(host.name): bad address \(addressText)", notifyClient: false)
            return
        }
        connect(to: a)
    }

    /// Opens the socket to `address` and waits for the connect to finish (writable).
    func connect(to a: Socket.Address) {
        address = a
        do { fd = try Socket.connect(a) } catch {
            close(reason: "connect failed: \(error)", notifyClient: false)
            return
        }
        setupReadWatcher(serverReadable)
        state = .connecting
        startWriting()
    }

    /// Connect finished (writable): send the StartupMessage.
    func onConnected() {
        let err = Socket.pendingError(fd)
        guard err == 0 else {
            close(reason: "connect failed: \(String(cString: strerror(err)))", notifyClient: false)
            return
        }
        stopWriting()
        localAddress = Socket.localAddress(fd)
        Socket.tune(fd, family: address.family, settings: loop.config.settings)
        if loop.config.settings.logConnections {
            loop.log.log("\(logPrefix) new connection to server (from \(localAddress.description))")
        }
        if loop.tls.toServers != nil && address.family != AF_UNIX {
            state = .tlsRequest
            var m = MessageBuilder()
            m.sslRequest()
            queue(m.bytes)
            startReading()
            return
        }
        sendStartup()
    }

    private func sendStartup() {
        state = .loggingIn
        var m = MessageBuilder()
        m.startupMessage(pool.startupParameters)
        queue(m.bytes)
        startReading()
    }

    /// The answer to our SSLRequest: 'S' starts the handshake, 'N' continues in plaintext
    /// unless server_tls_sslmode requires TLS.
    private func handleTLSAnswer() {
        guard let base = inbuf.base, inbuf.pending >= 1 else { return }
        let answer = base.load(fromByteOffset: inbuf.start, as: UInt8.self)
        let extra = inbuf.pending > 1
        inbuf.clear()
        releaseBufferIfEmpty()
        let mode = loop.config.settings.serverTlsSslmode
        if answer == UInt8(ascii: "S") && !extra, let ctx = loop.tls.toServers {
            guard beginTLS(ctx, accept: false, hostName: host.isUnixSocket ? nil : host.name,
                           verifyHost: mode == .verifyFull) else {
                close(reason: "TLS setup failed", notifyClient: false,
                      loginFailure: .rejected(code: SQLState.connectionFailure, severity: nil))
                return
            }
            state = .tlsHandshake
            continueServerTLS()
        } else if answer == UInt8(ascii: "N") && !extra && !([.require, .verifyCA, .verifyFull].contains(mode)) {
            sendStartup()
        } else {
            if answer == UInt8(ascii: "N") {
                close(reason: "server does not support TLS (server_tls_sslmode=\(mode.rawValue))", notifyClient: false,
                      loginFailure: .rejected(code: SQLState.connectionFailure, severity: nil))
            } else {
                close(reason: "bad answer to SSLRequest", notifyClient: false)
            }
        }
    }

    private func continueServerTLS() {
        switch continueHandshake() {
        case .pending: return
        case .failed(let why):
            // Certificate checks fail the same way every time: tell the waiting clients now.
            close(reason: "TLS handshake with server failed: \(why)", notifyClient: false,
                  loginFailure: .rejected(code: SQLState.connectionFailure, severity: nil))
        case .done: sendStartup()
        }
    }

    /// Processes whole login messages: authentication requests, parameters, the cancel key.
    private func handleLogin() {
        if runningConnectQuery { return handleConnectQueryReply() }
        while let (type, body) = nextWholeMessage() {
            switch type {
            case UInt8(ascii: "R"):
                if authenticator == nil {
                    authenticator = pool.makeServerAuthenticator(tlsEndPoint: ssl.flatMap(TLSContexts.peerEndPoint))
                }
                guard perform(authenticator!.receive(body)) else { return }
            case UInt8(ascii: "S"):
                if let (name, value) = MessageReader.parameterStatus(body) { recordParameter(name, value) }
            case UInt8(ascii: "K"):
                var r = MessageReader(body)
                if let pid = r.int32(), let secret = r.int32() {
                    backendKey = UInt64(UInt32(bitPattern: pid)) << 32 | UInt64(UInt32(bitPattern: secret))
                }
            case UInt8(ascii: "E"):
                let f = MessageReader.errorFields(body)
                close(reason: f[UInt8(ascii: "M")] ?? "server login failed", notifyClient: false,
                      loginFailure: .rejected(code: f[UInt8(ascii: "C")] ?? SQLState.protocolViolation,
                                              severity: f[UInt8(ascii: "S")] ?? f[UInt8(ascii: "V")]))
                return
            case UInt8(ascii: "Z"):
                authenticator = nil
                guard pool.admitsLoggedIn(self) else { return }
                if let query = pool.database.connectQuery, !query.isEmpty {
                    runningConnectQuery = true
                    var m = MessageBuilder(); m.query(query); queue(m.bytes)
                    return handleConnectQueryReply()
                }
                loginComplete()
                return
            default:
                break  // NoticeResponse, NegotiateProtocolVersion: nothing to do
            }
        }
    }

    /// connect_query's replies, as PgBouncer's exec_on_connect: ParameterStatus is kept, an
    /// error is logged and ignored, the rest skipped; its ReadyForQuery completes the login
    /// (whatever its transaction status).
    private func handleConnectQueryReply() {
        while let (type, body) = nextWholeMessageOrSkip() {
            switch type {
            case UInt8(ascii: "S"):
                if let (name, value) = MessageReader.parameterStatus(body) { recordParameter(name, value) }
            case UInt8(ascii: "E"):
                let f = MessageReader.errorFields(body)
                if let level = f[UInt8(ascii: "S")], let message = f[UInt8(ascii: "M")] {
                    loop.log.error("S: error while executing exec_on_query: \(level): \(message)")
                } else {
                    loop.log.error("S: error while executing exec_on_query: partial error message, cannot log")
                }
            case UInt8(ascii: "Z"):
                runningConnectQuery = false
                loginComplete()
                return
            default:
                break
            }
        }
    }

    private func loginComplete() {
        tracker.reset()
        if let hub = notificationHub {
            state = .listening
            hub.listenerReady(self)
            return
        }
        state = .idle
        pool.serverLoggedIn(self)
    }

    /// Carries out what the authenticator asks; false once the login has failed.
    private func perform(_ action: ServerAuthAction) -> Bool {
        switch action {
        case .sendPassword(let text):
            var m = MessageBuilder(); m.password(text); queue(m.bytes)
        case .sendSASLInitial(let mechanism, let data):
            var m = MessageBuilder(); m.saslInitialResponse(mechanism: mechanism, data: data); queue(m.bytes)
        case .sendSASLResponse(let data):
            var m = MessageBuilder(); m.saslResponse(data); queue(m.bytes)
        case .deriveKeys(let request):
            // PBKDF2 on the crypto worker; server_connect_timeout still runs meanwhile.
            loop.crypto.submit(request) { [weak self] keys in
                guard let self, self.state == .loggingIn, self.authenticator != nil else { return }
                if self.perform(self.authenticator!.keysDerived(keys)), self.inbuf.pending > 0 { self.handleLogin() }
            }
        case .none, .authenticated:
            break
        case .failed(let why):
            if authenticator?.failedOnPasswordType == true {
                loop.log.error("\(logPrefix) \(why)")
                close(reason: "wrong password type", notifyClient: false,
                      loginFailure: .rejected(code: SQLState.protocolViolation, severity: nil),
                      clientMessage: "server login failed: wrong password type")
                return false
            }
            close(reason: why, notifyClient: false, loginFailure: .rejected(code: SQLState.protocolViolation, severity: nil))
            return false
        }
        return true
    }

    /// Pops one whole message from `inbuf` (login path only). A login message must fit the
    /// buffer (PgBouncer: "partial pkt in login phase").
    private func nextWholeMessage() -> (UInt8, [UInt8])? {
        guard let base = inbuf.base else { return nil }
        switch Framing.peek(base + inbuf.start, available: inbuf.pending, maxPacketSize: loop.buffers.size) {
        case .needHeader:
            return nil
        case .invalid(let length):
            close(reason: length < 4 ? "server sent invalid packet length \(length)"
                                     : "server login packet too large: \(length) bytes (limit \(loop.buffers.size))",
                  notifyClient: true)
            return nil
        case .message(let type, let total):
            guard inbuf.pending >= total else { return nil }
            let body = Array(UnsafeRawBufferPointer(start: base + inbuf.start + 5, count: total - 5))
            inbuf.start += total
            inbuf.scanned = max(inbuf.scanned, inbuf.start)
            if inbuf.isEmpty { inbuf.clear() }
            return (type, body)
        }
    }

    func recordParameter(_ name: String, _ value: String) {
        paramsInSync = nil
        let key = name.lowercased()
        if params[key] == nil { reportedOrder.append(key) }
        params[key] = (name, value)
        guard state != .loggingIn else { return }
        // A promotion is a fact about the host; default_transaction_read_only may be a client's
        // own SET, which must not change how the host is judged for anyone else.
        if key == "in_hot_standby", let status = reportedStatus {
            loop.hostReported(host, status: status, loggedIn: false)
        } else if key == "default_transaction_read_only" {
            pool.sessionReadOnlyChanged(self)
        }
    }

    /// The role this server reported (nil before PostgreSQL 14, which does not report it).
    var reportedStatus: ServerStatus? {
        ServerStatus(inHotStandby: params["in_hot_standby"]?.value,
                     defaultTransactionReadOnly: params["default_transaction_read_only"]?.value)
    }

    // MARK: relay

    func onReadable() {
        if state == .tlsHandshake { continueServerTLS(); return }
        switch readSome() {
        case .data: break
        case .wouldBlock: return
        case .full: stopReading(); return
        case .eof:
            close(reason: "server conn crashed?", notifyClient: true, serverEOF: true)
            return
        case .error(let e):
            close(reason: "server read failed: \(String(cString: strerror(e)))", notifyClient: true, serverEOF: true)
            return
        }
        switch state {
        case .loggingIn: handleLogin()
        case .tlsRequest: handleTLSAnswer()
        case .tlsHandshake: break
        case .active: relay()
        case .ownQuery(let q): handleOwnQueryReply(q)
        case .listening: notificationHub?.listenerReadable(self)
        case .idle, .beingCanceled:
            // Idle servers should be silent; anything here (a notice, an error before a forced
            // disconnect) is dropped, and the server re-tested before it is lent again.
            inbuf.clear()
            releaseBufferIfEmpty()
        case .resolving, .connecting, .closed:
            break
        }
    }

    /// Walks server messages: ReadyForQuery drives the release rule, ParameterStatus updates the
    /// client's view. Everything is forwarded to the client as one contiguous write, except replies
    /// to messages the pooler injected for prepared statements, which are cut out.
    @inline(__always)
    func relay() {
        guard let clientRef else { return }
        clientRef._withUnsafeGuaranteedRef { client in
            poolRef._withUnsafeGuaranteedRef { pool in withLoop { loop in relay(to: client, of: pool, in: loop) } }
        }
    }

    /// The relay proper; its references are borrowed (+0) for the whole walk.
    @inline(__always)
    private func relay(to client: ClientConnection, of pool: Pool, in loop: EventLoop) {
        let base = UnsafeRawPointer(inbuf.base!)
        var pos = inbuf.scanned
        let rewriting = client.tracksStatements
        let followsSession = !pendingSession.isEmpty
        scan: while true {
            let step = scanner.next(base, position: pos, end: inbuf.end, capacity: loop.buffers.size,
                                    maxPacketSize: loop.maxPacketSize,
                                    wantWhole: { $0 == UInt8(ascii: "Z") || $0 == UInt8(ascii: "S")
                                                 || (rewriting && ($0 == UInt8(ascii: "1") || $0 == UInt8(ascii: "3")
                                                                   || $0 == UInt8(ascii: "C") || $0 == UInt8(ascii: "E")))
                                                 || (followsSession && $0 == UInt8(ascii: "C")) },
                                    wantHeader: { $0 == UInt8(ascii: "G") || (rewriting && $0 == UInt8(ascii: "E")) })
            switch step {
            case .needMore(let p):
                pos = p
                break scan
            case .message(let type, let start, let total):
                pos = start + total
                switch type {
                case UInt8(ascii: "Z"):
                    guard total == 6 else { close(reason: "server sent bad ReadyForQuery", notifyClient: true); return }
                    let status = base.load(fromByteOffset: start + 5, as: UInt8.self)
                    if let again = pendingResend {
                        // The failed batch's end, which the client never sees: the batch goes again.
                        guard cutOut(start, total, client) else { pos = start; break scan }
                        pendingResend = nil
                        inbuf.start = start + total
                        inbuf.scanned = inbuf.start
                        tracker.readyForQuery(status)
                        expectations.readyForQuery()
                        expectations.append(contentsOf: again.expectations)
                        for t in again.types { tracker.sent(t) }
                        queue(again.bytes)
                        continue scan
                    }
                    retry.cancel()  // its batch is over
                    // The transaction's end, after statements that may pin: its ReadyForQuery
                    // waits for the pin check, so that the check's verdict comes before it.
                    let withholdReady = pinCheck && status == UInt8(ascii: "I") && tracker.pendingReady == 1
                        && client.scanner.passthrough == 0
                    if withholdReady {
                        guard cutOut(start, total, client) else { pos = start; break scan }
                        inbuf.start = start + total
                        inbuf.scanned = inbuf.start
                        readyWithheld = true
                    }
                    tracker.readyForQuery(status)
                    if rewriting { expectations.readyForQuery() }
                    if followsSession { settleSession(status, client) }
                    lastReadyAt = loop.now
                    if status == UInt8(ascii: "I") {
                        // A transaction (explicit, or one statement's) ended, in every pool mode.
                        Stats.transactionDone(pool: pool, began: transactionStart > 0 ? transactionStart : client.queryStart,
                                              now: loop.now)
                        transactionStart = 0
                    }
                    else if transactionStart == 0 { transactionStart = client.queryStart > 0 ? client.queryStart : lastReadyAt }
                    switch ReleasePolicy.atReadyForQuery(mode: pool.mode, tracker: tracker) {
                    case .keep: break
                    case .release:
                        if client.scanner.passthrough == 0 { releaseAfterFlush = true }
                    case .refuseTransaction:
                        inbuf.clear()
                        client.sendError("transaction blocks not allowed in statement pooling mode")
                        return
                    }
                    Stats.queryDone(pool: pool, client: client, now: loop.now)
                case UInt8(ascii: "S"):
                    let body = Array(UnsafeRawBufferPointer(start: base + start + 5, count: total - 5))
                    if let (name, value) = MessageReader.parameterStatus(body) {
                        recordParameter(name, value)
                        client.noteParameter(name, value, tracked: loop.isTracked(name))
                    }
                case UInt8(ascii: "1"), UInt8(ascii: "3"):
                    guard cutOut(start, total, client) else { pos = start; break scan }
                    let swallow: Bool
                    if type == UInt8(ascii: "1") {
                        let done = expectations.parseComplete()
                        if let id = done.id { loop.preparedStatements.markValidated(id) }
                        swallow = done.swallow
                    } else {
                        swallow = expectations.closeComplete()
                    }
                    if swallow { inbuf.start = start + total; inbuf.scanned = inbuf.start }
                case UInt8(ascii: "C"):
                    if rewriting && expectations.swallowsNextCommandComplete {
                        // A statement pgmux put ahead of the client's in its Query.
                        guard cutOut(start, total, client) else { pos = start; break scan }
                        expectations.commandComplete()
                        inbuf.start = start + total; inbuf.scanned = inbuf.start
                        break
                    }
                    if rewriting { expectations.commandComplete() }
                    if followsSession {
                        pendingSession.commandComplete(UnsafeRawBufferPointer(start: base + start + 5, count: max(0, total - 6)))
                    }
                    if CommandTag.dropsPreparedStatements(UnsafeRawBufferPointer(start: base + start + 5, count: total - 5)) {
                        statementCache.removeAll()
                        client.sessionBox?.rewriter.forgetAll()
                    }
                case UInt8(ascii: "E"):  // read whole only with statement tracking
                    forgetSkippedParses(client)
                    let stale = StalePlan.isReported(UnsafeRawBufferPointer(start: base + start + 5, count: total - 5))
                    // Reported at Bind, before any reply the client could see: the statement is
                    // prepared again and the batch repeated once, the error cut out.
                    let again = stale && start == inbuf.start && tracker.pendingReady == 1
                        ? retry.resend(registry: loop.preparedStatements) : nil
                    retry.cancel()
                    guard stale else { break }
                    stalePlanReported(pool)
                    if let again {
                        inbuf.start = start + total
                        inbuf.scanned = inbuf.start
                        pendingResend = again
                        loop.log.log("\(logPrefix) cached plan must not change result type: prepared again, executed again")
                    }
                default:
                    break
                }
            case .header(let type, let start, _):
                if type == UInt8(ascii: "G") {
                    tracker.copyInStarted()  // CopyInResponse
                } else {
                    forgetSkippedParses(client)  // an ErrorResponse too large to be read whole
                }
                pos = start
            case .invalid(let length):
                close(reason: "server sent invalid packet length \(length)", notifyClient: true)
                return
            }
        }
        pool.counters.serverBytes &+= UInt64(pos - inbuf.scanned)
        inbuf.scanned = pos
        if client.forward(from: self) { afterClientFlushed() }
    }

    /// The client's SET/RESET that now hold (see `PendingSessionCommands`) become its settings,
    /// and this server's.
    private func settleSession(_ status: UInt8, _ client: ClientConnection) {
        for command in pendingSession.readyForQuery(status) {
            command.apply(to: &client.session.settings)
            command.apply(to: &sessionSettings)
            // DISCARD ALL / RESET ALL end the client's subscriptions too (its UNLISTEN *).
            if command == .resetAll { pool.notificationsIfAny?.clientLeft(client) }
        }
    }

    /// After an ErrorResponse the server skips to Sync: the Parses it skipped never happened.
    private func forgetSkippedParses(_ client: ClientConnection) {
        let skipped = expectations.error()
        if skipped.cacheOutOfSync {
            closeNeeded = true
            closeReason = "prepared statement cache out of sync after an error"
        }
        for lost in skipped.lost {
            statementCache.remove(lost.id)
            if let name = lost.clientName, client.sessionBox?.rewriter.clientStatements[name] == lost.id {
                client.sessionBox?.rewriter.clientStatements[name] = nil
            }
        }
    }

    /// A statement kept prepared here no longer matches its tables (see StalePlan). The error
    /// reaches the client as PostgreSQL sent it; this server is replaced once released, and so
    /// are the pool's others, whose copies of the statement are as stale (at most every few
    /// seconds, so that a client altering its own tables in a loop costs one server each time,
    /// not the pool). The replacements prepare the statement again at its next use.
    private func stalePlanReported(_ pool: Pool) {
        closeReason = Self.stalePlanReason
        closeNeeded = true
        pool.replaceServersAfterStalePlan(reportedBy: self)
    }
    static let stalePlanReason = "cached plan must not change result type"

    /// Before a reply may be cut out, everything ahead of it must have reached the client.
    private func cutOut(_ start: Int, _ total: Int, _ client: ClientConnection) -> Bool {
        guard start > inbuf.start else { return true }
        inbuf.scanned = start
        return client.forward(from: self)
    }

    /// Everything read from this server has reached the client.
    func afterClientFlushed() {
        if inbuf.isEmpty { releaseBufferIfEmpty() }
        if releaseAfterFlush {
            releaseAfterFlush = false
            if tracker.isIdle {
                if pinCheck { runOwnQuery(SessionPins.checkQuery, kind: .pinCheck); return }
                withPool { $0.release(self) }
                return
            }
        }
        if case .active = state { startReading() }
    }

    func onWritable() {
        if state == .connecting { onConnected(); return }
        if state == .tlsHandshake { continueServerTLS(); return }
        guard flushOwn() else { return }
        if let client, client.inbuf.scanned > client.inbuf.start {
            guard forward(from: client) else { return }
        }
        stopWriting()
        if let client, case .active = state {
            client.startReading()
            // A walk that stopped before a rewritten message resumes now.
            if client.inbuf.scanned < client.inbuf.end { client.relay() }
        }
    }

    // MARK: own queries

    /// Sends a query of the pooler's own; replies are swallowed until its ReadyForQuery.
    func runOwnQuery(_ sql: String, kind: OwnQuery) {
        if kind == .reset {
            pool.counters.serverResetCount &+= 1
            sessionDirty = false
        }
        state = .ownQuery(kind)
        tracker.sentOwnQuery()
        var m = MessageBuilder()
        m.query(sql)
        queue(m.bytes)
        startReading()
    }

    private func handleOwnQueryReply(_ kind: OwnQuery) {
        while let (type, body) = nextWholeMessageOrSkip() {
            switch type {
            case UInt8(ascii: "S"):
                if let (name, value) = MessageReader.parameterStatus(body) { recordParameter(name, value) }
            case UInt8(ascii: "E"):
                let f = MessageReader.errorFields(body)
                ownQueryError = f[UInt8(ascii: "M")] ?? "error"
                if kind == .authQuery, let severity = f[UInt8(ascii: "S")] {
                    ownQueryError = "\(severity): \(ownQueryError ?? "")"  // log_server_error's form
                }
            case UInt8(ascii: "D") where kind == .pinCheck:
                pinsHeld = MessageReader.dataRow(body)?.first.flatMap { $0.flatMap { Int($0) } } ?? 0
            case UInt8(ascii: "D") where kind == .authQuery:
                // Exactly two columns, name and secret; a NULL secret means no login.
                guard let row = MessageReader.dataRow(body) else {
                    close(reason: "bad packet", notifyClient: false, loginFailure: nil)
                    return
                }
                guard row.count == 2 else {
                    close(reason: "expected 2 columns from auth_query, not \(row.count)", notifyClient: false, loginFailure: nil)
                    return
                }
                guard row[0] != nil else {
                    close(reason: "auth_query response contained null user name", notifyClient: false, loginFailure: nil)
                    return
                }
                authSecret = row[1]
            case UInt8(ascii: "Z"):
                guard let status = body.first else { break }
                tracker.readyForQuery(status)
                guard tracker.pendingReady == 0 else { continue }
                let failed = ownQueryError
                ownQueryError = nil
                if let failed, kind == .authQuery {
                    // PgBouncer: log it, close the server; its client gets `bouncer config error`.
                    loop.log.error("S: error in auth_query: \(failed)")
                    close(reason: "error response from auth_query", notifyClient: false, loginFailure: nil)
                    return
                } else if let failed {
                    let what = kind == .parameterSync ? "var change failed" : kind == .reset ? "reset query failed"
                        : kind == .pinCheck ? "session state check failed" : "test query failed"
                    loop.log.warning("\(logPrefix) \(what): \(failed)")
                    close(reason: what, notifyClient: true)
                    return
                }
                ownQueryDone(kind)
                return
            default:
                break
            }
        }
    }

    /// Like `nextWholeMessage`, but large replies of own queries are skipped, not buffered.
    func nextWholeMessageOrSkip() -> (UInt8, [UInt8])? {
        guard let base = inbuf.base else { return nil }
        while true {
            let step = scanner.next(base, position: inbuf.start, end: inbuf.end, capacity: loop.buffers.size,
                                    maxPacketSize: loop.maxPacketSize, wantWhole: { _ in true }, wantHeader: { _ in false })
            switch step {
            case .needMore(let p):
                inbuf.start = p; inbuf.scanned = p
                if inbuf.isEmpty { inbuf.clear() }
                return nil
            case .message(let type, let start, let total):
                let body = Array(UnsafeRawBufferPointer(start: base + start + 5, count: total - 5))
                inbuf.start = start + total; inbuf.scanned = inbuf.start
                if inbuf.isEmpty { inbuf.clear() }
                return (type, body)
            case .header:
                continue
            case .invalid(let length):
                close(reason: "server sent invalid packet length \(length)", notifyClient: true)
                return nil
            }
        }
    }

    private func ownQueryDone(_ kind: OwnQuery) {
        switch kind {
        case .parameterSync:
            state = .active
            guard let client else { pool.release(self); return }
            for (key, value) in client.params { if let p = params[key] { params[key] = (p.name, value) } }
            paramsInSync = client.params
            sessionSettings = client.sessionBox?.settings ?? [:]
            client.startReading()
            if !client.inbuf.isEmpty { client.relay() }
        case .pinCheck:
            pinCheckDone()
        case .authQuery:
            let answer = authLookup, secret = authSecret
            authLookup = nil
            authSecret = nil
            pool.release(self)
            answer?(.secret(secret))
        case .reset, .healthCheck:
            if kind == .reset {
                statementCache.removeAll()  // DISCARD ALL dropped them
                if case .resetAll = Array(loop.config.settings.serverResetQuery.utf8).withUnsafeBytes(SessionCommand.classify) {
                    sessionSettings.removeAll()
                }
            }
            pool.release(self)  // still counted as in use; release moves it to idle
        }
    }

    /// The client's transaction ended holding session state (a lock, a temporary table, a
    /// holdable cursor): it keeps this server, in transaction pooling, until a later check finds
    /// none; statement pooling cannot keep it, and refuses the client. Without state, released.
    private func pinCheckDone() {
        state = .active
        let held = pinsHeld
        pinsHeld = 0
        guard let client else { pool.release(self); return }
        if held > 0 && pool.mode == .statement {
            client.sendError(SessionPins.statementModeRefusal, code: SQLState.featureNotSupported)
            return
        }
        if readyWithheld { client.queue([UInt8(ascii: "Z"), 0, 0, 0, 5, UInt8(ascii: "I")]) }
        readyWithheld = false
        if held > 0 {
            client.pinned = true
            client.startReading()
            if !client.inbuf.isEmpty { client.relay() }
            return
        }
        pinCheck = false
        client.pinned = false
        pool.release(self)
        // What it sent meanwhile waits for a server like any request.
        if client.state == .idle && !client.inbuf.isEmpty { client.requestServer() }
    }

    /// Runs auth_query for `user` (extended protocol, the name as $1).
    func runAuthQuery(_ sql: String, user: String, answer: @escaping (AuthQueryAnswer) -> Void) {
        state = .ownQuery(.authQuery)
        authLookup = answer
        authSecret = nil
        tracker.sentOwnQuery()
        var m = MessageBuilder()
        m.extendedQuery(sql, parameters: [user])
        queue(m.bytes)
        startReading()
    }

    // MARK: client gone / closing

    /// The linked client disconnected: reuse the server only if it is clean.
    func clientGone(unsentBytes: Bool) {
        let pinned = client?.pinned == true
        client = nil
        releaseAfterFlush = false
        readyWithheld = false
        retry.cancel()
        pendingResend = nil
        pendingSession.removeAll()
        if pinned || pinCheck {
            // Its locks, temporary tables or cursors must not reach the next client.
            pinCheck = false
            close(reason: "client with session state left", notifyClient: false)
            return
        }
        let s = loop.config.settings
        switch ReleasePolicy.onClientGone(mode: pool.mode, tracker: tracker, unsentBytes: unsentBytes || scanner.passthrough > 0,
                                          resetQuery: s.serverResetQuery, resetAlways: s.serverResetQueryAlways,
                                          replication: pool.replication != .none, dirty: sessionDirty) {
        case .close(let reason):
            close(reason: reason, notifyClient: false)
        case .reuse(let reset):
            inbuf.clear()
            if let reset { runOwnQuery(reset, kind: .reset) } else { pool.release(self) }
        }
    }

    /// Closes the server. A linked client is told (with the server's fate) and disconnected.
    /// Closing a server that has not logged in yet is a failed login attempt (`loginFailure`,
    /// nil when it is not one, e.g. KILL): every such close goes through `Pool.loginAttemptFailed`.
    /// `clientMessage`: what clients failed by a refused login are told, when not `reason`.
    func close(reason: String, notifyClient: Bool, serverEOF: Bool = false, loginFailure: LoginFailure? = .transport,
               clientMessage: String? = nil) {
        guard state != .closed else { return }
        let wasLoggedIn = state != .resolving && state != .connecting && state != .loggingIn && state != .tlsRequest
            && state != .tlsHandshake
        let previous = state
        state = .closed
        if !serverEOF && wasLoggedIn && fd >= 0 {
            var m = MessageBuilder(); m.terminate()
            m.bytes.withUnsafeBytes { b in _ = send(fd, b.baseAddress, b.count, Int32(MSG_NOSIGNAL)) }
        }
        if loop.config.settings.logDisconnections {
            loop.log.log("\(logPrefix) closing because: \(reason) (age=\(Int(loop.now - connectTime))s)")
        }
        if let client {
            self.client = nil
            client.server = nil
            if notifyClient {
                client.sendError(serverEOF ? "server closed the connection unexpectedly" : reason,
                                 code: serverEOF ? SQLState.connectionFailure : SQLState.protocolViolation)
            } else {
                client.disconnect(reason: reason, notify: false)
            }
        }
        closeSocket()
        if let hub = notificationHub {
            loop.serverClosed(self)
            hub.listenerClosed(self, reason: reason)
            return
        }
        if let answer = authLookup { authLookup = nil; answer(.failed) }
        if !wasLoggedIn, let loginFailure {
            pool.loginAttemptFailed(self, reason: reason, failure: loginFailure, clientMessage: clientMessage)
        }
        pool.serverClosed(self, previousState: previous)
    }
}

func serverReadable(_ l: OpaquePointer?, _ w: UnsafeMutablePointer<ev_io>?, _ revents: Int32) {
    guard let w, let ctx = w.pointee.data else { return }
    Unmanaged<ServerConnection>.fromOpaque(ctx)._withUnsafeGuaranteedRef { $0.onReadable() }
}

func serverWritable(_ l: OpaquePointer?, _ w: UnsafeMutablePointer<ev_io>?, _ revents: Int32) {
    guard let w, let ctx = w.pointee.data else { return }
    Unmanaged<ServerConnection>.fromOpaque(ctx)._withUnsafeGuaranteedRef { $0.onWritable() }
}
