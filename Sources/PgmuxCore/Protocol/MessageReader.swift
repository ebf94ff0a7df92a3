/// Reads the bodies of the few backend messages the pooler must understand (login replies,
/// ParameterStatus, ErrorResponse). Every accessor is bounds-checked: a short or malformed body
/// yields nil, never a trap.
public struct MessageReader {
    public let body: [UInt8]
    public internal(set) var offset = 0

    public init(_ body: [UInt8]) { self.body = body }
    public init(_ body: UnsafeRawBufferPointer) { self.body = Array(body) }

    public var remaining: Int { body.count - offset }

    public mutating func int32() -> Int32? {
        guard remaining >= 4 else { return nil }
        let v = body.withUnsafeBytes { Framing.readInt32($0.baseAddress!, offset) }
        offset += 4
        return v
    }

    public mutating func byte() -> UInt8? {
        guard remaining >= 1 else { return nil }
        defer { offset += 1 }
        return body[offset]
    }

    public mutating func cString() -> String? {
        guard let nul = body[offset...].firstIndex(of: 0) else { return nil }
        defer { offset = nul + 1 }
        return String(decoding: body[offset..<nul], as: UTF8.self)
    }

    public mutating func rest() -> [UInt8] {
        defer { offset = body.count }
        return Array(body[offset...])
    }

    /// ErrorResponse / NoticeResponse fields keyed by their code byte.
    public static func errorFields(_ body: [UInt8]) -> [UInt8: String] {
        var r = MessageReader(body)
        var fields: [UInt8: String] = [:]
        while let code = r.byte(), code != 0, let value = r.cString() { fields[code] = value }
        return fields
    }

    /// The columns of a DataRow (nil for SQL NULL); nil when the body is malformed.
    public static func dataRow(_ body: [UInt8]) -> [String?]? {
        var r = MessageReader(body)
        guard r.remaining >= 2 else { return nil }
        let count = Int(body[0]) << 8 | Int(body[1])
        r.offset = 2
        var out: [String?] = []
        for _ in 0..<count {
            guard let len = r.int32() else { return nil }
            if len < 0 { out.append(nil); continue }
            guard Int(len) <= r.remaining else { return nil }
            out.append(String(decoding: body[r.offset..<(r.offset + Int(len))], as: UTF8.self))
            r.offset += Int(len)
        }
        return out
    }

    /// ParameterStatus name and value.
    public static func parameterStatus(_ body: [UInt8]) -> (String, String)? {
        var r = MessageReader(body)
        guard let name = r.cString(), let value = r.cString() else { return nil }
        return (name, value)
    }
}

/// SQLSTATE codes the pooler uses for its own errors.
public enum SQLState {
    public static let protocolViolation = "08P01"
    public static let invalidPassword = "28P01"
    public static let invalidAuthorization = "28000"
    public static let connectionFailure = "08006"
    public static let tooManyConnections = "53300"
    public static let invalidCatalogName = "3D000"
    /// "the database system is starting up" (and shutting down, in recovery): transient.
    public static let cannotConnectNow = "57P03"
    public static let invalidParameterValue = "22023"
    public static let featureNotSupported = "0A000"
}
