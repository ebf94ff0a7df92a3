import Glibc

/// An IPv4 or IPv6 network (address + contiguous mask) from an HBA address field.
///
/// Stored in network byte order: 4 bytes for IPv4, 16 for IPv6. The address is kept masked, so a
/// rule written with host bits set (`10.1.2.3/8`) covers the whole network, as in PostgreSQL
/// (PgBouncer only warns about it and then never matches such a rule).
public struct HBANetwork: Sendable, Equatable, CustomStringConvertible {
    /// Network address, host bits cleared; 4 or 16 bytes.
    public let address: [UInt8]
    /// Netmask, same length as `address`.
    public let mask: [UInt8]
    /// Number of leading one bits in `mask`.
    public let prefixLength: Int
    /// True when the address as written had bits set outside the mask.
    public let hadHostBits: Bool

    public var isIPv4: Bool { address.count == 4 }

    /// Builds a network from an address and a prefix length; nil if the length is out of range.
    public init?(address raw: [UInt8], prefixLength: Int) {
        guard raw.count == 4 || raw.count == 16, prefixLength >= 0, prefixLength <= raw.count * 8 else { return nil }
        let mask = HBANetwork.mask(bytes: raw.count, prefixLength: prefixLength)
        self.init(raw: raw, mask: mask, prefixLength: prefixLength)
    }

    /// Builds a network from an address and a netmask of the same family; nil if the mask is not
    /// contiguous (leading ones, then zeros) or the lengths differ.
    public init?(address raw: [UInt8], netmask: [UInt8]) {
        guard raw.count == netmask.count, raw.count == 4 || raw.count == 16 else { return nil }
        var ones = 0
        var seenZero = false
        for byte in netmask {
            for bit in (0..<8).reversed() {
                if byte & (1 << bit) != 0 {
                    if seenZero { return nil }
                    ones += 1
                } else {
                    seenZero = true
                }
            }
        }
        self.init(raw: raw, mask: netmask, prefixLength: ones)
    }

    private init(raw: [UInt8], mask: [UInt8], prefixLength: Int) {
        var masked = raw
        var hostBits = false
        for i in 0..<raw.count {
            masked[i] = raw[i] & mask[i]
            if masked[i] != raw[i] { hostBits = true }
        }
        self.address = masked
        self.mask = mask
        self.prefixLength = prefixLength
        self.hadHostBits = hostBits
    }

    /// Parses `a.b.c.d/nn` or `x:y::z/nn`; nil if either part is invalid.
    public static func parse(cidr: String) -> HBANetwork? {
        guard let slash = cidr.firstIndex(of: "/") else { return nil }
        guard let raw = HBAAddress.parse(String(cidr[..<slash])) else { return nil }
        let digits = cidr[cidr.index(after: slash)...]
        guard !digits.isEmpty, digits.count <= 3, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
              let bits = Int(digits) else { return nil }
        return HBANetwork(address: raw, prefixLength: bits)
    }

    static func mask(bytes: Int, prefixLength: Int) -> [UInt8] {
        var mask = [UInt8](repeating: 0, count: bytes)
        var left = prefixLength
        for i in 0..<bytes where left > 0 {
            mask[i] = left >= 8 ? 0xFF : UInt8(truncatingIfNeeded: 0xFF << (8 - left))
            left -= 8
        }
        return mask
    }

    /// Whether a client address (4 or 16 bytes) lies in this network. An IPv4-mapped IPv6 client
    /// (`::ffff:a.b.c.d`, as seen on a dual-stack socket) is also compared with IPv4 networks; a
    /// plain IPv4 client never matches an IPv6 network (PgBouncer compares families).
    public func contains(_ client: [UInt8]) -> Bool {
        var candidate = client[...]
        if isIPv4, client.count == 16 {
            guard let v4 = HBAAddress.unmappedIPv4(client) else { return false }
            candidate = v4[...]
        }
        guard candidate.count == address.count else { return false }
        var i = 0
        for byte in candidate {
            if byte & mask[i] != address[i] { return false }
            i += 1
        }
        return true
    }

    /// `address/prefix` in the usual text form.
    public var description: String {
        "\(HBAAddress.format(address))/\(prefixLength)"
    }
}

/// Numeric IP address helpers (inet_pton / inet_ntop; no name resolution).
public enum HBAAddress {
    /// Parses a numeric IPv4 (`a.b.c.d`, 4 bytes) or IPv6 (16 bytes) address; nil otherwise.
    public static func parse(_ text: String) -> [UInt8]? {
        if text.contains(":") {
            var buf = [UInt8](repeating: 0, count: 16)
            let ok = buf.withUnsafeMutableBytes { inet_pton(AF_INET6, text, $0.baseAddress) }
            return ok == 1 ? buf : nil
        }
        var buf = [UInt8](repeating: 0, count: 4)
        let ok = buf.withUnsafeMutableBytes { inet_pton(AF_INET, text, $0.baseAddress) }
        return ok == 1 ? buf : nil
    }

    /// The IPv4 address inside an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), else nil.
    public static func unmappedIPv4(_ bytes: [UInt8]) -> [UInt8]? {
        guard bytes.count == 16, bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF else {
            return nil
        }
        return Array(bytes[12..<16])
    }

    /// Text form of a 4- or 16-byte address.
    public static func format(_ bytes: [UInt8]) -> String {
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        var out = [CChar](repeating: 0, count: 64)
        let ok = bytes.withUnsafeBytes { src in
            out.withUnsafeMutableBufferPointer { dst in
                inet_ntop(family, src.baseAddress, dst.baseAddress, socklen_t(dst.count))
            }
        }
        guard ok != nil else { return "?" }
        return String(decoding: out.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
