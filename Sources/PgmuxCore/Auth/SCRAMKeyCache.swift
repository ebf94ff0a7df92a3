/// Memoizes PBKDF2 results so the ≈1 ms derivation runs at most once per
/// (password, salt, iterations) — it runs on the event loop and would otherwise be paid on every
/// client login (ad-hoc secrets) and every server login.
///
/// Ad-hoc secrets (plain auth_file passwords offered to SCRAM clients) get a random salt the
/// first time and then keep it: a fresh salt per login would defeat the cache, and a stable salt is
/// also what a real stored verifier looks like, so it reveals nothing.
///
/// Bounded: at most `capacity` entries; when full, the oldest inserted entry is evicted (FIFO ring).
/// Entries are keyed by the password bytes (hashed by the dictionary), so it holds passwords in
/// memory exactly as the loaded auth_file does; `removeAll()` on reload drops stale ones.
/// Not thread-safe by design (one instance per event-loop thread); it is not `Sendable`.
public final class SCRAMKeyCache {
    private struct Key: Hashable {
        let password: [UInt8]
        let salt: [UInt8]?  // nil: the ad-hoc entry for this password
        let iterations: Int
    }

    public let capacity: Int
    private var entries: [Key: SCRAMKeys] = [:]
    private var ring: [Key] = []
    private var next = 0
    /// Number of PBKDF2 derivations performed (for tests and stats).
    public private(set) var derivations = 0

    public init(capacity: Int = 1024) {
        self.capacity = max(1, capacity)
    }

    public var count: Int { entries.count }

    /// Keys for a known salt (a stored verifier, or a server's `s=`/`i=`); nil if the parameters
    /// are out of range.
    public func keys(password: [UInt8], salt: [UInt8], iterations: Int) -> SCRAMKeys? {
        let key = Key(password: password, salt: salt, iterations: iterations)
        if let hit = entries[key] { return hit }
        guard let derived = SCRAMKeys.derive(password: password, salt: salt, iterations: iterations) else { return nil }
        derivations += 1
        insert(key, derived)
        return derived
    }

    /// Keys of the ad-hoc verifier for a plain password: random 16-byte salt on first use, then
    /// reused. nil if `iterations` is out of range.
    public func adHocKeys(password: [UInt8], iterations: Int) -> SCRAMKeys? {
        let key = Key(password: password, salt: nil, iterations: iterations)
        if let hit = entries[key] { return hit }
        guard let derived = SCRAMKeys.derive(password: password, salt: Crypto.randomBytes(16),
                                             iterations: iterations) else { return nil }
        derivations += 1
        insert(key, derived)
        return derived
    }

    public func removeAll() {
        entries.removeAll()
        ring.removeAll()
        next = 0
    }

    private func insert(_ key: Key, _ value: SCRAMKeys) {
        if ring.count < capacity {
            ring.append(key)
        } else {
            entries[ring[next]] = nil
            ring[next] = key
            next = (next + 1) % capacity
        }
        entries[key] = value
    }
}
