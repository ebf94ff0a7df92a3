import Glibc
import CLibEV
import PgmuxCore

/// Periodic work: timeouts, pool maintenance, memory, statistics.
extension EventLoop {
    func maintain() {
        let s = config.settings
        let t = now
        if let status = successor.reap(), status != 0 {
            log.warning("online restart: the new process exited with status \(status)")
        }
        for client in clients.values {
            switch client.state {
            case .startup, .tlsHandshake, .authenticating:
                if s.clientLoginTimeout > 0 && t - client.connectTime > s.clientLoginTimeout {
                    client.sendError("client_login_timeout")
                }
            case .waitingForWelcome:
                // PgBouncer keeps these clients in the pool's waiting list (CL_WAITING_LOGIN):
                // the queue timeouts apply to them, and client_login_timeout while the pool
                // has no welcome.
                if let why = queueTimeout(client, now: t) {
                    client.sendError(why)
                } else if s.clientLoginTimeout > 0 && t - client.connectTime > s.clientLoginTimeout {
                    client.sendError("client_login_timeout (server down)")
                }
            case .waiting:
                if let why = queueTimeout(client, now: t) {
                    client.sendError(why)
                } else if s.queryWaitNotify > 0 && !client.toldToWait && t - client.stateSince > s.queryWaitNotify {
                    // The client is unlinked, so a NoticeResponse cannot interleave with a reply.
                    client.toldToWait = true
                    var m = MessageBuilder()
                    m.errorResponse(severity: "NOTICE", code: "00000",
                                    message: "No server connection available in postgres backend, client being queued", notice: true)
                    client.queue(m.bytes)
                }
            case .idle:
                let idleTimeout = config.users[client.user]?.clientIdleTimeout ?? s.clientIdleTimeout
                if idleTimeout > 0 && t - max(client.lastActivity, client.connectTime) > idleTimeout {
                    client.sendError("client_idle_timeout")
                }
            case .active:
                if let server = client.server, case .active = server.state { enforceTransactionTimeouts(client, server, now: t) }
            default:
                break
            }
        }
        for server in servers.values {
            switch server.state {
            case .resolving:
                // server_connect_timeout covers the lookup too: a resolver that does not answer
                // fails the attempt like a connect that does not finish.
                if s.serverConnectTimeout > 0 && t - server.connectTime > s.serverConnectTimeout {
                    server.close(reason: "could not resolve host \(server.host.name): DNS lookup timed out", notifyClient: false)
                }
            case .connecting, .tlsRequest, .tlsHandshake, .loggingIn:
                if s.serverConnectTimeout > 0 && t - server.connectTime > s.serverConnectTimeout {
                    server.close(reason: "connect timeout", notifyClient: false)
                }
            case .idle:
                let pool = server.pool
                // min_pool_size counts the pool's servers on every loop.
                let aboveMinimum = pool.totalServers > pool.machine.limits.minSize
                if s.serverIdleTimeout > 0 && t - server.lastUsed > s.serverIdleTimeout && aboveMinimum {
                    server.close(reason: "server idle timeout", notifyClient: false)
                } else if t - server.connectTime > pool.effectiveLifetime && aboveMinimum {
                    server.close(reason: "server lifetime over", notifyClient: false)
                }
            case .active:
                // server_fast_close: a session-mode server marked by RECONNECT or RELOAD is closed
                // between transactions instead of when its client leaves (PgBouncer's janitor).
                if s.serverFastClose && server.closeNeeded && server.pool.mode == .session && server.tracker.isIdle
                    && server.scanner.passthrough == 0 && !server.releaseAfterFlush {
                    server.close(reason: "database configuration changed", notifyClient: true)
                }
            default:
                break
            }
        }
        // After pool_size went down. With several loops, loop 0 does it for all with the world
        // stopped: a close lowers the pool's total at once, so the next loop sees it (two janitors
        // deciding from the same total would both close).
        if group.count == 1 {
            for pool in pools.values { pool.closeExcessIdle() }
        } else if index == 0 {
            group.everywhere(from: self) { l in for pool in l.pools.values { pool.closeExcessIdle() } }
        }
        for pool in pools.values { pool.notificationsIfAny?.maintain() }
        // While suspended no server is opened (PgBouncer's janitor does nothing then, so as not
        // to surprise the process taking over); RESUME's next round tops the pools up.
        if !suspended {
            // A forced-user database with min_pool_size gets its pool before any client logs in,
            // so that the minimum is kept from the start (PgBouncer's janitor does the same).
            for (name, entry) in config.databases where entry.user != nil && config.minPoolSize(database: name) > 0 {
                _ = pool(database: name, entry: entry, user: entry.user!)
            }
            for pool in pools.values where !shuttingDown && !isPaused(pool.databaseName) { pool.topUp() }
        }
        metrics?.expire(now: t)
        // Requests that waited too long for a peer connection go first, so that a forward
        // timing out below does not hand its place to one of them.
        for p in peerPools.values { p.maintain(now: t, timeout: s.cancelWaitTimeout) }
        // A peer removed by RELOAD leaves SHOW PEER_POOLS once nothing of it is in flight.
        for (id, p) in peerPools where config.peers[id] == nil && p.isIdle { peerPools[id] = nil }
        for f in cancelForwarders.values where s.cancelWaitTimeout > 0 && t - f.connectTime > s.cancelWaitTimeout {
            log.warning("cancel request not delivered within cancel_wait_timeout")
            f.finish()
        }
        dropIdleAutoDatabases(now: t)
        resolverIfStarted?.maintain()
        if t - lastMemoryTrim >= 1 { returnIdleMemory(now: t) }
        group.balanceClients(from: self)
        if statsPeriodStart == 0 { statsPeriodStart = t }
        if index == 0 && t - statsPeriodStart >= Double(max(1, s.statsPeriod)) { endStatsPeriod(now: t) }
    }

