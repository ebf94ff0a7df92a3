/// Which host of its `host=` list a pool connects to next, and whether a server that logged in
/// there may serve the pool's `target_session_attrs`.
///
/// A host is skipped while its connects fail (`HostHealth` backoff), and while the role it last
/// reported does not suit the target; such a host is checked again with a login once that
/// report is `roleRecheck` seconds old, so that a promoted standby is found within about that
/// long. Hosts known to suit the target come before hosts whose role is unknown or due for that
/// check, so that a working primary is not left for a probe. `round-robin` starts each choice
/// after the host chosen last (new server connections spread over the hosts); `disable` starts
/// at the first host (the first host that works, in order, as libpq).
///
/// `prefer-standby` first looks for a standby that way, then for any host; a primary that logged
/// in is accepted only while no other host may be a standby.
public struct HostSelector: Sendable {
    public static let roleRecheck = 1.0

    public let hosts: [ServerHost]
    public let loadBalance: LoadBalanceHosts
    public let target: TargetSessionAttrs
    /// Where the next round-robin choice starts.
    private var cursor = 0

    public init(hosts: [ServerHost], loadBalance: LoadBalanceHosts, target: TargetSessionAttrs) {
        self.hosts = hosts.isEmpty ? [ServerHost(name: "", port: 5432)] : hosts
        self.loadBalance = loadBalance
        self.target = target
    }

    /// A list of hosts or a target makes the pool follow its hosts; a single host with `any`
    /// keeps PgBouncer's behaviour (pool-wide login backoff, check_fast_fail).
    public var followsHosts: Bool { hosts.count > 1 || target != .any }

    private enum Fit { case known, unknown, no }

    private func fit(_ i: Int, _ health: HostHealth, now: Double, standbyPass: Bool) -> Fit {
        let entry = health[hosts[i]]
        if let entry, entry.isBackingOff(at: now) { return .no }
        guard let entry, let status = entry.status else { return .unknown }
        let suits = standbyPass ? status.hotStandby : (target == .preferStandby || target.accepts(status))
        if suits { return .known }
        return now - entry.statusSeen >= Self.roleRecheck ? .unknown : .no
    }

    /// The host to connect to now, nil when none may be tried.
    public mutating func pick(_ health: HostHealth, now: Double) -> ServerHost? {
        let n = hosts.count
        let start = loadBalance == .roundRobin ? cursor % n : 0
        for standbyPass in target == .preferStandby ? [true, false] : [false] {
            var firstUnknown: Int?
            for k in 0..<n {
                let i = (start + k) % n
                switch fit(i, health, now: now, standbyPass: standbyPass) {
                case .known: return chosen(i)
                case .unknown: if firstUnknown == nil { firstUnknown = i }
                case .no: break
                }
            }
            if let i = firstUnknown { return chosen(i) }
        }
        return nil
    }

    private mutating func chosen(_ i: Int) -> ServerHost {
        cursor = i + 1
        return hosts[i]
    }

    /// Whether a server of `host` reporting `status` may serve this pool (`health` already
    /// holds that report). nil status: the server did not report its role (PostgreSQL < 14).
    public func accepts(_ status: ServerStatus?, from host: ServerHost, _ health: HostHealth, now: Double) -> Bool {
        if target == .any { return true }
        guard let status else { return false }
        if target.accepts(status) { return true }
        guard target == .preferStandby else { return false }
        return !hosts.indices.contains { hosts[$0] != host && fit($0, health, now: now, standbyPass: true) != .no }
    }

    /// Why no host may be used now, host by host, for the error of clients that waited
    /// failover_timeout in vain.
    public func unavailableReason(_ health: HostHealth, now: Double) -> String {
        let parts = hosts.map { host -> String in
            guard let e = health[host] else { return "\(host.description): not tried yet" }
            if e.isBackingOff(at: now) { return "\(host.description): \(e.lastError)" }
            if let s = e.status, !target.accepts(s) { return "\(host.description): \(s.roleName)" }
            return "\(host.description): no server yet"
        }
        return parts.joined(separator: "; ") + " (target_session_attrs=\(target.rawValue))"
    }
}
