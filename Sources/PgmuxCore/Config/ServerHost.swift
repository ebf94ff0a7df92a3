/// One server of a `[databases]` entry: a host name, IP address, Unix socket directory (`/dir`)
/// or abstract socket (`@name`), with its port.
///
/// `host=a,b,c` names several servers, as libpq and PgBouncer 1.24+ take it; `port=` gives
/// either one port for all of them or one per host (libpq; PgBouncer reads only one port).
/// No host at all means the Unix socket in `unix_socket_dir`, written here as an empty name.
public struct ServerHost: Hashable, Sendable {
    public var name: String
    public var port: Int

    public init(name: String, port: Int) {
        self.name = name
        self.port = port
    }

    /// Reached over a Unix socket (no host, a directory, or an abstract socket name).
    public var isUnixSocket: Bool { name.isEmpty || name.hasPrefix("/") || name.hasPrefix("@") }

    /// How logs and SHOW HOSTS name it: `host:port`, `[v6]:port`, or the socket directory and port.
    public var description: String {
        if name.contains(":") { return "[\(name)]:\(port)" }
        return "\(name.isEmpty ? "unix_socket_dir" : name):\(port)"
    }

    /// The comma-separated names of `host=` (blanks around names dropped); `[""]` without one.
    public static func names(_ host: String?) -> [String] {
        guard let host, !host.isEmpty else { return [""] }
        return host.split(separator: ",", omittingEmptySubsequences: false)
            .map { String($0.trimmingASCIIWhitespace) }
    }

    /// The servers of `host=` with `port=`: one port for all, or the i-th port for the i-th host
    /// (the parser has checked that the counts match).
    public static func list(host: String?, ports: [Int]) -> [ServerHost] {
        let names = names(host)
        return names.indices.map { i in
            ServerHost(name: names[i], port: ports.count == names.count ? ports[i] : ports[0])
        }
    }
}
