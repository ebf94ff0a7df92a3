/// Bounds-checked reader for the bodies of 'p' and 'R' messages during login.
///
/// Why: those bodies come from unauthenticated peers; every read returns nil instead of trapping
/// on truncation, and lengths are validated before any arithmetic.
struct AuthBodyReader {
    let bytes: [UInt8]
    private(set) var position = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var remaining: Int { bytes.count - position }
    var atEnd: Bool { position >= bytes.count }

    /// A NUL-terminated string (without the NUL); nil if no NUL follows.
    mutating func readCString() -> [UInt8]? {
        guard position <= bytes.count, let nul = bytes[position...].firstIndex(of: 0) else { return nil }
        let s = Array(bytes[position..<nul])
        position = nul + 1
        return s
    }

    /// Big-endian int32.
    mutating func readInt32() -> Int32? {
        guard remaining >= 4 else { return nil }
        var v: UInt32 = 0
        for k in 0..<4 { v = (v << 8) | UInt32(bytes[position + k]) }
        position += 4
        return Int32(bitPattern: v)
    }

    mutating func readBytes(_ count: Int) -> [UInt8]? {
        guard count >= 0, count <= remaining else { return nil }
        let out = Array(bytes[position..<(position + count)])
        position += count
        return out
    }

    mutating func readRest() -> [UInt8] {
        let out = position < bytes.count ? Array(bytes[position...]) : []
        position = bytes.count
        return out
    }
}
