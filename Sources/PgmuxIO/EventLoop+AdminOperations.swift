import Glibc
import CLibEV
import PgmuxCore

/// PAUSE, RESUME, SUSPEND and KILL.
extension EventLoop {
    @inline(__always)
    func isPaused(_ db: String?) -> Bool {
        if globallyPaused { return true }
        guard let db, !pausedDatabases.isEmpty else { return false }
        return pausedDatabases.contains(db)
    }

    /// PAUSE: no server is lent any more; running transactions finish and give theirs back.
    func pause(_ db: String?) {
        if let db { pausedDatabases.insert(db) } else { globallyPaused = true }
        refreshPauseStates()
    }

    /// What PAUSE means for a pool of `db`: paused, and refusing while shutting down.
    func pauseState(of db: String) -> PoolStateMachine.Pause {
        guard isPaused(db) else { return .running }
        return shuttingDown ? .refusing : .paused
    }

    /// Tells every pool its pause state after PAUSE, RESUME or shutdown changed it.
    func refreshPauseStates() {
        for p in pools.values { p.machine.setPause(pauseState(of: p.databaseName)) }
    }

    func pausedAndDrained(_ db: String?) -> Bool {
        !servers.values.contains { s in
            (db == nil || s.pool.databaseName == db) && s.client != nil
        }
    }

    /// RESUME: waiting clients get servers again.
    func resume(_ db: String?) {
        if let db { pausedDatabases.remove(db) } else { globallyPaused = false; pausedDatabases.removeAll() }
        refreshPauseStates()
        for p in pools.values where !isPaused(p.databaseName) { p.serveWaiting() }
    }

    /// SUSPEND: stop reading every socket but the issuing console's, and stop accepting.
    func suspend(except console: ClientConnection) {
        suspended = true
        console.exemptFromSuspend = true
        for c in clients.values where c !== console { c.stopReading() }
        for s in servers.values { s.stopReading() }
        for l in listeners { l.pause() }
    }

    /// True when no connection has bytes waiting to be written.
    func buffersFlushed() -> Bool {
        !clients.values.contains { !$0.ownOut.isEmpty || $0.inbuf.scanned > $0.inbuf.start }
            && !servers.values.contains { !$0.ownOut.isEmpty || $0.inbuf.scanned > $0.inbuf.start }
    }

    /// RESUME after SUSPEND: every connection that was readable is read again.
    func resumeFromSuspend() {
        suspended = false
        for c in clients.values {
            c.exemptFromSuspend = false
            switch c.state {
            case .waiting, .waitingForWelcome, .closing: break
            default: c.startReading()
            }
        }
        for s in servers.values where s.state != .closed && s.state != .connecting && s.state != .resolving { s.startReading() }
        for l in listeners { l.resume() }
    }

    /// KILL: drop every client and server of a database (or of all).
    func kill(database db: String?) {
        for c in clients.values where c.adminRole == nil && (db == nil || c.pool?.databaseName == db) {
            c.sendError("database removed")
        }
        for s in servers.values where db == nil || s.pool.databaseName == db {
            s.close(reason: "database removed", notifyClient: true, loginFailure: nil)
        }
    }
}
