// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "pgmux",
    targets: [
        // C libraries, wrapped by modulemap + shim header (libev's ev_*_init are macros).
        .systemLibrary(name: "CLibEV", path: "Sources/CLibEV"),
        .systemLibrary(name: "COpenSSL", path: "Sources/COpenSSL", pkgConfig: "openssl",
                       providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CAres", path: "Sources/CAres", pkgConfig: "libcares",
                       providers: [.apt(["libc-ares-dev"])]),
        .systemLibrary(name: "CLibPQ", path: "Sources/CLibPQ", pkgConfig: "libpq",
                       providers: [.apt(["libpq-dev"])]),
        // auth_type = pam (pgmux's PAM checks run on worker threads).
        .systemLibrary(name: "CPAM", path: "Sources/CPAM", providers: [.apt(["libpam0g-dev"])]),
        // ldap in the hba file / auth_type = ldap (OpenLDAP's client library, on worker threads).
        .systemLibrary(name: "CLDAP", path: "Sources/CLDAP", providers: [.apt(["libldap-dev"])]),
        // gss in the hba file (MIT Kerberos' GSSAPI library, on worker threads).
        .systemLibrary(name: "CGSSAPI", path: "Sources/CGSSAPI", providers: [.apt(["libkrb5-dev"])]),
        // Pure Swift: protocol, config, auth, pooling rules. No sockets, no libev.
        // Cross-module optimization lets the shell inline and specialize the core's generic
        // queues and scanners; without it the relay called them unspecialized, through runtime
        // metadata lookups (callgrind: about 10% fewer instructions per transaction with it).
        .target(name: "PgmuxCore", dependencies: ["COpenSSL"],
                swiftSettings: [.unsafeFlags(["-cross-module-optimization"])]),
        // The libev shell: sockets, watchers, buffers; turns socket events into core events.
        // The loop is single-threaded and its state is reached through unowned references, so
        // runtime exclusivity checks (a third of the relay's instructions under callgrind) only
        // cost. Bounds and overflow checks, which guard untrusted lengths, stay on.
        .target(name: "PgmuxIO", dependencies: ["PgmuxCore", "CLibEV", "COpenSSL", "CAres", "CPAM", "CLDAP", "CGSSAPI"],
                swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"])]),
        .executableTarget(name: "pgmux", dependencies: ["PgmuxIO", "PgmuxCore"]),
        .testTarget(name: "PgmuxCoreTests", dependencies: ["PgmuxCore"]),
        .testTarget(name: "PgmuxIOTests", dependencies: ["PgmuxIO", "CLibEV"]),
        .testTarget(name: "IntegrationTests", dependencies: ["pgmux", "PgmuxCore", "CLibPQ", "COpenSSL"]),
    ]
)
