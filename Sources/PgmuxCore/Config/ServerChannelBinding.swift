/// `server_channel_binding` (a pgmux setting, libpq's `channel_binding` for server logins): whether
/// pgmux binds its SCRAM logins to PostgreSQL to the TLS session.
/// * `disable` — never (SCRAM-SHA-256 only);
/// * `prefer` — SCRAM-SHA-256-PLUS when the server connection uses TLS and the server offers it;
/// * `require` — refuse a server that does not authenticate with SCRAM-SHA-256-PLUS over TLS
///   (and answer no cleartext or md5 request, which would hand it the password or its hash).
public enum ServerChannelBinding: String, ConfigEnum, Equatable, Sendable {
    case disable, prefer, require
    public var configName: String { rawValue }
}
