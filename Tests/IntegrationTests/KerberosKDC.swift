import Foundation
import Glibc

/// A throwaway MIT Kerberos realm (PGMUX.TEST): krb5kdc from Debian's krb5-kdc with its database,
/// krb5.conf and kdc.conf in a temp dir, listening on 127.0.0.1 only; stopped at exit. It holds
/// the service principal postgres/localhost (its keytab is `keytab`, for krb_server_keyfile) and
/// the test user scram_user, whose ticket `ticketCache` holds.
final class KerberosKDC: @unchecked Sendable {
    static let realm = "PGMUX.TEST"

    let dir: String
    let port: Int
    var config: String { dir + "/krb5.conf" }
    var keytab: String { dir + "/server.keytab" }
    var ticketCache: String { "FILE:" + dir + "/ccache" }
    /// The environment of a Kerberos client (or of pgmux, for the realm's settings).
    var environment: [String: String] { ["KRB5_CONFIG": config, "KRB5CCNAME": ticketCache, "KRB5RCACHETYPE": "none"] }

    struct Unavailable: Error, CustomStringConvertible { let description: String }

    static let shared: Result<KerberosKDC, Unavailable> = {
        for tool in ["/usr/sbin/krb5kdc", "/usr/sbin/kdb5_util", "/usr/sbin/kadmin.local", "/usr/bin/kinit"]
        where !FileManager.default.isExecutableFile(atPath: tool) {
            return .failure(Unavailable(description: "\(tool) missing (Debian: krb5-kdc, krb5-admin-server, krb5-user)"))
        }
        do { return .success(try KerberosKDC()) } catch { return .failure(Unavailable(description: "KDC did not start: \(error)")) }
    }()

    private init() throws {
        dir = PostgresCluster.shared.dir + "/kdc"
        port = PostgresCluster.freePort()
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        chmod(dir, 0o755)
        try """
            [libdefaults]
              default_realm = \(Self.realm)
              dns_canonicalize_hostname = false
              rdns = false
              dns_lookup_kdc = false
              dns_lookup_realm = false
            [realms]
              \(Self.realm) = {
                kdc = 127.0.0.1:\(port)
              }
            [domain_realm]
              localhost = \(Self.realm)
            """.write(toFile: config, atomically: false, encoding: .utf8)
        chmod(config, 0o644)
        try """
            [kdcdefaults]
              kdc_listen = 127.0.0.1:\(port)
              kdc_tcp_listen = 127.0.0.1:\(port)
            [realms]
              \(Self.realm) = {
                database_name = \(dir)/principal
                key_stash_file = \(dir)/stash
                acl_file = \(dir)/kadm5.acl
              }
            """.write(toFile: dir + "/kdc.conf", atomically: false, encoding: .utf8)
        let env = ["KRB5_CONFIG": config, "KRB5_KDC_PROFILE": dir + "/kdc.conf"]
        try Shell.run("/usr/sbin/kdb5_util", ["create", "-s", "-r", Self.realm, "-P", "kdc-master-pw"], env: env)
        for query in ["addprinc -pw \(PostgresCluster.scramUser.1) \(PostgresCluster.scramUser.0)",
                      "addprinc -randkey postgres/localhost", "ktadd -k \(keytab) postgres/localhost"] {
            try Shell.run("/usr/sbin/kadmin.local", ["-q", query], env: env)
        }
        chmod(keytab, 0o644)  // pgmux runs as postgres in the tests
        try Shell.run("/usr/sbin/krb5kdc", ["-P", dir + "/kdc.pid"], env: env)
        guard waitUntil(10, { loopbackConnect(port: port).map { close($0); return true } ?? false }) else {
            throw Unavailable(description: "krb5kdc is not listening on \(port)")
        }
        // kinit reads the password from its terminal or, without one, from stdin.
        let script = "echo '\(PostgresCluster.scramUser.1)' | /usr/bin/kinit \(PostgresCluster.scramUser.0)"
        try Shell.run("/bin/sh", ["-c", script], env: environment)
        atexit {
            guard case .success(let k) = KerberosKDC.shared,
                  let text = try? String(contentsOfFile: k.dir + "/kdc.pid", encoding: .utf8),
                  let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { return }
            kill(pid, SIGTERM)
        }
    }
}
