/// PostgreSQL 17's direct TLS (libpq `sslnegotiation=direct`): the client starts the TLS handshake
/// at once instead of sending SSLRequest first, saving a round trip. The rules are PostgreSQL's
/// (`ProcessSSLStartup` in backend_startup.c and the ALPN callback of be-secure-openssl.c):
/// * a first byte of 0x16 (a TLS handshake record) starts TLS — no startup packet can begin with
///   it, as its length would be hundreds of megabytes;
/// * a client that offers ALPN must offer `postgresql`, on either path, or the handshake fails
///   with the `no_application_protocol` alert;
/// * a direct TLS client must have used ALPN: one that did not is dropped after the handshake
///   (it may be a client of another protocol sent to the PostgreSQL port by mistake).
public enum DirectTLS {
    public static let handshakeRecordType: UInt8 = 0x16

    /// The ALPN protocol id registered for PostgreSQL.
    public static let protocolName: [UInt8] = Array("postgresql".utf8)

    /// Logged (nothing is sent) when a direct TLS client skipped ALPN, in PostgreSQL's words.
    public static let missingALPN = "received direct SSL connection request without ALPN protocol negotiation extension"

    /// Whether the first byte a client sends opens a TLS handshake rather than a startup packet.
    public static func startsTLS(_ firstByte: UInt8) -> Bool { firstByte == handshakeRecordType }

    /// The server's ALPN answer to a client's protocol list (RFC 7301 wire form: a length byte,
    /// then that many bytes, repeated).
    public enum Selection: Equatable {
        /// Select the `postgresql` entry, which starts at this offset of the list.
        case postgresql(offset: Int)
        /// The list is malformed or lacks `postgresql`: refuse the handshake.
        case refuse
    }

    public static func select(_ offered: UnsafeRawBufferPointer) -> Selection {
        var i = 0
        while i < offered.count {
            let length = Int(offered[i])
            guard length > 0, i + 1 + length <= offered.count else { return .refuse }
            if length == protocolName.count, offered[(i + 1)..<(i + 1 + length)].elementsEqual(protocolName) {
                return .postgresql(offset: i + 1)
            }
            i += 1 + length
        }
        return .refuse
    }
}
