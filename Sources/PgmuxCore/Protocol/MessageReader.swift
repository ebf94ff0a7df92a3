/// Reads the bodies of the few backend messages the pooler must understand (login replies,
/// ParameterStatus, ErrorResponse). Every accessor is bounds-checked: a short or malformed body
/// yields nil, never a trap.
public struct MessageReader {
    public let body: [UInt8]
    public private(set) var offset = 0

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
    public static let adminShutdown = "57P01"
    public static let queryCanceled = "57014"
}
