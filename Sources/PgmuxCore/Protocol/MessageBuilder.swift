/// Builds the few messages the pooler writes itself (login, errors, its own queries). These are
/// off the relay hot path, so a growable byte array is fine here.
public struct MessageBuilder {
    public private(set) var bytes: [UInt8] = []

    /// One allocation for the usual message or two (an empty array would grow two or three
    /// times on the way, callgrind: a third of a login's array allocations).
    public init() { bytes.reserveCapacity(128) }

    /// Starts a typed message; `end` patches its length.
    private mutating func begin(_ type: UInt8) -> Int {
        bytes.append(type)
        let at = bytes.count
        for _ in 0..<4 { bytes.append(0) }
        return at
    }

    private mutating func end(_ at: Int) {
        let length = UInt32(bytes.count - at)
        bytes[at] = UInt8(length >> 24); bytes[at + 1] = UInt8(truncatingIfNeeded: length >> 16)
        bytes[at + 2] = UInt8(truncatingIfNeeded: length >> 8); bytes[at + 3] = UInt8(truncatingIfNeeded: length)
    }

    private mutating func int32(_ v: Int32) {
        let u = UInt32(bitPattern: v)
        bytes.append(UInt8(u >> 24)); bytes.append(UInt8(truncatingIfNeeded: u >> 16))
        bytes.append(UInt8(truncatingIfNeeded: u >> 8)); bytes.append(UInt8(truncatingIfNeeded: u))
    }

    private mutating func int16(_ v: Int16) {
        let u = UInt16(bitPattern: v)
        bytes.append(UInt8(u >> 8)); bytes.append(UInt8(truncatingIfNeeded: u))
    }

    private mutating func cString(_ s: String) {
        // Element by element: `filter` would build a temporary array per string.
        for b in s.utf8 where b != 0 { bytes.append(b) }
        bytes.append(0)
    }

    // MARK: backend messages (pooler → client)

    public mutating func authenticationOk() { let a = begin(UInt8(ascii: "R")); int32(0); end(a) }
    public mutating func authenticationCleartext() { let a = begin(UInt8(ascii: "R")); int32(3); end(a) }
    public mutating func authenticationMD5(salt: [UInt8]) {
        let a = begin(UInt8(ascii: "R")); int32(5); bytes.append(contentsOf: salt); end(a)
    }
    public mutating func authenticationSASL(mechanisms: [String]) {
        let a = begin(UInt8(ascii: "R")); int32(10)
        for m in mechanisms { cString(m) }
        bytes.append(0); end(a)
    }
    public mutating func authenticationSASLContinue(_ data: [UInt8]) {
        let a = begin(UInt8(ascii: "R")); int32(11); bytes.append(contentsOf: data); end(a)
    }
    public mutating func authenticationGSS() { let a = begin(UInt8(ascii: "R")); int32(7); end(a) }
    public mutating func authenticationGSSContinue(_ data: [UInt8]) {
        let a = begin(UInt8(ascii: "R")); int32(8); bytes.append(contentsOf: data); end(a)
    }
    public mutating func authenticationSASLFinal(_ data: [UInt8]) {
        let a = begin(UInt8(ascii: "R")); int32(12); bytes.append(contentsOf: data); end(a)
    }
    public mutating func parameterStatus(_ name: String, _ value: String) {
        let a = begin(UInt8(ascii: "S")); cString(name); cString(value); end(a)
    }
    public mutating func backendKeyData(_ key: UInt64) {
        let a = begin(UInt8(ascii: "K"))
        int32(Int32(truncatingIfNeeded: key >> 32)); int32(Int32(truncatingIfNeeded: key)); end(a)
    }
    public mutating func readyForQuery(_ status: UInt8) {
        let a = begin(UInt8(ascii: "Z")); bytes.append(status); end(a)
    }
    /// ErrorResponse ('E') or NoticeResponse ('N') with severity, SQLSTATE and message, as
    /// PgBouncer sends them (fields S, V, C, M).
    public mutating func errorResponse(severity: String, code: String, message: String, notice: Bool = false) {
        let a = begin(UInt8(ascii: notice ? "N" : "E"))
        bytes.append(UInt8(ascii: "S")); cString(severity)
        bytes.append(UInt8(ascii: "V")); cString(severity)
        bytes.append(UInt8(ascii: "C")); cString(code)
        bytes.append(UInt8(ascii: "M")); cString(message)
        bytes.append(0); end(a)
    }
    /// ErrorResponse ('E') or NoticeResponse ('N') carrying exactly `fields`, in order (the admin
    /// console sends S, C, M only, with no V field).
    public mutating func errorResponse(fields: [(code: UInt8, value: String)], notice: Bool = false) {
        let a = begin(UInt8(ascii: notice ? "N" : "E"))
        for f in fields { bytes.append(f.code); cString(f.value) }
        bytes.append(0); end(a)
    }
    public mutating func rowDescription(_ columns: [(name: String, typeOID: Int32, size: Int16)]) {
        let a = begin(UInt8(ascii: "T")); int16(Int16(columns.count))
        for c in columns {
            cString(c.name); int32(0); int16(0); int32(c.typeOID); int16(c.size); int32(-1); int16(0)
        }
        end(a)
    }
    public mutating func dataRow(_ values: [String?]) {
        let a = begin(UInt8(ascii: "D")); int16(Int16(values.count))
        for v in values {
            if let v { int32(Int32(v.utf8.count)); bytes.append(contentsOf: v.utf8) } else { int32(-1) }
        }
        end(a)
    }
    public mutating func commandComplete(_ tag: String) { let a = begin(UInt8(ascii: "C")); cString(tag); end(a) }
    public mutating func emptyQueryResponse() { let a = begin(UInt8(ascii: "I")); end(a) }
    public mutating func negotiateProtocolVersion(minor: Int32, unsupported: [String]) {
        let a = begin(UInt8(ascii: "v")); int32(0x30000 | minor); int32(Int32(unsupported.count))
        for o in unsupported { cString(o) }
        end(a)
    }

