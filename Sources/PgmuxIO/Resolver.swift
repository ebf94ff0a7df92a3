import Glibc
import CLibEV
import CAres
import PgmuxCore

/// Asynchronous DNS for server host names, with c-ares as PgBouncer uses it: queries go out on
/// sockets the loop watches (libev io watchers c-ares asks for through its socket-state
/// callback) and c-ares' retransmissions run on a loop timer, so a lookup never blocks the loop.
/// Answers are cached by `DNSCache` (dns_max_ttl, dns_nxdomain_ttl); dns_zone_check_period polls
/// the SOA serial of the names' zones and looks their names up again when it changes.
///
/// c-ares reads /etc/resolv.conf, or `resolv_conf`, and /etc/hosts; `dns_nameservers` (pgmux
/// extension) replaces the name servers. Each query is tried `tries` times for `timeoutMs`
/// per name server before c-ares reports a timeout.
///
/// Each loop has its own c-ares channel; the cache and the zone serials are the process's
/// (`SharedDNS`): a name looked up by one loop is known to all, a loop waiting for a lookup
/// another loop started is woken by it, and a changed address marks every loop's servers.
final class Resolver {
    static let timeoutMs: Int32 = 2000
    static let tries: Int32 = 2

    private unowned let loop: EventLoop
    private var channel: ares_channel?
    /// Why c-ares could not be set up; every lookup then fails with it.
    private var setupError: String?
    /// The process's cache (the group's).
    private let shared: SharedDNS
    private var lastZoneCheck: Double = 0
    /// Server connections waiting for a name's lookup, in arrival order.
    private var waiters: [String: [ServerConnection]] = [:]
    /// The io watcher of each socket c-ares uses.
    private var watchers: [Int32: UnsafeMutablePointer<ev_io>] = [:]
    private let timer = UnsafeMutablePointer<ev_timer>.allocate(capacity: 1)
    /// Set while c-ares is being destroyed: its last socket callbacks change nothing.
    private var destroying = false

    init(loop: EventLoop) {
        self.loop = loop
        shared = loop.group.dns
        timer.initialize(to: ev_timer())
        let me = Unmanaged.passUnretained(self).toOpaque()
        pgmux_ev_timer_init(timer, resolverTimer, 0, 0, me)
        let s = loop.config.settings
        // c-ares' library init and cleanup count their users without a lock: one loop at a time.
        var rc = shared.lock.withLock { ares_library_init(ARES_LIB_INIT_ALL) }
        guard rc == ARES_SUCCESS else { setupError = "c-ares: \(String(cString: ares_strerror(rc)))"; return }
        var opts = ares_options()
        opts.sock_state_cb = resolverSocketState
        opts.sock_state_cb_data = me
        opts.timeout = Self.timeoutMs
        opts.tries = Self.tries
        var mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES
        if !s.resolvConf.isEmpty {
            opts.resolvconf_path = strdup(s.resolvConf)
            mask |= ARES_OPT_RESOLVCONF
        }
        rc = ares_init_options(&channel, &opts, mask)
        free(opts.resolvconf_path)
        guard rc == ARES_SUCCESS else {
            setupError = "c-ares: \(String(cString: ares_strerror(rc)))"
            loop.log.error("DNS resolver setup failed: \(setupError!)")
            return
        }
        if !s.dnsNameservers.isEmpty {
            rc = ares_set_servers_ports_csv(channel, s.dnsNameservers)
            if rc != ARES_SUCCESS {
                loop.log.error("dns_nameservers = \(s.dnsNameservers): \(String(cString: ares_strerror(rc)))")
            }
        }
    }

    deinit {
        destroying = true
        if pgmux_ev_is_active(timer) != 0 { ev_timer_stop(loop.ev, timer) }
        timer.deallocate()
        for w in watchers.values {
            if pgmux_ev_is_active(w) != 0 { ev_io_stop(loop.ev, w) }
            w.deallocate()
        }
        watchers.removeAll()
        if let channel { ares_destroy(channel) }  // cancels queries: their callbacks see ARES_EDESTRUCTION
        shared.lock.withLock { ares_library_cleanup() }
    }

    // MARK: lookups

    /// The cached answer for `name`, or `.lookUp`: then the caller registers with `wait` and
    /// calls `start` (in that order: c-ares may answer inside `start`, from /etc/hosts).
    func lookup(_ name: String) -> DNSCache.Answer {
        if let setupError { return .failed(setupError) }
        let s = loop.config.settings, now = loop.now
        return shared.lock.withLock {
            shared.cache.lookup(name, now: now, lookupTimeout: s.serverConnectTimeout > 0 ? s.serverConnectTimeout : 15)
        }
    }

    func wait(_ server: ServerConnection, for name: String) { waiters[name, default: []].append(server) }

