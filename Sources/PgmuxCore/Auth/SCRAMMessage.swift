/// Why a SCRAM exchange failed. The pooler tells clients only the generic PgBouncer text
/// (`SASL authentication failed`); `message` is for logs and for server-login failures.
public enum SCRAMFailure: Error, Equatable, Sendable {
    /// The peer's message does not follow RFC 5802's grammar.
    case malformed(String)
    /// The client asked for channel binding (`p=`); there is no TLS binding to offer here.
    case channelBindingNotSupported
    /// The nonce in a later message does not continue the one agreed earlier.
    case nonceMismatch
    /// Wrong password, or the mock exchange of an unknown user.
    case authenticationFailed
    /// The server's `v=` signature does not prove it knows the password: possible impostor.
    case serverSignatureMismatch
    /// The server ended the exchange with `e=<text>`.
    case serverError(String)
    /// Pass-through keys were derived with another salt/iteration count than the server uses.
    case passThroughMismatch
    /// A message arrived in the wrong state (e.g. a second client-final).
    case outOfOrder
    /// The server asked for more PBKDF2 iterations than `SCRAMSecret.maxIterations`.
    case tooManyIterations(Int)

    public var message: String {
        switch self {
        case .malformed(let what): return "malformed SCRAM message (\(what))"
        case .channelBindingNotSupported: return "SCRAM channel binding (gs2 flag 'p') is not supported"
        case .nonceMismatch: return "invalid SCRAM response (nonce does not match)"
        case .authenticationFailed: return "SCRAM authentication failed"
        case .serverSignatureMismatch: return "incorrect server signature"
        case .serverError(let text): return "SCRAM error from server: \(text)"
        case .passThroughMismatch:
            return "SCRAM pass-through keys do not match the server's salt/iterations"
        case .outOfOrder: return "SCRAM message out of order"
        case .tooManyIterations(let n):
            return "server asked for \(n) SCRAM iterations, more than pgmux accepts (\(SCRAMSecret.maxIterations))"
        }
    }
}

/// Nonce generation for SCRAM exchanges. Exchanges take a `nonceSource` closure (called once, at
/// init) so tests can replay RFC vectors; production uses `SCRAMNonce.random`.
public enum SCRAMNonce {
    /// PostgreSQL's nonce: 18 random bytes, base64 encoded (24 printable characters, no ',').
    public static func random() -> [UInt8] {
        Array(Crypto.base64Encode(Crypto.randomBytes(SCRAMSyntax.rawNonceLength)).utf8)
    }
}

/// Helpers for RFC 5802 messages, which are `attr=value` pairs separated by commas.
/// Why a cursor instead of splitting: the client-final message must be cut exactly before `,p=`
/// (AuthMessage uses the bytes verbatim), and every step must fail softly on truncation.
enum SCRAMSyntax {
    static let comma = UInt8(ascii: ",")
    static let equals = UInt8(ascii: "=")
    static let mechanism = "SCRAM-SHA-256"
    static let mechanismPlus = "SCRAM-SHA-256-PLUS"
    /// PostgreSQL's nonce length: 18 random bytes, base64 encoded (24 characters).
    static let rawNonceLength = 18

    /// RFC 5802 `printable`: %x21-2B / %x2D-7E (visible ASCII except ',').
    static func isPrintable(_ bytes: ArraySlice<UInt8>) -> Bool {
        bytes.allSatisfy { $0 >= 0x21 && $0 <= 0x7e && $0 != comma }
    }

    static func isAttributeName(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
    }

    /// Strict decimal parse for iteration counts: digits only, no sign, no overflow.
    static func parsePositiveInt(_ bytes: ArraySlice<UInt8>, max: Int) -> Int? {
        guard !bytes.isEmpty, bytes.count <= 10 else { return nil }
        var value = 0
        for c in bytes {
            guard c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(c - UInt8(ascii: "0"))
        }
        guard value > 0, value <= max else { return nil }
        return value
    }
}

/// Reads `x=value` attributes left to right from a SCRAM message.
struct SCRAMCursor {
    let bytes: [UInt8]
    private(set) var position: Int

    init(_ bytes: [UInt8], position: Int = 0) {
        self.bytes = bytes
        self.position = position
    }

    var atEnd: Bool { position >= bytes.count }

    /// The next attribute's name without consuming it, if the cursor is at `x=`.
    func peekAttribute() -> UInt8? {
        guard position < bytes.count, position + 1 < bytes.count,
              SCRAMSyntax.isAttributeName(bytes[position]), bytes[position + 1] == SCRAMSyntax.equals
        else { return nil }
        return bytes[position]
    }

    /// Reads `name=value` followed by ',' or the end; the value is returned as a slice.
    mutating func read(_ name: UInt8) -> ArraySlice<UInt8>? {
        guard peekAttribute() == name else { return nil }
        let start = position + 2
        var end = start
        while end < bytes.count, bytes[end] != SCRAMSyntax.comma { end += 1 }
        let value = bytes[start..<end]
        position = end
        if position < bytes.count { position += 1 }  // consume ','
        return value
    }

    /// Reads any attribute (for extensions); returns its name.
    mutating func readAny() -> (name: UInt8, value: ArraySlice<UInt8>)? {
        guard let name = peekAttribute(), let value = read(name) else { return nil }
        return (name, value)
    }

    /// True if the previous read ended at a ',' that has nothing after it ("x=1," is malformed).
    var endsWithDanglingComma: Bool {
        position == bytes.count && !bytes.isEmpty && bytes[bytes.count - 1] == SCRAMSyntax.comma
    }
}
