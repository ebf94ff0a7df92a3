/// One PBKDF2 derivation the sans-I/O auth code needs and does not run itself: its cost is set by
/// the iteration count, which a peer chooses (a server's `i=`, an auth_file or auth_query
/// verifier). The exchanges return it as an action; the shell runs `run()` off the event loop and
/// hands the result back (`keysDerived`), and the exchange stores it in its `SCRAMKeyCache`.
public struct SCRAMDerivation: Equatable, Hashable, Sendable {
    public let password: [UInt8]
    public let salt: [UInt8]
    public let iterations: Int
    /// The ad-hoc verifier of a plain auth_file password: its salt was chosen at random, and
    /// the result is cached under the password alone (see `SCRAMKeyCache.adHocKeys`).
    public let adHoc: Bool

    public init(password: [UInt8], salt: [UInt8], iterations: Int, adHoc: Bool = false) {
        self.password = password
        self.salt = salt
        self.iterations = iterations
        self.adHoc = adHoc
    }

    /// Requests that give the same cache entry (two ad-hoc requests for one password share one
    /// result, whatever salts they drew), so a worker can run them once.
    public struct Identity: Hashable, Sendable {
        let password: [UInt8]
        let salt: [UInt8]?
        let iterations: Int
    }

    public var identity: Identity { Identity(password: password, salt: adHoc ? nil : salt, iterations: iterations) }

    /// The expensive part: PBKDF2 and the keys. Pure and thread-safe. nil if out of range.
    public func run() -> SCRAMKeys? { SCRAMKeys.derive(password: password, salt: salt, iterations: iterations) }
}

/// A key-cache lookup: the keys, or the derivation to run for them.
public enum SCRAMLookup {
    case hit(SCRAMKeys)
    case miss(SCRAMDerivation)
}
