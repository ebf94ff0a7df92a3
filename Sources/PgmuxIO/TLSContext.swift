import Glibc
import COpenSSL
import PgmuxCore

/// OpenSSL contexts for both directions, built from the `client_tls_*` and `server_tls_*`
/// settings. Rebuilt on RELOAD; a failed rebuild keeps the running contexts.
final class TLSContexts {
    /// For clients connecting to pgmux (server role); nil when client_tls_sslmode = disable.
    private(set) var toClients: OpaquePointer?
    /// For pgmux connecting to PostgreSQL (client role).
    private(set) var toServers: OpaquePointer?
    /// tls-server-end-point of `toClients`' certificate, hashed once per load instead of per login.
    private var toClientsEndPoint: [UInt8]?

    struct Failure: Error, CustomStringConvertible { let description: String }

    /// Largest plaintext per TLS record sent to a client (see `makeClientFacing`).
    static let maxClientRecord = 8192

    deinit {
        if let c = toClients { SSL_CTX_free(c) }
        if let c = toServers { SSL_CTX_free(c) }
    }

    /// Builds both contexts; throws (keeping the old ones) when a file or setting is wrong.
    func load(_ s: Settings) throws {
        let newClients = s.clientTlsSslmode == .disable ? nil : try Self.makeClientFacing(s)
        let newServers = s.serverTlsSslmode == .disable ? nil : try Self.makeServerFacing(s)
        if let c = toClients { SSL_CTX_free(c) }
        if let c = toServers { SSL_CTX_free(c) }
        toClients = newClients
        toServers = newServers
        toClientsEndPoint = newClients.flatMap { SSL_CTX_get0_certificate($0) }.flatMap(Self.serverEndPoint)
    }

    /// The channel-binding data of a client's TLS session: the cached hash when the session
    /// came from the current context (a handshake that began before a RELOAD has the old one).
    func endPoint(of ssl: OpaquePointer) -> [UInt8]? {
        if let ctx = toClients, SSL_get_SSL_CTX(ssl) == ctx { return toClientsEndPoint }
        return SSL_get_certificate(ssl).flatMap(Self.serverEndPoint)
    }

    static func lastError() -> String {
        let code = ERR_get_error()
        guard code != 0 else { return "unknown TLS error" }
        var buf = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buf, 256)
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func common(_ method: OpaquePointer?, protocols: String, ciphers: String, tls13Ciphers: String?,
                               what: String) throws -> OpaquePointer {
        guard let ctx = SSL_CTX_new(method) else { throw Failure(description: "\(what): SSL_CTX_new failed") }
        guard let range = TLSProtocols.range(protocols) else {
            SSL_CTX_free(ctx)
            throw Failure(description: "\(what)_protocols: cannot parse \"\(protocols)\"")
        }
        func version(_ v: Int) -> Int32 { [10: TLS1_VERSION, 11: TLS1_1_VERSION, 12: TLS1_2_VERSION, 13: TLS1_3_VERSION][v] ?? TLS1_2_VERSION }
        _ = pgmux_SSL_CTX_set_min_proto_version(ctx, version(range.min))
        _ = pgmux_SSL_CTX_set_max_proto_version(ctx, version(range.max))
        // Partial writes and a moving buffer: the relay hands SSL_write whatever it has.
        _ = pgmux_SSL_CTX_set_mode(ctx, Int(SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER))
        if !["default", "secure", "normal", "fast", ""].contains(ciphers.lowercased()) {
            guard SSL_CTX_set_cipher_list(ctx, ciphers) == 1 else {
                SSL_CTX_free(ctx)
                throw Failure(description: "\(what)_ciphers: \(lastError())")
            }
        }
        if let suites = tls13Ciphers, !suites.isEmpty {
            guard SSL_CTX_set_ciphersuites(ctx, suites) == 1 else {
                SSL_CTX_free(ctx)
                throw Failure(description: "\(what == "client_tls" ? "client_tls13_ciphers" : "server_tls13_ciphers"): \(lastError())")
            }
        }
        return ctx
    }