    /// Starts the lookup of `name` (A and AAAA records, or /etc/hosts).
    func start(_ name: String) {
        guard let channel else { return }
        var hints = ares_addrinfo_hints()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        let query = Unmanaged.passRetained(Query(resolver: self, name: name)).toOpaque()
        ares_getaddrinfo(channel, name, nil, &hints, resolverAnswer, query)
        rearm()
    }

    /// The answer of a lookup: cached, then given to the connections waiting for it.
    fileprivate func answered(_ name: String, status: Int32, result: UnsafeMutablePointer<ares_addrinfo>?) {
        let s = loop.config.settings
        var addresses: [String] = []
        var node = result?.pointee.nodes
        while let n = node {
            if let text = Self.numericText(n.pointee.ai_addr, n.pointee.ai_addrlen), !addresses.contains(text) {
                addresses.append(text)
            }
            node = n.pointee.ai_next
        }
        let now = loop.now
        if status == ARES_SUCCESS && !addresses.isEmpty {
            let vanished = shared.lock.withLock { shared.cache.answered(name, addresses: addresses, now: now, maxTTL: s.dnsMaxTtl) }
            if !vanished.isEmpty {
                loop.log.log("DNS: \(name) no longer resolves to \(vanished.joined(separator: ","))")
                for other in loop.group.loops where other !== loop {
                    loop.group.post(to: other.index) { $0.resolverIfStarted?.addressesVanished(name, vanished) }
                }
                addressesVanished(name, vanished)
            }
        } else {
            let why = status == ARES_SUCCESS ? "no address" : String(cString: ares_strerror(status))
            loop.log.warning("DNS lookup failed: \(name): \(why)")
            shared.lock.withLock { shared.cache.failed(name, reason: why, now: now, nxdomainTTL: s.dnsNxdomainTtl) }
        }
        for other in loop.group.loops where other !== loop {
            loop.group.post(to: other.index) { $0.resolverIfStarted?.wakeWaiters(for: name) }
        }
        wakeWaiters(for: name)
    }

    /// A lookup of `name` (this loop's or another's) answered: the servers waiting for it go on.
    func wakeWaiters(for name: String) {
        let waiting = waiters.removeValue(forKey: name) ?? []
        for server in waiting where server.state == .resolving {
            switch lookup(name) {
            case .address(let text): server.resolved(text)
            case .failed(let why): server.close(reason: "could not resolve host \(name): \(why)", notifyClient: false)
            case .wait, .lookUp: server.close(reason: "could not resolve host \(name)", notifyClient: false)
            }
        }
    }

    /// PgBouncer's tag_host_addr_dirty: servers connected to an address the name no longer has
    /// are closed when released (never in the middle of a transaction); new connections use the
    /// new addresses.
    func addressesVanished(_ name: String, _ vanished: [String]) {
        var touched: [ObjectIdentifier: Pool] = [:]
        for s in loop.servers.values where s.host.name == name && !s.closeNeeded && vanished.contains(s.address.hostText) {
            s.closeReason = "address of \(name) changed"
            s.closeNeeded = true
            touched[ObjectIdentifier(s.pool)] = s.pool
        }
        for p in touched.values { p.closeIdleMarked() }
    }

