import COpenSSL

/// Random bytes drawn from OpenSSL (`RAND_bytes`) a block at a time, for values every login
/// needs (SCRAM server nonce, cancel key). A `RAND_bytes` call costs several thousand
/// instructions of DRBG bookkeeping whatever its size (callgrind: two per login, more than the
/// nonce's own work), so one call serves many logins. Owned by one event loop; every byte is
/// handed out once and wiped from the block as it is taken.
public struct RandomPool {
    private var block: [UInt8]
    private var next: Int

    public init(blockSize: Int = 1024) {
        precondition(blockSize > 0, "empty random block")
        block = [UInt8](repeating: 0, count: blockSize)
        next = blockSize  // the first take fills it
    }

    /// `count` fresh random bytes.
    public mutating func take(_ count: Int) -> [UInt8] {
        precondition(count >= 0, "negative random byte count")
        if count > block.count { return Crypto.randomBytes(count) }
        if block.count - next < count { refill() }
        let out = Array(block[next..<next + count])
        for i in next..<next + count { block[i] = 0 }
        next += count
        return out
    }

    /// A SCRAM server nonce in PostgreSQL's form (18 random bytes, base64 encoded).
    public mutating func scramNonce() -> [UInt8] {
        Array(Crypto.base64Encode(take(SCRAMSyntax.rawNonceLength)).utf8)
    }

    /// A random 64-bit value.
    public mutating func uint64() -> UInt64 {
        take(8).reduce(0) { $0 << 8 | UInt64($1) }
    }

    private mutating func refill() {
        let ok = block.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32($0.count)) }
        precondition(ok == 1, "RAND_bytes failed: no usable entropy source")
        next = 0
    }
}