    private static func makeClientFacing(_ s: Settings) throws -> OpaquePointer {
        let ctx = try common(TLS_server_method(), protocols: s.clientTlsProtocols, ciphers: s.clientTlsCiphers,
                             tls13Ciphers: s.clientTls13Ciphers, what: "client_tls")
        // client_tls_ecdhcurve: auto keeps OpenSSL's groups, none leaves them too (ECDHE is
        // always available in TLS 1.3), anything else is a group list such as "prime256v1".
        let curve = s.clientTlsEcdhcurve.lowercased()
        if curve != "auto" && curve != "none" && !curve.isEmpty {
            guard pgmux_SSL_CTX_set1_groups_list(ctx, s.clientTlsEcdhcurve) == 1 else {
                SSL_CTX_free(ctx); throw Failure(description: "client_tls_ecdhcurve \(s.clientTlsEcdhcurve): \(lastError())")
            }
        }
        // client_tls_dheparams: auto/legacy use OpenSSL's built-in groups sized to the key; none disables DHE.
        _ = pgmux_SSL_CTX_set_dh_auto(ctx, s.clientTlsDheparams.lowercased() == "none" ? 0 : 1)
        guard SSL_CTX_use_certificate_chain_file(ctx, s.clientTlsCertFile) == 1 else {
            SSL_CTX_free(ctx); throw Failure(description: "client_tls_cert_file \(s.clientTlsCertFile): \(lastError())")
        }
        guard SSL_CTX_use_PrivateKey_file(ctx, s.clientTlsKeyFile, SSL_FILETYPE_PEM) == 1, SSL_CTX_check_private_key(ctx) == 1 else {
            SSL_CTX_free(ctx); throw Failure(description: "client_tls_key_file \(s.clientTlsKeyFile): \(lastError())")
        }
        // Records of at most 8 kB, as PostgreSQL sends (its send buffer is 8192 bytes). libpq's
        // asynchronous API reads at least 8 kB at a time and then waits on the socket: the rest
        // of a larger record stays decrypted inside OpenSSL, the socket never becomes readable
        // again, and a nonblocking client (psycopg, and any driver polling PQsocket) waits
        // forever for a result that has arrived. PgBouncer's records are its 4 kB pkt_buf.
        _ = pgmux_SSL_CTX_set_max_send_fragment(ctx, Self.maxClientRecord)
        // Session resumption for clients that offer it (a resumed handshake skips the
        // certificate's private-key operation, most of a full handshake's cost). The session ID
        // context is random per load, as PgBouncer's: sessions live only in this process, and
        // resumption with client certificates needs one. TLS 1.3 sends one ticket, not OpenSSL's
        // default two: a resuming client gets a new one each time, and clients that never
        // resume (libpq) cost one ticket less per handshake.
        var sid = Crypto.randomBytes(Int(SSL_MAX_SID_CTX_LENGTH))
        _ = SSL_CTX_set_session_id_context(ctx, &sid, UInt32(sid.count))
        _ = SSL_CTX_set_num_tickets(ctx, 1)
        // ALPN, as PostgreSQL 17: a client that offers protocols must offer "postgresql".
        SSL_CTX_set_alpn_select_cb(ctx, selectALPN, nil)
        if s.clientTlsSslmode == .verifyCA || s.clientTlsSslmode == .verifyFull {
            guard SSL_CTX_load_verify_locations(ctx, s.clientTlsCaFile, nil) == 1 else {
                SSL_CTX_free(ctx); throw Failure(description: "client_tls_ca_file \(s.clientTlsCaFile): \(lastError())")
            }
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
        }
        return ctx
    }

