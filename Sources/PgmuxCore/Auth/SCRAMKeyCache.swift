/// Memoizes PBKDF2 results so a derivation runs at most once per (password, salt, iterations).
/// The pooler itself never derives through it on the event loop: the exchanges ask `cached` /
/// `adHocRequest`, return a `SCRAMDerivation` on a miss, and `store` the worker's result. `keys` and
/// `adHocKeys` derive inline, for tests and tools.
///
/// Ad-hoc secrets (plain auth_file passwords offered to SCRAM clients) get a random salt the
/// first time and then keep it: a fresh salt per login would defeat the cache, and a stable salt is
/// also what a real stored verifier looks like, so it reveals nothing.
///
/// Bounded: at most `capacity` entries; when full, the oldest inserted entry is evicted (FIFO ring).
/// Entries are keyed by the password bytes (hashed by the dictionary), so it holds passwords in
/// memory exactly as the loaded auth_file does; `removeAll()` on reload drops stale ones.
/// One instance serves every event loop of the process (a key derived for one loop's client
/// serves all), so every access holds `lock`.
public final class SCRAMKeyCache: @unchecked Sendable {
    private let lock = Lock()
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
    private var derivationCount = 0
    public var derivations: Int { lock.withLock { derivationCount } }

    public init(capacity: Int = 1024) {
        self.capacity = max(1, capacity)
    }

    public var count: Int { lock.withLock { entries.count } }

    /// Keys for a known salt (a stored verifier, or a server's `s=`/`i=`); nil if the parameters
    /// are out of range.
    public func keys(password: [UInt8], salt: [UInt8], iterations: Int) -> SCRAMKeys? {
        lock.withLock {
            let key = Key(password: password, salt: salt, iterations: iterations)
            if let hit = entries[key] { return hit }
            guard let derived = SCRAMKeys.derive(password: password, salt: salt, iterations: iterations) else { return nil }
            derivationCount += 1
            insert(key, derived)
            return derived
        }
    }

    /// Keys of the ad-hoc verifier for a plain password: random 16-byte salt on first use, then
    /// reused. nil if `iterations` is out of range.
    public func adHocKeys(password: [UInt8], iterations: Int) -> SCRAMKeys? {
        lock.withLock {
            let key = Key(password: password, salt: nil, iterations: iterations)
            if let hit = entries[key] { return hit }
            guard let derived = SCRAMKeys.derive(password: password, salt: Crypto.randomBytes(16),
                                                 iterations: iterations) else { return nil }
            derivationCount += 1
            insert(key, derived)
            return derived
        }
    }

    /// Cached keys for a known salt, without deriving; nil on a miss or out-of-range parameters.
    public func cached(password: [UInt8], salt: [UInt8], iterations: Int) -> SCRAMKeys? {
        lock.withLock {
            entries[Key(password: password, salt: salt, iterations: iterations)]
        }
    }

    /// The ad-hoc keys of a plain password if cached, else the derivation that makes them (with
    /// a fresh random salt); nil if `iterations` is out of range.
    public func adHocRequest(password: [UInt8], iterations: Int) -> SCRAMLookup? {
        lock.withLock {
            guard iterations > 0, iterations <= SCRAMSecret.maxIterations else { return nil }
            if let hit = entries[Key(password: password, salt: nil, iterations: iterations)] { return .hit(hit) }
            return .miss(SCRAMDerivation(password: password, salt: Crypto.randomBytes(16), iterations: iterations, adHoc: true))
        }
    }

    /// Stores a derivation's result; returns what is cached for it now (an ad-hoc entry stored
    /// first by a concurrent request wins, so every client of one password sees one salt).
    @discardableResult
    public func store(_ request: SCRAMDerivation, _ keys: SCRAMKeys) -> SCRAMKeys {
        lock.withLock {
            let key = Key(password: request.password, salt: request.adHoc ? nil : request.salt, iterations: request.iterations)
            if let existing = entries[key] { return existing }
            derivationCount += 1
            insert(key, keys)
            return keys
        }
    }

    public func removeAll() {
        lock.withLock {
            entries.removeAll()
            ring.removeAll()
            next = 0
        }
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
