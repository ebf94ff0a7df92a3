// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "pgmux",
    targets: [
        // C libraries, wrapped by modulemap + shim header (libev's ev_*_init are macros).
        .systemLibrary(name: "CLibEV", path: "Sources/CLibEV"),
        .systemLibrary(name: "COpenSSL", path: "Sources/COpenSSL", pkgConfig: "openssl",
                       providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CLibPQ", path: "Sources/CLibPQ", pkgConfig: "libpq",
                       providers: [.apt(["libpq-dev"])]),
        // Pure Swift: protocol, config, auth, pooling rules. No sockets, no libev.
        .target(name: "PgmuxCore", dependencies: ["COpenSSL"]),
        // The libev shell: sockets, watchers, buffers; turns socket events into core events.
        .target(name: "PgmuxIO", dependencies: ["PgmuxCore", "CLibEV", "COpenSSL"]),
        .executableTarget(name: "pgmux", dependencies: ["PgmuxIO", "PgmuxCore"]),
        .testTarget(name: "PgmuxCoreTests", dependencies: ["PgmuxCore"]),
        .testTarget(name: "IntegrationTests", dependencies: ["pgmux", "PgmuxCore", "CLibPQ"]),
    ]
)
