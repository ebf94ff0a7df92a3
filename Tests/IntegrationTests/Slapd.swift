import Foundation
import Glibc

/// A throwaway OpenLDAP server (Debian's slapd, configured from a temp dir with slapd.conf,
/// listening on ldap://127.0.0.1:<port>, with StartTLS, and on ldaps://127.0.0.1:<tlsPort>, with
/// the PostgreSQL cluster's test certificate), shared by the LDAP tests and stopped at exit. Its
/// directory holds ou=people,dc=example,dc=net with the PostgreSQL test users and their
/// PostgreSQL passwords, so that the server login can reuse what the client proved.
final class Slapd: @unchecked Sendable {
    static let baseDN = "dc=example,dc=net"
    static let peopleDN = "ou=people,\(baseDN)"
    static let adminDN = "cn=admin,\(baseDN)"
    static let adminPassword = "admin_pw"

    let dir: String
    let port: Int
    let tlsPort: Int

    struct Unavailable: Error, CustomStringConvertible { let description: String }

    /// nil with the reason when slapd is not installed or does not start.
    static let shared: Result<Slapd, Unavailable> = {
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/slapd") else {
            return .failure(Unavailable(description: "slapd missing (Debian: slapd; scripts/deps.sh installs it)"))
        }
        do { return .success(try Slapd()) } catch { return .failure(Unavailable(description: "slapd did not start: \(error)")) }
    }()

    private init() throws {
        dir = PostgresCluster.shared.dir + "/slapd"
        port = PostgresCluster.freePort()
        tlsPort = PostgresCluster.freePort()
        let tls = PostgresCluster.shared.tlsDir
        try FileManager.default.createDirectory(atPath: dir + "/data", withIntermediateDirectories: true)
        let schemas = ["core", "cosine", "inetorgperson", "nis"].map { "include /etc/ldap/schema/\($0).schema" }
        try (schemas + [
            "pidfile \(dir)/slapd.pid",
            "TLSCACertificateFile \(tls)/ca.crt", "TLSCertificateFile \(tls)/server.crt",
            "TLSCertificateKeyFile \(tls)/server.key",
            "modulepath /usr/lib/ldap", "moduleload back_mdb",
            "database mdb", "maxsize 10485760",
            "suffix \"\(Self.baseDN)\"", "rootdn \"\(Self.adminDN)\"", "rootpw \(Self.adminPassword)",
            "directory \(dir)/data",
        ]).joined(separator: "\n").write(toFile: dir + "/slapd.conf", atomically: false, encoding: .utf8)
        var ldif = """
            dn: \(Self.baseDN)
            objectClass: dcObject
            objectClass: organization
            o: example
            dc: example

            dn: \(Self.peopleDN)
            objectClass: organizationalUnit
            ou: people

            """
        for (user, password) in [PostgresCluster.scramUser, PostgresCluster.md5User] {
            ldif += """

                dn: uid=\(user),\(Self.peopleDN)
                objectClass: inetOrgPerson
                uid: \(user)
                cn: \(user)
                sn: test
                mail: \(user)@example.net
                userPassword: \(password)

                """
        }
        try ldif.write(toFile: dir + "/init.ldif", atomically: false, encoding: .utf8)
        try Shell.run("/usr/sbin/slapadd", ["-f", dir + "/slapd.conf", "-l", dir + "/init.ldif"])
        try Shell.run("/usr/sbin/slapd", ["-f", dir + "/slapd.conf", "-h", "ldap://127.0.0.1:\(port)/ ldaps://127.0.0.1:\(tlsPort)/"])
        for p in [port, tlsPort] {
            guard waitUntil(10, { loopbackConnect(port: p).map { close($0); return true } ?? false }) else {
                throw Unavailable(description: "slapd is not listening on \(p)")
            }
        }
        atexit {
            guard case .success(let s) = Slapd.shared,
                  let text = try? String(contentsOfFile: s.dir + "/slapd.pid", encoding: .utf8),
                  let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { return }
            kill(pid, SIGTERM)
        }
    }
}