    static func numericText(_ sa: UnsafeMutablePointer<sockaddr>?, _ len: ares_socklen_t) -> String? {
        guard let sa else { return nil }
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        guard getnameinfo(sa, socklen_t(len), &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST) == 0 else { return nil }
        return String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    // MARK: zone check

    /// Called by the maintenance timer: every dns_zone_check_period, asks each zone's SOA serial.
    func maintain() {
        let period = loop.config.settings.dnsZoneCheckPeriod
        guard let channel, period > 0, loop.now - lastZoneCheck >= period else { return }
        lastZoneCheck = loop.now
        let zones = shared.lock.withLock { () -> [String] in
            let zones = shared.cache.zones
            shared.zoneSerials.keepOnly(zones)
            return zones
        }
        for zone in zones {
            let query = Unmanaged.passRetained(Query(resolver: self, name: zone)).toOpaque()
            ares_query(channel, zone, Int32(ns_c_in.rawValue), Int32(ns_t_soa.rawValue), resolverSOAAnswer, query)
        }
        rearm()
    }

    fileprivate func soaAnswered(_ zone: String, status: Int32, buffer: UnsafeMutablePointer<UInt8>?, length: Int32) {
        guard status == ARES_SUCCESS, let buffer else { return }
        var reply: UnsafeMutablePointer<ares_soa_reply>?
        guard ares_parse_soa_reply(buffer, length, &reply) == ARES_SUCCESS, let soa = reply else { return }
        let serial = UInt32(truncatingIfNeeded: soa.pointee.serial)
        ares_free_data(soa)
        let now = loop.now
        let (changed, old, names) = shared.lock.withLock { () -> (Bool, UInt32?, [String]) in
            let old = shared.zoneSerials.serials[zone]
            guard shared.zoneSerials.received(serial, for: zone) else { return (false, old, []) }
            return (true, old, shared.cache.refresh(zone: zone, now: now))
        }
        if changed {
            if let old { loop.log.log("zone '\(zone)' serial changed: old=\(old) new=\(serial)") }
            for name in names { start(name) }
        }
    }

    // MARK: driving c-ares

    /// c-ares opened, changed or closed a socket: watch it for what it waits for.
    fileprivate func socketState(_ fd: Int32, readable: Bool, writable: Bool) {
        guard !destroying else { return }
        let events = (readable ? Int32(EV_READ) : 0) | (writable ? Int32(EV_WRITE) : 0)
        if let w = watchers[fd] {
            if pgmux_ev_is_active(w) != 0 { ev_io_stop(loop.ev, w) }
            guard events != 0 else {
                watchers[fd] = nil
                w.deallocate()
                return
            }
            pgmux_ev_io_set(w, fd, events)
            ev_io_start(loop.ev, w)
        } else if events != 0 {
            let w = UnsafeMutablePointer<ev_io>.allocate(capacity: 1)
            w.initialize(to: ev_io())
            pgmux_ev_io_init(w, resolverSocketReady, fd, events, Unmanaged.passUnretained(self).toOpaque())
            watchers[fd] = w
            ev_io_start(loop.ev, w)
        }
    }

    fileprivate func process(readable: Int32, writable: Int32) {
        guard let channel else { return }
        ares_process_fd(channel, readable, writable)
        rearm()
    }

    /// Sets the timer to c-ares' next retransmission or timeout, if any query is under way.
    private func rearm() {
        guard let channel else { return }
        if pgmux_ev_is_active(timer) != 0 { ev_timer_stop(loop.ev, timer) }
        var tv = timeval()
        guard let next = ares_timeout(channel, nil, &tv) else { return }
        let after = max(0.001, Double(next.pointee.tv_sec) + Double(next.pointee.tv_usec) / 1_000_000)
        pgmux_ev_timer_init(timer, resolverTimer, after, 0, Unmanaged.passUnretained(self).toOpaque())
        ev_timer_start(loop.ev, timer)
    }
}

/// What a c-ares callback needs: the resolver and the name or zone asked for.
private final class Query {
    unowned let resolver: Resolver
    let name: String
    init(resolver: Resolver, name: String) { self.resolver = resolver; self.name = name }
}

private func resolverSocketState(_ data: UnsafeMutableRawPointer?, _ fd: ares_socket_t, _ readable: Int32, _ writable: Int32) {
    guard let data else { return }
    // Borrowed, not retained: this also runs while the resolver is being destroyed.
    Unmanaged<Resolver>.fromOpaque(data)._withUnsafeGuaranteedRef {
        $0.socketState(fd, readable: readable != 0, writable: writable != 0)
    }
}

private func resolverSocketReady(_ l: OpaquePointer?, _ w: UnsafeMutablePointer<ev_io>?, _ revents: Int32) {
    guard let w, let data = w.pointee.data else { return }
    let fd = w.pointee.fd
    Unmanaged<Resolver>.fromOpaque(data).takeUnretainedValue()
        .process(readable: revents & Int32(EV_READ) != 0 ? fd : ARES_SOCKET_BAD,
                 writable: revents & Int32(EV_WRITE) != 0 ? fd : ARES_SOCKET_BAD)
}

private func resolverTimer(_ l: OpaquePointer?, _ w: UnsafeMutablePointer<ev_timer>?, _ revents: Int32) {
    guard let w, let data = w.pointee.data else { return }
    Unmanaged<Resolver>.fromOpaque(data).takeUnretainedValue().process(readable: ARES_SOCKET_BAD, writable: ARES_SOCKET_BAD)
}

private func resolverAnswer(_ arg: UnsafeMutableRawPointer?, _ status: Int32, _ timeouts: Int32,
                            _ result: UnsafeMutablePointer<ares_addrinfo>?) {
    guard let arg else { return }
    let query = Unmanaged<Query>.fromOpaque(arg).takeRetainedValue()
    defer { if let result { ares_freeaddrinfo(result) } }
    // ARES_EDESTRUCTION: the resolver is being destroyed; nobody waits any more.
    guard status != ARES_EDESTRUCTION else { return }
    query.resolver.answered(query.name, status: status, result: result)
}

private func resolverSOAAnswer(_ arg: UnsafeMutableRawPointer?, _ status: Int32, _ timeouts: Int32,
                               _ buffer: UnsafeMutablePointer<UInt8>?, _ length: Int32) {
    guard let arg else { return }
    let query = Unmanaged<Query>.fromOpaque(arg).takeRetainedValue()
    guard status != ARES_EDESTRUCTION else { return }
    query.resolver.soaAnswered(query.name, status: status, buffer: buffer, length: length)
}
