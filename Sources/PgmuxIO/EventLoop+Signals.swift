import Glibc
import CLibEV
import PgmuxCore

/// Signals (loop 0 receives them; what they do happens on every loop) and shutdown.
extension EventLoop {
    func onSignal(_ sig: Int32) {
        switch sig {
        case SIGHUP:
            log.log("got SIGHUP, re-reading config")
            systemd.reloading()
            reload()
            systemd.ready()
        case SIGINT:
            if shuttingDown { log.log("got SIGINT while shutting down, fast exit"); group.stopAll(from: self); return }
            log.log("got SIGINT, shutting down, waiting for all servers connections to be released")
            systemd.stopping()
            if suspended { log.error("suspend was in progress, going down immediately"); group.stopAll(from: self); return }
            group.everywhere(from: self) { $0.beginShutdown(waitForClients: false) }
        case SIGTERM:
            // PgBouncer 1.23+: what systemd and Kubernetes send first lets clients finish.
            if shuttingDown { log.log("got SIGTERM while shutting down, fast exit"); group.stopAll(from: self); return }
            log.log("got SIGTERM, shutting down, waiting for all clients disconnect")
            systemd.stopping()
            if suspended { log.error("suspend was in progress, going down immediately"); group.stopAll(from: self); return }
            group.everywhere(from: self) { $0.beginShutdown(waitForClients: true) }
        case SIGUSR1:
            log.log("got SIGUSR1, pausing all activity")
            group.everywhere(from: self) { $0.pause(nil) }
        case SIGUSR2:
            if shuttingDown { log.log("got SIGUSR2 while shutting down, ignoring"); return }
            log.log("got SIGUSR2, continuing from PAUSE")
            group.everywhere(from: self) { $0.resume(nil) }
        case SIGURG:
            log.log("got SIGURG, starting the new process for an online restart")
            guard let command = successorCommand else { log.warning("cannot find this process's binary"); return }
            if let error = successor.launch(command) { log.warning("online restart: \(error)") }
        case SIGQUIT:
            log.log("got SIGQUIT, fast exit")
            group.stopAll(from: self)
        default:
            break
        }
    }

    /// Safe shutdown, as PgBouncer: the TCP listeners close; the Unix socket stays open for
    /// console logins (so a draining pooler can be watched), other logins get `pooler is shutting
    /// down`. With `waitForClients` (SIGTERM, SHUTDOWN WAIT_FOR_CLIENTS) clients go on until they
    /// disconnect; otherwise (SIGINT, WAIT_FOR_SERVERS) the pooler pauses, running transactions
    /// finish, and a client asking for a server gets `server shutting down`.
    func beginShutdown(waitForClients: Bool) {
        shuttingDown = true
        shutdownWaitsForClients = waitForClients
        for l in listeners where !l.isUnix { l.close() }
        listeners.removeAll { !$0.isUnix }
        if !waitForClients { globallyPaused = true }
        refreshPauseStates()
        if waitForClients { return }
        for c in clients.values where c.state == .waiting { c.sendError("server shutting down") }
    }
}
