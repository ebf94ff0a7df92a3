/// Packet framing for the PostgreSQL v3 protocol: a regular message is a type byte followed by an
/// int32 length that counts itself but not the type byte. The pooler forwards by this header alone,
/// so validating it is the one place where untrusted lengths meet arithmetic.
public enum Framing {
    /// Size of a regular message header (type byte + int32 length).
    public static let headerSize = 5

    /// Outcome of looking at the bytes at the front of a buffer.
    public enum Peek: Equatable {
        /// Fewer than `headerSize` bytes are available.
        case needHeader
        /// A valid header: `total` is the whole message size including the type byte.
        case message(type: UInt8, total: Int)
        /// The length field is below 4 or above the configured limit.
        case invalid(length: Int)
    }

    /// Reads a big-endian int32 at `offset` (caller guarantees 4 readable bytes).
    @inlinable @inline(__always)
    public static func readInt32(_ p: UnsafeRawPointer, _ offset: Int) -> Int32 {
        let b = p.advanced(by: offset).assumingMemoryBound(to: UInt8.self)
        return Int32(bitPattern: UInt32(b[0]) << 24 | UInt32(b[1]) << 16 | UInt32(b[2]) << 8 | UInt32(b[3]))
    }

    /// Validates the header at `p` (with `available` bytes readable). `maxPacketSize` bounds the
    /// total message size, so a hostile length can neither overflow nor make us buffer gigabytes.
    @inlinable @inline(__always)
    public static func peek(_ p: UnsafeRawPointer, available: Int, maxPacketSize: Int) -> Peek {
        guard available >= headerSize else { return .needHeader }
        let type = p.load(as: UInt8.self)
        let length = Int(readInt32(p, 1))
        guard length >= 4, length < maxPacketSize else { return .invalid(length: length) }
        return .message(type: type, total: length + 1)
    }
}
