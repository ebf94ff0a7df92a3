/// The untyped packets a client may open a connection with: StartupMessage, SSLRequest,
/// GSSENCRequest and CancelRequest. They carry an int32 length and an int32 code, no type byte.
public enum StartupPacket: Equatable, Sendable {
    case sslRequest
    case gssEncRequest
    case cancel(key: UInt64)
    /// Protocol 3.x startup; `minor` > 0 asks for negotiation; `parameters` in wire order.
    case startup(minor: Int, parameters: [(String, String)])

    public static func == (a: StartupPacket, b: StartupPacket) -> Bool {
        switch (a, b) {
        case (.sslRequest, .sslRequest), (.gssEncRequest, .gssEncRequest): return true
        case let (.cancel(x), .cancel(y)): return x == y
        case let (.startup(m1, p1), .startup(m2, p2)):
            return m1 == m2 && p1.count == p2.count && zip(p1, p2).allSatisfy { $0 == $1 }
        default: return false
        }
    }

    public static let sslRequestCode: Int32 = 80877103
    public static let gssEncRequestCode: Int32 = 80877104
    public static let cancelRequestCode: Int32 = 80877102
    /// PostgreSQL's own limit for a startup packet (MAX_STARTUP_PACKET_LENGTH).
    public static let maxLength = 10000
    /// Bound on the number of parameters (PostgreSQL has no such bound; a startup packet with
    /// thousands of keys is an attack, not a client).
    public static let maxParameters = 64

    public enum ParseError: Error, Equatable {
        case badLength
        case oldProtocol
        case unsupportedProtocol(Int32)
        case layout(String)
    }

    /// Length of the packet starting at `p`, or nil when fewer than 4 bytes are available.
    public static func length(_ p: UnsafeRawPointer, available: Int) -> Int? {
        available >= 4 ? Int(Framing.readInt32(p, 0)) : nil
    }

    /// Parses one whole startup-class packet (`bytes` includes the length word).
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> Result<StartupPacket, ParseError> {
        guard bytes.count >= 8, bytes.count <= maxLength, let base = bytes.baseAddress,
              Int(Framing.readInt32(base, 0)) == bytes.count else { return .failure(.badLength) }
        let code = Framing.readInt32(base, 4)
        switch code {
        case sslRequestCode: return bytes.count == 8 ? .success(.sslRequest) : .failure(.badLength)
        case gssEncRequestCode: return bytes.count == 8 ? .success(.gssEncRequest) : .failure(.badLength)
        case cancelRequestCode:
            guard bytes.count == 16 else { return .failure(.badLength) }
            var key: UInt64 = 0
            for i in 8..<16 { key = key << 8 | UInt64(bytes[i]) }
            return .success(.cancel(key: key))
        default: break
        }
        let major = Int(code >> 16), minor = Int(code & 0xffff)
        if major < 3 { return .failure(.oldProtocol) }
        guard major == 3 else { return .failure(.unsupportedProtocol(code)) }
        // Body: (name NUL value NUL)* NUL
        guard bytes.count > 8, bytes[bytes.count - 1] == 0 else {
            return .failure(.layout("invalid startup packet layout: expected terminator as last byte"))
        }
        var params: [(String, String)] = []
        var i = 8
        let end = bytes.count - 1
        while i < end {
            guard let nameEnd = indexOfNul(bytes, from: i), nameEnd < end else {
                return .failure(.layout("invalid startup packet layout: expected terminator as last byte"))
            }
            guard let valueEnd = indexOfNul(bytes, from: nameEnd + 1), valueEnd < end else {
                return .failure(.layout("invalid startup packet layout: expected terminator as last byte"))
            }
            guard let name = utf8(bytes, i, nameEnd), let value = utf8(bytes, nameEnd + 1, valueEnd) else {
                return .failure(.layout("invalid startup packet: parameter is not valid UTF-8"))
            }
            guard !name.isEmpty else {
                return .failure(.layout("invalid startup packet layout: empty parameter name"))
            }
            params.append((name, value))
            guard params.count <= maxParameters else {
                return .failure(.layout("invalid startup packet: too many parameters"))
            }
            i = valueEnd + 1
        }
        return .success(.startup(minor: minor, parameters: params))
    }

    private static func indexOfNul(_ b: UnsafeRawBufferPointer, from: Int) -> Int? {
        var j = from
        while j < b.count { if b[j] == 0 { return j }; j += 1 }
        return nil
    }

    private static func utf8(_ b: UnsafeRawBufferPointer, _ from: Int, _ to: Int) -> String? {
        String(validating: UnsafeRawBufferPointer(rebasing: b[from..<to]), as: UTF8.self)
    }
}