    private static func makeServerFacing(_ s: Settings) throws -> OpaquePointer {
        let ctx = try common(TLS_client_method(), protocols: s.serverTlsProtocols, ciphers: s.serverTlsCiphers,
                             tls13Ciphers: s.serverTls13Ciphers, what: "server_tls")
        if s.serverTlsSslmode == .verifyCA || s.serverTlsSslmode == .verifyFull {
            guard SSL_CTX_load_verify_locations(ctx, s.serverTlsCaFile, nil) == 1 else {
                SSL_CTX_free(ctx); throw Failure(description: "server_tls_ca_file \(s.serverTlsCaFile): \(lastError())")
            }
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        }
        if !s.serverTlsCertFile.isEmpty {
            guard SSL_CTX_use_certificate_chain_file(ctx, s.serverTlsCertFile) == 1,
                  SSL_CTX_use_PrivateKey_file(ctx, s.serverTlsKeyFile, SSL_FILETYPE_PEM) == 1 else {
                SSL_CTX_free(ctx); throw Failure(description: "server_tls_cert_file/key_file: \(lastError())")
            }
        }
        return ctx
    }

    /// RFC 5929 tls-server-end-point: the hash of our own certificate, with the certificate's
    /// signature hash (SHA-256 when that is MD5 or SHA-1), for SCRAM-SHA-256-PLUS.
    static func serverEndPoint(_ cert: OpaquePointer) -> [UInt8]? {
        var digestNID: Int32 = 0, keyNID: Int32 = 0
        var md = EVP_sha256()
        if OBJ_find_sigid_algs(X509_get_signature_nid(cert), &digestNID, &keyNID) == 1,
           digestNID != NID_md5, digestNID != NID_sha1, let named = EVP_get_digestbyname(OBJ_nid2sn(digestNID)) {
            md = named
        }
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var len: UInt32 = 0
        guard X509_digest(cert, md, &out, &len) == 1 else { return nil }
        return Array(out[0..<Int(len)])
    }

    /// tls-server-end-point of the peer's certificate (PostgreSQL's, on a server connection), for
    /// SCRAM-SHA-256-PLUS toward it.
    static func peerEndPoint(_ ssl: OpaquePointer) -> [UInt8]? {
        guard let cert = SSL_get1_peer_certificate(ssl) else { return nil }
        defer { X509_free(cert) }
        return serverEndPoint(cert)
    }

    /// Whether the client's handshake agreed on an ALPN protocol (only "postgresql" can be).
    static func usedALPN(_ ssl: OpaquePointer) -> Bool {
        var data: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &length)
        return data != nil && length > 0
    }

    /// The common name of the verified peer certificate, if any (auth_type cert).
    static func peerCommonName(_ ssl: OpaquePointer) -> String? {
        guard SSL_get_verify_result(ssl) == X509_V_OK, let cert = SSL_get1_peer_certificate(ssl) else { return nil }
        defer { X509_free(cert) }
        guard let subject = X509_get_subject_name(cert) else { return nil }
        var buf = [CChar](repeating: 0, count: 256)
        let n = X509_NAME_get_text_by_NID(subject, NID_commonName, &buf, 256)
        guard n > 0 else { return nil }
        return String(decoding: buf.prefix(Int(n)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `TLSv1.3/TLS_AES_256_GCM_SHA384`, as the login log line shows it.
    static func describe(_ ssl: OpaquePointer) -> String {
        let version = SSL_get_version(ssl).map { String(cString: $0) } ?? "?"
        let cipher = SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)).map { String(cString: $0) } ?? "?"
        return "\(version)/\(cipher)"
    }
}

/// OpenSSL's ALPN callback for client handshakes: the choice is `DirectTLS.select`'s; the answer
/// points into the client's own list, which OpenSSL keeps for the handshake.
private func selectALPN(_ ssl: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafePointer<UInt8>?>?,
                        _ outLength: UnsafeMutablePointer<UInt8>?, _ offered: UnsafePointer<UInt8>?, _ offeredLength: UInt32,
                        _ context: UnsafeMutableRawPointer?) -> Int32 {
    guard let out, let outLength, let offered else { return SSL_TLSEXT_ERR_ALERT_FATAL }
    switch DirectTLS.select(UnsafeRawBufferPointer(start: offered, count: Int(offeredLength))) {
    case .postgresql(let offset):
        out.pointee = offered + offset
        outLength.pointee = UInt8(DirectTLS.protocolName.count)
        return SSL_TLSEXT_ERR_OK
    case .refuse:
        return SSL_TLSEXT_ERR_ALERT_FATAL
    }
}
