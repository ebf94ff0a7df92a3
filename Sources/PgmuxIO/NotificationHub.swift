import PgmuxCore

/// LISTEN/NOTIFY for a pool in transaction or statement mode. The clients' `LISTEN`, `UNLISTEN`
/// and `UNLISTEN *` (a Query of that one statement, or an extended-protocol batch of it, while
/// the client holds no server) are answered by pgmux; one listener server connection per pool listens on the union of their
/// channels, and its notifications go to every client listening on theirs (see
/// `NotificationSubscriptions` for the bookkeeping, `NotificationInbox` for when a client gets
/// them). A lost listener is replaced and listens again; its clients are told with a notice.
/// The listener is one backend beyond pool_size, shown in SHOW SERVERS with state `listen`.
final class NotificationHub {
    unowned let pool: Pool
    private(set) var subscriptions = NotificationSubscriptions<UInt64>()
    /// Per subscribed client (by id), created with its first LISTEN.
    private var inboxes: [UInt64: NotificationInbox] = [:]
    /// The answers of LISTENs waiting for the listener, sent with the extended protocol.
    private var replies: [UInt64: [UInt8]] = [:]
    private(set) var listener: ServerConnection?
    /// The listener has logged in: commands may be sent.
    private var ready = false
    /// The listener is being closed because nothing is listened on.
    private var closingListener = false
    /// The listener was lost: its clients are told once the next one listens on every channel
    /// again (from then on nothing is missed), or when none can be opened.
    private var owedLostNotice = false
    /// An error reply to the running command: its message and SQLSTATE.
    private var commandError: (message: String, code: String)?
    /// No listener is opened before this time after a failed attempt (server_login_retry).
    private var retryAt = 0.0
    private var lastFailure = ""
    /// Since when max_db_connections / max_user_connections have kept a listener from opening.
    private var capWaitSince: Double?
    /// The client whose LISTEN is being handled: refused at once, it is not resumed (its
    /// request loop goes on).
    private var serving: UInt64?
    /// Per client, held notifications and unsent bytes on its socket.
    static let inboxLimit = 256 * 1024

    init(pool: Pool) { self.pool = pool }

    private var loop: EventLoop { pool.loop }

    // MARK: clients

    /// The hook of `ClientConnection.answeredWithoutServer`: when the client's next messages are
    /// a Query or an extended-protocol batch of one LISTEN / UNLISTEN, they are consumed and
    /// served. nil: not one (the first bytes decide cheaply); false: answered; true: the answer
    /// waits (for the listener, or for the rest of the messages), nothing else of the client's is
    /// to be served meanwhile.
    static func serve(_ client: ClientConnection, _ pending: UnsafeRawBufferPointer) -> Bool? {
        guard pending.count >= 5, let pool = client.pool, pool.mode != .session, client.adminRole == nil else { return nil }
        // Read again while its LISTEN waits (RESUME after SUSPEND): nothing goes ahead of it.
        if let hub = pool.notificationsIfAny, hub.subscriptions.isWaiting(client.id) { return true }
        guard pending[0] == UInt8(ascii: "Q") || pending[0] == UInt8(ascii: "P") else { return nil }
        let statement: ListenStatement, consumed: Int, reply: [UInt8]?
        if pending[0] == UInt8(ascii: "Q") {
            let length = 1 + (Int(pending[1]) << 24 | Int(pending[2]) << 16 | Int(pending[3]) << 8 | Int(pending[4]))
            guard length >= 6, length <= maxStatementBytes,
                  ListenStatement.mightBe(UnsafeRawBufferPointer(rebasing: pending[5..<min(length, pending.count)])) else { return nil }
            guard length <= pending.count else { return true }  // read the rest first
            guard pending[length - 1] == 0,
                  let s = ListenStatement.classify(UnsafeRawBufferPointer(rebasing: pending[5..<(length - 1)]))
            else { return nil }
            (statement, consumed, reply) = (s, length, nil)
        } else {
            switch ListenStatement.extended(pending) {
            case .no: return nil
            case .incomplete: return true
            case .batch(let s, let c, let r): (statement, consumed, reply) = (s, c, r)
            }
        }
        client.inbuf.start += consumed
        client.inbuf.scanned = client.inbuf.start
        return pool.notifications.handle(statement, from: client, reply: reply)
    }

    /// Longer Query messages are never waited for whole: a LISTEN is short.
    private static let maxStatementBytes = 4096

