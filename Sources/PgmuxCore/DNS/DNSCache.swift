/// Server host names and their addresses, with PgBouncer's cache rules (`src/dnslookup.c`): an
/// answer is kept `dns_max_ttl` seconds and a failure `dns_nxdomain_ttl` seconds; a name asked
/// for after that is looked up again, and connections wait for the new answer. Successive
/// connections rotate through the addresses of an answer. Addresses are numeric texts (`10.0.0.1`,
/// `::1`); the shell turns them into socket addresses.
///
/// A lookup that stays unanswered longer than the lookup timeout fails the connections asking
/// for the name (their host is then backed off and the next one of its list tried), while it
/// stays under way until the resolver gives up, so that a resolver that never answers costs one
/// query at a time, not one per connection.
public struct DNSCache: Sendable {
    public enum Answer: Equatable, Sendable {
        /// Connect to this address.
        case address(String)
        /// The name does not resolve (or resolving it timed out): why.
        case failed(String)
        /// A lookup is under way: wait for `answered` or `failed`.
        case wait
        /// Start a lookup now (the cache has recorded it as under way), and wait for it.
        case lookUp
    }

    public struct Record: Equatable, Sendable {
        public var addresses: [String] = []
        public var error: String?
        /// When the answer (or failure) goes stale.
        public var expires: Double = 0
        /// When the lookup under way began; nil when none is.
        public var pendingSince: Double?
        var next = 0
    }

    public private(set) var records: [String: Record] = [:]

    public init() {}

    /// Names with a lookup under way.
    public var pendingCount: Int { records.values.reduce(0) { $0 + ($1.pendingSince != nil ? 1 : 0) } }

    public mutating func lookup(_ name: String, now: Double, lookupTimeout: Double) -> Answer {
        var r = records[name] ?? Record()
        if let since = r.pendingSince {
            if now - since < lookupTimeout { return .wait }
            return .failed("no answer from the resolver within \(Self.seconds(lookupTimeout))")
        }
        if now < r.expires {
            if let error = r.error { return .failed(error) }
            if !r.addresses.isEmpty {
                let a = r.addresses[r.next % r.addresses.count]
                r.next &+= 1
                records[name] = r
                return .address(a)
            }
        }
        r.pendingSince = now
        records[name] = r
        return .lookUp
    }

    /// The resolver answered `addresses` for `name`. Returns the addresses of the previous answer
    /// that are no longer there (PgBouncer closes their servers once released).
    @discardableResult
    public mutating func answered(_ name: String, addresses: [String], now: Double, maxTTL: Double) -> [String] {
        guard !addresses.isEmpty else {
            failed(name, reason: "no address", now: now, nxdomainTTL: maxTTL)
            return []
        }
        var r = records[name] ?? Record()
        let vanished = r.addresses.filter { !addresses.contains($0) }
        r.addresses = addresses
        r.error = nil
        r.expires = now + maxTTL
        r.pendingSince = nil
        if r.next >= addresses.count { r.next = 0 }
        records[name] = r
        return vanished
    }

    /// The lookup of `name` failed (no such name, timeout, refused).
    public mutating func failed(_ name: String, reason: String, now: Double, nxdomainTTL: Double) {
        var r = records[name] ?? Record()
        r.error = reason
        r.expires = now + nxdomainTTL
        r.pendingSince = nil
        records[name] = r
    }

    /// dns_zone_check_period found a new serial for `zone`: its names are looked up again now
    /// (PgBouncer's zone_requeue). Returns the names whose lookups the shell must start (they
    /// are recorded as under way); names already being looked up are left alone.
    public mutating func refresh(zone: String, now: Double) -> [String] {
        var names: [String] = []
        for (name, r) in records where r.pendingSince == nil && Self.zone(of: name) == zone {
            records[name]?.pendingSince = now
            names.append(name)
        }
        return names.sorted()
    }

    /// The zone of a name, as PgBouncer takes it: what follows its first dot (nil without one).
    public static func zone(of name: String) -> String? {
        guard let dot = name.firstIndex(of: "."), name.index(after: dot) < name.endIndex else { return nil }
        return String(name[name.index(after: dot)...])
    }

    /// The zones of the names known, sorted.
    public var zones: [String] { Set(records.keys.compactMap(Self.zone(of:))).sorted() }

    static func seconds(_ s: Double) -> String {
        s == s.rounded() ? "\(Int(s)) s" : "\(s) s"
    }
}

/// dns_zone_check_period: the SOA serial last seen for each zone. A serial that grew (by RFC 1982
/// arithmetic, as PgBouncer compares) means the zone changed and its names must be looked up again.
public struct DNSZoneSerials: Sendable {
    public private(set) var serials: [String: UInt32] = [:]

    public init() {}

    /// Records `serial` for `zone`; true when it is newer than the one seen before (or the first).
    public mutating func received(_ serial: UInt32, for zone: String) -> Bool {
        let old = serials[zone] ?? 0
        let newer = Int32(bitPattern: serial &- old) > 0
        if newer { serials[zone] = serial }
        return newer
    }

    /// Zones no name uses any more are forgotten.
    public mutating func keepOnly(_ zones: [String]) {
        let keep = Set(zones)
        serials = serials.filter { keep.contains($0.key) }
    }
}