    /// Loop 0, every stats_period: the `stats:` line over the pools of every loop, and a new
    /// period for the averages of SHOW STATS on all of them.
    private func endStatsPeriod(now t: Double) {
        let s = config.settings
        group.withWorldStopped(from: self) {
            let all = group.loops.flatMap { $0.pools.values }
            if s.logStats || systemd.isActive {
                let line = Stats.logLine(pools: all, window: t - statsPeriodStart)
                if s.logStats { log.log(line) }
                systemd.status(line)  // PgBouncer's STATUS= is its stats line, log_stats or not
            }
            for p in all { p.periodCounters = p.counters }
            for l in group.loops { l.statsPeriodStart = t }
        }
    }

    /// Once a second: relay buffers unused for that long are freed, and after clients came or
    /// went the heap's free pages are handed back to the kernel, so RSS follows the number of
    /// connections down after a burst instead of staying at its peak (PgBouncer keeps its slabs).
    /// malloc_trim covers every thread's arena, so only loop 0 calls it, when any loop asked:
    /// one walk of the arenas per second rather than one per loop, and never two at once (which
    /// glibc allows but which, under ThreadSanitizer's own allocator, raced on glibc's lazy
    /// initialisation of its unused heap and crashed).
    private func returnIdleMemory(now t: Double) {
        lastMemoryTrim = t
        let freed = buffers.trim(floor: max(1, 8 / group.count))  // 8 idle buffers for the process
        if freed > 0 || heapChurned {
            heapChurned = false
            group.wantHeapTrim()
        }
        if index == 0 && group.takeHeapTrim() { _ = malloc_trim(0) }
    }

    /// The timeouts of a client in its pool's queue: failover_timeout first (no host of the pool
    /// can be used, waiting longer is vain), then query_timeout and query_wait_timeout, in
    /// PgBouncer's janitor's order. The error to send, or nil.
    private func queueTimeout(_ client: ClientConnection, now t: Double) -> String? {
        if let why = client.pool?.failoverExpired(waitingSince: client.stateSince, now: t) { return why }
        let s = config.settings
        let queryTimeout = config.users[client.user]?.queryTimeout ?? s.queryTimeout
        if queryTimeout > 0 && t - client.stateSince > queryTimeout { return "query_timeout" }
        if s.queryWaitTimeout > 0 && t - client.stateSince > s.queryWaitTimeout { return "query_wait_timeout" }
        return nil
    }

    /// query_timeout, idle_transaction_timeout and transaction_timeout of a linked client. The
    /// server is closed (never reused mid-query) and the client told why.
    private func enforceTransactionTimeouts(_ client: ClientConnection, _ server: ServerConnection, now t: Double) {
        let s = config.settings
        let user = config.users[client.user]
        let queryTimeout = user?.queryTimeout ?? s.queryTimeout
        let idleTxTimeout = user?.idleTransactionTimeout ?? s.idleTransactionTimeout
        let txTimeout = user?.transactionTimeout ?? s.transactionTimeout
        let tracker = server.tracker
        if queryTimeout > 0 && !tracker.isQuiet && client.queryStart > 0 && t - client.queryStart > queryTimeout {
            forwardCancel(to: server)  // stop the backend's work, not just our side of the socket
            server.close(reason: "query timeout", notifyClient: true)
        } else if idleTxTimeout > 0 && tracker.isQuiet && tracker.status != UInt8(ascii: "I")
                    && t - server.lastReadyAt > idleTxTimeout {
            server.close(reason: "idle transaction timeout", notifyClient: true)
        } else if txTimeout > 0 && server.transactionStart > 0 && t - server.transactionStart > txTimeout {
            server.close(reason: "transaction timeout", notifyClient: true)
        } else if s.pinTimeout > 0 && client.pinned && tracker.isIdle && t - server.lastReadyAt > s.pinTimeout {
            server.close(reason: "pin timeout", notifyClient: true)
        }
    }

    /// autodb_idle_timeout: pools created from the `*` entry, unused that long, are freed.
    private func dropIdleAutoDatabases(now t: Double) {
        let timeout = config.settings.autodbIdleTimeout
        guard timeout > 0 else { return }
        for (key, pool) in pools where config.databases[pool.databaseName] == nil
            && pool.machine.clients == 0 && pool.machine.active == 0 && pool.machine.connecting == 0
            && pool.machine.pendingLookups == 0 && pool.notificationsIfAny?.listener == nil && t - pool.lastUsed > timeout {
            for m in pool.machine.idle { m.server.close(reason: "auto-database idle timeout", notifyClient: false) }
            if pool.machine.serverCount == 0 {
                pools[key] = nil
                log.log("freed auto-database: \(pool.databaseName)")
            }
        }
    }

    // MARK: signals
}
