/// What the pooler, as a SCRAM client, says about channel binding (RFC 5802 gs2 header), as libpq:
/// * `unsupported` — `n,,`: no TLS (or binding disabled), mechanism SCRAM-SHA-256;
/// * `notOffered` — `y,,`: TLS is up and we could bind, but the server did not offer
///   SCRAM-SHA-256-PLUS (a server that did offer it treats `y` as a downgrade attack);
/// * `bound(data)` — `p=tls-server-end-point,,`: SCRAM-SHA-256-PLUS, `data` being the hash of the
///   server's certificate (RFC 5929), which both ends fold into the proof.
public enum SCRAMChannelBinding: Equatable, Sendable {
    case unsupported
    case notOffered
    case bound([UInt8])

    public var gs2Header: [UInt8] {
        switch self {
        case .unsupported: return Array("n,,".utf8)
        case .notOffered: return Array("y,,".utf8)
        case .bound: return Array("p=tls-server-end-point,,".utf8)
        }
    }

    /// The bytes the client-final `c=` attribute carries, base64-encoded.
    var attributeData: [UInt8] {
        if case .bound(let data) = self { return gs2Header + data }
        return gs2Header
    }

    public var mechanism: String {
        if case .bound = self { return SCRAMSyntax.mechanismPlus }
        return SCRAMSyntax.mechanism
    }
}
