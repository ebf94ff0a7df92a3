import Foundation
import Glibc

/// A protocol-level client on a Unix socket, for what libpq hides: the BackendKeyData a pooler
/// hands out, and a CancelRequest sent to a process of our choosing (libpq sends it to the
/// address it is connected to). Logs in only where no password is asked (auth_type = trust).
final class RawSession {
    let fd: Int32
    /// The 8 bytes of BackendKeyData, big-endian.
    private(set) var cancelKey: UInt64 = 0

    /// Connects to `<dir>/.s.PGSQL.<port>`.
    init(dir: String, port: Int, timeout: Double = 15) throws {
        fd = try Self.connect(path: "\(dir)/.s.PGSQL.\(port)", timeout: timeout)
    }

    deinit { close(fd) }

    static func connect(path: String, timeout: Double) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            for (i, b) in path.utf8.enumerated() { p[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { close(fd); throw PostgresCluster.Failure(description: "connect \(path): errno \(errno)") }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    /// Sends a CancelRequest for `key` to the process behind `dir`, and waits until it closes the
    /// connection (as PQcancel does).
    static func cancel(key: UInt64, dir: String, port: Int) throws {
        let fd = try connect(path: "\(dir)/.s.PGSQL.\(port)", timeout: 15)
        defer { close(fd) }
        var m = be32(16) + be32(80877102)
        for i in 0..<8 { m.append(UInt8(truncatingIfNeeded: key >> (56 - 8 * UInt64(i)))) }
        _ = m.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var b: UInt8 = 0
        while recv(fd, &b, 1, 0) > 0 {}
    }

    /// Startup as `user` to `database`; reads up to ReadyForQuery, keeping the cancel key.
    func login(user: String, database: String) throws {
        var body = be32(196608)
        for (k, v) in [("user", user), ("database", database)] { body += Array(k.utf8) + [0] + Array(v.utf8) + [0] }
        body.append(0)
        write(be32(Int32(body.count + 4)) + body)
        for (type, payload) in try messages(until: UInt8(ascii: "Z")) {
            if type == UInt8(ascii: "E") { throw PostgresCluster.Failure(description: "login: \(Self.fields(payload))") }
            if type == UInt8(ascii: "K") { cancelKey = payload.prefix(8).reduce(0) { $0 << 8 | UInt64($1) } }
        }
    }

    /// Sends a simple Query without waiting.
    func send(query: String) {
        let body = Array(query.utf8) + [0]
        write([UInt8(ascii: "Q")] + be32(Int32(body.count + 4)) + body)
    }

    /// Reads to ReadyForQuery: the SQLSTATE of an error, nil if the query succeeded.
    func finishQuery() throws -> String? {
        var state: String?
        for (type, payload) in try messages(until: UInt8(ascii: "Z")) where type == UInt8(ascii: "E") {
            state = Self.fields(payload)[UInt8(ascii: "C")]
        }
        return state
    }

    private func write(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    private var pending: [UInt8] = []

    private func messages(until last: UInt8) throws -> [(UInt8, [UInt8])] {
        var out: [(UInt8, [UInt8])] = []
        var buf = [UInt8](repeating: 0, count: 8192)
        while true {
            while pending.count >= 5 {
                let len = Int(pending[1]) << 24 | Int(pending[2]) << 16 | Int(pending[3]) << 8 | Int(pending[4])
                guard pending.count >= 1 + len else { break }
                out.append((pending[0], Array(pending[5..<1 + len])))
                pending.removeFirst(1 + len)
                if out.last!.0 == last { return out }
            }
            let n = recv(fd, &buf, buf.count, 0)
            guard n > 0 else { throw PostgresCluster.Failure(description: "connection ended or timed out (\(out.map { Character(UnicodeScalar($0.0)) }))") }
            pending += buf[0..<n]
        }
    }

    private static func fields(_ payload: [UInt8]) -> [UInt8: String] {
        var out: [UInt8: String] = [:]
        for f in payload.split(separator: 0) where !f.isEmpty {
            out[f.first!] = String(decoding: f.dropFirst(), as: UTF8.self)
        }
        return out
    }

    private static func be32(_ v: Int32) -> [UInt8] { withUnsafeBytes(of: v.bigEndian, Array.init) }
    private func be32(_ v: Int32) -> [UInt8] { Self.be32(v) }
}