    /// True when the answer waits for the listener. `reply`: the answer to an extended-protocol
    /// batch (see `ListenStatement.extended`), nil for a Query's.
    private func handle(_ statement: ListenStatement, from client: ClientConnection, reply: [UInt8]?) -> Bool {
        let id = client.id
        switch statement {
        case .listen(let channel):
            if inboxes[id] == nil { inboxes[id] = NotificationInbox(limit: Self.inboxLimit) }
            if subscriptions.listen(id, channel) == .waitForListener {
                client.stopReading()
                replies[id] = reply
                serving = id
                pump()
                serving = nil
                if subscriptions.isWaiting(id) { return true }
                client.startReading()  // refused at once (see `failed`)
                return false
            }
        case .unlisten(let channel):
            subscriptions.unlisten(id, channel)
        case .unlistenAll:
            subscriptions.unlistenAll(id)
        }
        if subscriptions.channels(of: id).isEmpty { inboxes[id] = nil }
        client.queue(reply ?? Self.reply(statement.commandTag))
        pump()
        return false
    }

    /// The answer to a Query of one LISTEN / UNLISTEN.
    private static func reply(_ tag: String) -> [UInt8] {
        var m = MessageBuilder()
        m.commandComplete(tag)
        m.readyForQuery(UInt8(ascii: "I"))
        return m.bytes
    }

    /// A client waiting on its LISTEN is answered: it goes on with what it sent after it.
    private func resume(_ client: ClientConnection) {
        guard client.state == .idle, client.id != serving else { return }
        client.startReading()
        if !client.inbuf.isEmpty { client.requestServer() }
    }

    /// Whether the hub holds anything of this client (a subscription, a reply, a LISTEN it
    /// handles): such a client stays on its loop.
    func knows(_ client: ClientConnection) -> Bool {
        inboxes[client.id] != nil || replies[client.id] != nil || serving == client.id
    }

    /// The client disconnected.
    func clientLeft(_ client: ClientConnection) {
        replies[client.id] = nil
        guard inboxes.removeValue(forKey: client.id) != nil else { return }
        subscriptions.clientLeft(client.id)
        pump()
    }

    /// The client's server was released: what was held for it goes out now.
    func clientReleased(_ client: ClientConnection) {
        guard inboxes[client.id]?.isEmpty == false else { return }
        client.queue(inboxes[client.id]!.take())
    }

    private func deliver(_ message: [UInt8], to id: UInt64) {
        guard let client = loop.clients[id], client.state != .closing,
              let out = inboxes[id]?.receive(message, deliverable: Self.betweenTransactions(client), backlog: client.ownOut.count)
        else { return }
        client.queue(out)
    }

    /// Nothing of a server's reply can be cut by what is written to the client now: it holds no
    /// server, or (pinned, see PINNING in pgmux(1)) its server is idle outside a transaction with
    /// everything it sent already passed on. pgmux's own bytes leave before the next reply.
    private static func betweenTransactions(_ client: ClientConnection) -> Bool {
        guard let server = client.server else { return true }
        return server.state == .active && server.tracker.isIdle && server.inbuf.isEmpty && server.scanner.passthrough == 0
    }

    // MARK: the listener connection

    /// Sends the next command, or opens a listener when one is needed.
    private func pump() {
        guard let listener else { return open() }
        guard ready else { return }
        if subscriptions.isEmpty && subscriptions.commands.isEmpty {
            // No client listens any more: the backend goes (the next LISTEN opens another).
            closingListener = true
            listener.close(reason: "no channel listened on any more", notifyClient: false, loginFailure: nil)
            return
        }
        guard let command = subscriptions.nextCommand() else { return }
        loop.log.debug("\(listener.logPrefix) notification connection: \(command.sql)")
        var m = MessageBuilder()
        m.query(command.sql)
        listener.queue(m.bytes)
    }

    /// Opens a listener when there are commands to run, within max_db_connections /
    /// max_user_connections (an idle server may be closed to make room).
    private func open() {
        guard listener == nil, !subscriptions.commands.isEmpty, !loop.shuttingDown else { return }
        // After a failed attempt, LISTENs are refused with its reason until the retry.
        if loop.now < retryAt { return refuseWaiters(lastFailure) }
        guard pool.reserveListenerPlace() else {
            // Every slot is busy: the LISTENs wait, as a query waits for a server (the
            // maintenance timer tries again), up to query_wait_timeout.
            let since = capWaitSince ?? loop.now
            capWaitSince = since
            let timeout = loop.config.settings.queryWaitTimeout
            if timeout > 0 && loop.now - since >= timeout {
                capWaitSince = nil
                refuseWaiters("no server connection left for notifications within query_wait_timeout (max_db_connections / max_user_connections)")
            }
            return
        }
        capWaitSince = nil
        listener = pool.launchListener(for: self)
        if listener == nil { failed("could not connect to the server for notifications") }
    }

