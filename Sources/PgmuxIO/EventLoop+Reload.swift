import Glibc
import CLibEV
import PgmuxCore

/// Configuration and auth files: reading them, and applying a new configuration to what runs.
extension EventLoop {
    func loadAuthFile() throws {
        (authFile, hba, identMaps) = try EventLoop.readAuthFiles(config.settings)
    }

    /// auth_file, auth_hba_file and auth_ident_file as `settings` name them; read before anything
    /// is replaced, so a broken file leaves the running ones in place. As PgBouncer, the ident file
    /// is read only with auth_type = hba, before the hba file whose `map=` options must name its
    /// maps (regular expressions are compiled here, not at login).
    static func readAuthFiles(_ s: Settings) throws -> ([String: String], HBAFile?, IdentFile?) {
        let users = try s.authFile.flatMap { $0.isEmpty ? nil : try AuthFile.load(path: $0) } ?? [:]
        guard s.authType == .hba else { return (users, nil, nil) }
        let ident = try s.authIdentFile.flatMap { $0.isEmpty ? nil : try IdentFile.load(path: $0) }
        let rules = try HBAFile.load(path: s.authHbaFile)
        try rules.checkIdentMaps(ident)
        return (users, rules, ident)
    }

    /// Makes the current settings take effect on what already exists, after RELOAD and after a
    /// console SET (PgBouncer reads its settings where it uses them, so a SET acts at once): pool
    /// modes, sizes and lifetimes (a pool grows now and shrinks as servers are released), the
    /// servers' prepared-statement caches, the packet limit, the verbosity.
    func applySettings() {
        let s = config.settings
        maxPacketSize = s.maxPacketSize
        refusesSimpleQuery = s.disablePqexec
        log.verbose = max(log.verbose, s.verbose)
        for pool in pools.values {
            let name = pool.databaseName
            pool.mode = pool.replication != .none ? .session : config.poolMode(database: name, user: pool.userName)
            pool.machine.limits = Pool.limits(config, database: name, user: pool.userName, replication: pool.replication)
            pool.refreshLifetime()
            pool.refreshSelector()  // target_session_attrs may have changed
            pool.welcomes.removeAll()  // track_extra_parameters may have changed
            pool.launchIfNeeded()
        }
        for server in servers.values { server.statementCache.setCapacity(s.maxPreparedStatements) }
        // Hosts no database names any more are forgotten (SHOW HOSTS, memory).
        var hosts = Set(config.databases.values.flatMap(\.hosts))
        for p in pools.values { hosts.formUnion(p.selector.hosts) }
        hostHealth.keepOnly(hosts)
        for l in listeners where !l.isUnix && l.ownsSocket {
            Socket.setDeferAccept(l.fd, s.tcpDeferAccept)
            l.retune(s)
        }
    }

    /// Re-reads the configuration and auth_file, and switches every loop to them at once (the
    /// world stopped). A bad file keeps the running configuration on all of them.
    @discardableResult
    public func reload() -> Bool {
        let fresh: Config, files: ([String: String], HBAFile?, IdentFile?)
        do {
            fresh = try Config.load(path: config.path)
            files = try EventLoop.readAuthFiles(fresh.settings)
        } catch {
            log.error("\(error)")
            log.error("RELOAD failed, keeping the running configuration")
            return false
        }
        for w in fresh.warnings { log.warning(w) }
        group.withWorldStopped(from: self) {
            authQueryCache.removeAll()
            log.open(path: fresh.settings.logfile)
            log.configureSyslog(enabled: fresh.settings.syslog, ident: fresh.settings.syslogIdent,
                                facility: fresh.settings.syslogFacility)
            do { try tls.load(fresh.settings) } catch {
                log.error("TLS settings not applied, keeping the previous ones: \(error)")
            }
            for l in group.loops { l.apply(fresh, files) }
        }
        return true
    }

    /// RELOAD on this loop (the world stopped).
    private func apply(_ fresh: Config, _ files: ([String: String], HBAFile?, IdentFile?)) {
        let (users, rules, maps) = files
        config = fresh
        authFile = users
        hba = rules
        identMaps = maps
        for pool in pools.values {
            if let entry = fresh.database(named: pool.databaseName) {
                if entry != pool.database {
                    for s in servers.values where s.pool === pool { s.closeNeeded = true }
                    pool.machine.resetLoginBackoff()  // a fixed entry is tried at once
                }
                pool.database = entry
                // As PgBouncer's user list: the password for new server logins follows the
                // [databases] line, else the auth_file (a user no longer in it keeps its last).
                let password = entry.password ?? users[pool.serverUser] ?? pool.serverPassword
                if entry.password != nil || users[pool.serverUser] != nil { pool.serverPasswordFromLogin = false }
                if password != pool.serverPassword {
                    pool.serverPassword = password
                    pool.scramPassThrough = nil  // keys of the old verifier
                    pool.machine.resetLoginBackoff()  // a fixed password is tried at once
                }
            }
        }
        applySettings()
    }
}
