/// Big-endian fields of takeover messages: fixed-width integers, and strings and byte strings
/// as a u32 length then the bytes.
struct TakeoverWriter {
    var out: [UInt8] = []
    mutating func u8(_ v: UInt8) { out.append(v) }
    mutating func u32(_ v: UInt32) { for s in stride(from: 24, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: v >> UInt32(s))) } }
    mutating func u64(_ v: UInt64) { for s in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: v >> UInt64(s))) } }
    mutating func bytes(_ b: [UInt8]) { u32(UInt32(b.count)); out.append(contentsOf: b) }
    mutating func string(_ s: String) { bytes(Array(s.utf8)) }
    mutating func definition(_ d: TakeoverStatement.Definition) {
        switch d {
        case .parse(let body): u8(UInt8(ascii: "P")); bytes(body)
        case .sql(let tail): u8(UInt8(ascii: "Q")); string(tail)
        }
    }
    mutating func server(_ sv: TakeoverServer) {
        string(sv.database); string(sv.user); string(sv.hostName); u32(UInt32(sv.hostPort))
        u64(sv.backendKey)
        u32(UInt32(sv.parameters.count))
        for p in sv.parameters { string(p.key); string(p.name); string(p.value) }
        u32(UInt32(sv.reportedOrder.count))
        for k in sv.reportedOrder { string(k) }
        settings(sv.settings)
        u8(sv.dirty ? 1 : 0)
        u32(UInt32(sv.statements.count))
        for st in sv.statements { u32(UInt32(st.id)); definition(st.definition) }
    }
    /// Session settings, sorted by key: key, spelling, value.
    mutating func settings(_ s: SessionSettings) {
        u32(UInt32(s.count))
        for (k, v) in s.sorted(by: { $0.key < $1.key }) { string(k); string(v.name); string(v.value) }
    }
    /// A presence byte, then the string.
    mutating func optionalString(_ s: String?) {
        if let s { u8(1); string(s) } else { u8(0) }
    }
}

/// Reads what `TakeoverWriter` wrote; every read is bounds-checked.
struct TakeoverReader {
    private let data: [UInt8]
    private var at = 0
    init(_ data: [UInt8]) { self.data = data }
    var atEnd: Bool { at == data.count }

    private mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, data.count - at >= n else { throw TakeoverMessage.Malformed("truncated") }
        defer { at += n }
        return data[at..<at + n]
    }
    mutating func u8() throws -> UInt8 { try take(1).first! }
    mutating func u32() throws -> UInt32 { try take(4).reduce(0) { $0 << 8 | UInt32($1) } }
    mutating func u64() throws -> UInt64 { try take(8).reduce(0) { $0 << 8 | UInt64($1) } }
    mutating func bytes() throws -> [UInt8] { Array(try take(Int(try u32()))) }
    mutating func string() throws -> String {
        let b = try bytes()
        guard let s = String(validating: b, as: UTF8.self) else { throw TakeoverMessage.Malformed("invalid UTF-8") }
        return s
    }
    mutating func definition() throws -> TakeoverStatement.Definition {
        switch try u8() {
        case UInt8(ascii: "P"): return .parse(try bytes())
        case UInt8(ascii: "Q"): return .sql(try string())
        default: throw TakeoverMessage.Malformed("unknown statement kind")
        }
    }
    mutating func server() throws -> TakeoverServer {
        let database = try string(), user = try string(), hostName = try string()
        let port = Int(try u32()), key = try u64()
        var parameters: [TakeoverServer.Parameter] = []
        for _ in 0..<(try count(minimumBytesEach: 12)) {
            parameters.append(TakeoverServer.Parameter(key: try string(), name: try string(), value: try string()))
        }
        var order: [String] = []
        for _ in 0..<(try count(minimumBytesEach: 4)) { order.append(try string()) }
        let settings = try settings()
        let dirty = try flag()
        var statements: [TakeoverServer.Prepared] = []
        for _ in 0..<(try count(minimumBytesEach: 9)) {
            statements.append(TakeoverServer.Prepared(id: Int(try u32()), definition: try definition()))
        }
        return TakeoverServer(database: database, user: user, hostName: hostName, hostPort: port, backendKey: key,
                              parameters: parameters, reportedOrder: order, settings: settings, dirty: dirty,
                              statements: statements)
    }
    mutating func settings() throws -> SessionSettings {
        var s: SessionSettings = [:]
        for _ in 0..<(try count(minimumBytesEach: 12)) {
            let key = try string()
            s[key] = SessionSetting(name: try string(), value: try string())
        }
        return s
    }
    mutating func flag() throws -> Bool {
        switch try u8() {
        case 0: return false
        case 1: return true
        default: throw TakeoverMessage.Malformed("bad flag")
        }
    }
    mutating func optionalString() throws -> String? {
        switch try u8() {
        case 0: return nil
        case 1: return try string()
        default: throw TakeoverMessage.Malformed("bad presence byte")
        }
    }
    /// An element count, refused when the rest of the record cannot hold that many elements of
    /// at least `minimumBytesEach` (no huge allocation or loop on a forged count).
    mutating func count(minimumBytesEach: Int) throws -> Int {
        let n = Int(try u32())
        guard n <= (data.count - at) / minimumBytesEach else { throw TakeoverMessage.Malformed("count too large") }
        return n
    }
}