    // MARK: frontend messages (pooler → server)

    public mutating func startupMessage(_ parameters: [(String, String)]) {
        let at = bytes.count
        bytes.append(contentsOf: [0, 0, 0, 0]); int32(196608)
        for (k, v) in parameters { cString(k); cString(v) }
        bytes.append(0); end(at)
    }
    public mutating func cancelRequest(_ key: UInt64) {
        int32(16); int32(StartupPacket.cancelRequestCode)
        int32(Int32(truncatingIfNeeded: key >> 32)); int32(Int32(truncatingIfNeeded: key))
    }
    /// Parse + Bind (text parameters) + Describe portal + Execute + Sync: one extended-protocol
    /// round trip for the pooler's own parameterized queries (auth_query).
    public mutating func extendedQuery(_ sql: String, parameters: [String]) {
        var a = begin(UInt8(ascii: "P")); cString(""); cString(sql); int16(0); end(a)
        a = begin(UInt8(ascii: "B")); cString(""); cString(""); int16(0); int16(Int16(parameters.count))
        for p in parameters { int32(Int32(p.utf8.count)); bytes.append(contentsOf: p.utf8) }
        int16(0); end(a)
        a = begin(UInt8(ascii: "D")); bytes.append(UInt8(ascii: "P")); cString(""); end(a)
        a = begin(UInt8(ascii: "E")); cString(""); int32(0); end(a)
        a = begin(UInt8(ascii: "S")); end(a)
    }
    /// Any message from its type and body.
    public mutating func raw(_ type: UInt8, _ body: [UInt8]) {
        let a = begin(type); bytes.append(contentsOf: body); end(a)
    }
    public mutating func sslRequest() { int32(8); int32(StartupPacket.sslRequestCode) }
    public mutating func query(_ sql: String) { let a = begin(UInt8(ascii: "Q")); cString(sql); end(a) }
    public mutating func password(_ text: String) { let a = begin(UInt8(ascii: "p")); cString(text); end(a) }
    public mutating func saslInitialResponse(mechanism: String, data: [UInt8]) {
        let a = begin(UInt8(ascii: "p")); cString(mechanism); int32(Int32(data.count))
        bytes.append(contentsOf: data); end(a)
    }
    public mutating func saslResponse(_ data: [UInt8]) {
        let a = begin(UInt8(ascii: "p")); bytes.append(contentsOf: data); end(a)
    }
    public mutating func terminate() { let a = begin(UInt8(ascii: "X")); end(a) }
}