    /// The maintenance timer: a listener that could not be opened is tried again, and what was
    /// held for a pinned client during a transaction goes out once its server is idle.
    func maintain() {
        if listener == nil { open() }
        for (id, inbox) in inboxes where !inbox.isEmpty {
            if let client = loop.clients[id], client.server != nil, Self.betweenTransactions(client) { clientReleased(client) }
        }
    }

    /// The listener logged in.
    func listenerReady(_ server: ServerConnection) {
        guard server === listener else { return }
        ready = true
        loop.log.log("\(server.logPrefix) notification connection ready (pid \(server.backendKey >> 32))")
        server.startReading()
        if owedLostNotice && subscriptions.commands.isEmpty { tellListenerLost() }
        pump()
    }

    /// Replies of the listener: notifications, and the end of each command.
    func listenerReadable(_ server: ServerConnection) {
        while server.state == .listening, let (type, body) = server.nextWholeMessageOrSkip() {
            switch type {
            case UInt8(ascii: "A"):
                var r = MessageReader(body)
                guard r.int32() != nil, let channel = r.cString(), let ids = subscriptions.subscribers(of: channel) else { break }
                var m = MessageBuilder()
                m.raw(type, body)
                for id in ids { deliver(m.bytes, to: id) }
            case UInt8(ascii: "E"):
                let f = MessageReader.errorFields(body)
                let message = f[UInt8(ascii: "M")] ?? "error"
                commandError = (message, f[UInt8(ascii: "C")] ?? SQLState.protocolViolation)
                loop.log.warning("\(server.logPrefix) notification connection: \(message)")
            case UInt8(ascii: "Z"):
                commandCompleted()
            default:
                break  // CommandComplete, NoticeResponse, ParameterStatus
            }
        }
    }

    /// The running command ended: its waiters are answered (or refused, when it failed).
    private func commandCompleted() {
        let channel = subscriptions.commands.first?.channel ?? ""
        let error = commandError
        commandError = nil
        let answered = subscriptions.commandDone()
        if owedLostNotice && subscriptions.commands.isEmpty { tellListenerLost() }
        for id in answered {
            let reply = replies.removeValue(forKey: id)
            guard let client = loop.clients[id], client.state != .closing else { continue }
            if let error {
                subscriptions.unlisten(id, channel)
                if subscriptions.channels(of: id).isEmpty { inboxes[id] = nil }
                client.sendError(error.message, code: error.code, fatal: false)
            } else {
                client.queue(reply ?? Self.reply("LISTEN"))
            }
            resume(client)
        }
        pump()
    }

    /// The listener closed: on purpose, after its login (lost), or before (failed).
    func listenerClosed(_ server: ServerConnection, reason: String) {
        guard server === listener else { return }
        listener = nil
        let wasReady = ready
        ready = false
        commandError = nil
        subscriptions.listenerLost()
        if closingListener {
            closingListener = false
            owedLostNotice = false  // no one listened any more
            pump()  // a LISTEN may have come meanwhile
        } else if wasReady {
            loop.log.warning("\(server.logPrefix) notification connection lost (\(reason)): listening again")
            owedLostNotice = true
            pump()
        } else {
            failed(reason)
        }
    }

    /// A listener failed to connect or log in: clients waiting on a LISTEN get an error, and so
    /// do the next ones until server_login_retry has passed; then it is tried again, also for
    /// the clients already listening.
    private func failed(_ reason: String) {
        retryAt = loop.now + loop.config.settings.serverLoginRetry
        lastFailure = reason
        loop.log.warning("\(pool.databaseName)/\(pool.userName) notification connection failed: \(reason)")
        refuseWaiters(reason)
        if owedLostNotice { tellListenerLost() }
    }

    /// Every listening client gets the notice of a lost listener, now or at its release.
    private func tellListenerLost() {
        owedLostNotice = false
        for id in subscriptions.clients {
            inboxes[id]?.noteListenerLost()
            if let client = loop.clients[id], Self.betweenTransactions(client) { clientReleased(client) }
        }
    }

    /// No listener can be opened now: the clients waiting on a LISTEN get an error (SQLSTATE
    /// 08006), and that subscription is undone.
    private func refuseWaiters(_ reason: String) {
        for (id, _) in subscriptions.failWaiters() {
            replies[id] = nil
            guard let client = loop.clients[id], client.state != .closing else { continue }
            if subscriptions.channels(of: id).isEmpty { inboxes[id] = nil }
            client.sendError("pgmux: could not open the notification connection: \(reason)",
                             code: SQLState.connectionFailure, fatal: false)
            resume(client)
        }
    }
}
