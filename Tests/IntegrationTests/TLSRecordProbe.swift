import Foundation
import Glibc
import COpenSSL

/// A raw protocol client over TLS that sees the records on the wire: OpenSSL works on memory
/// BIOs, and the bytes between them and the socket pass through here, so the test can measure
/// every record the peer sends (libpq hides them). Blocking socket with a receive timeout.
final class TLSRecordProbe {
    private let fd: Int32
    private let ctx: OpaquePointer
    private let ssl: OpaquePointer
    private let fromWire: OpaquePointer  // BIO OpenSSL reads
    private let toWire: OpaquePointer    // BIO OpenSSL writes
    private var raw: [UInt8] = []        // received bytes not yet split into records
    /// Length of every application-data record received (ciphertext, header excluded).
    private(set) var applicationRecords: [Int] = []

    struct Failure: Error, CustomStringConvertible { let description: String }

    /// Connects, sends SSLRequest and completes the handshake (no certificate check).
    init(port: Int, timeout: Int = 10) throws {
        guard let fd = loopbackConnect(port: port) else { throw Failure(description: "cannot connect to \(port)") }
        self.fd = fd
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        ctx = SSL_CTX_new(TLS_client_method())!
        ssl = SSL_new(ctx)!
        fromWire = BIO_new(BIO_s_mem())!
        toWire = BIO_new(BIO_s_mem())!
        SSL_set_bio(ssl, fromWire, toWire)
        SSL_set_connect_state(ssl)
        let request = be32(8) + be32(80877103)
        _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var answer: UInt8 = 0
        guard recv(fd, &answer, 1, 0) == 1, answer == UInt8(ascii: "S") else {
            throw Failure(description: "SSLRequest refused")
        }
        while true {
            let r = SSL_do_handshake(ssl)
            if r == 1 { break }
            guard SSL_get_error(ssl, r) == SSL_ERROR_WANT_READ else { throw Failure(description: "handshake failed") }
            try flush()
            try receive()
        }
        try flush()
    }

    deinit {
        SSL_free(ssl)  // frees both BIOs
        SSL_CTX_free(ctx)
        close(fd)
    }

    /// Encrypts `bytes` and sends them.
    func write(_ bytes: [UInt8]) throws {
        _ = bytes.withUnsafeBytes { SSL_write(ssl, $0.baseAddress, Int32($0.count)) }
        try flush()
    }

    /// Decrypted bytes until they end with ReadyForQuery.
    func readUntilReady() throws -> [UInt8] {
        var plain: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while !(plain.count >= 6 && plain[plain.count - 6] == UInt8(ascii: "Z")) {
            let n = SSL_read(ssl, &buf, Int32(buf.count))
            if n > 0 { plain += buf[0..<Int(n)]; continue }
            try flush()  // post-handshake messages (a session ticket's ack) may be owed
            try receive()
        }
        return plain
    }

    /// Moves what OpenSSL wrote to the socket.
    private func flush() throws {
        var buf = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = BIO_read(toWire, &buf, Int32(buf.count))
            if n <= 0 { return }
            guard send(fd, buf, Int(n), Int32(MSG_NOSIGNAL)) == Int(n) else { throw Failure(description: "send failed") }
        }
    }

    /// Reads from the socket, notes the length of each whole record, hands the bytes to OpenSSL.
    private func receive() throws {
        var buf = [UInt8](repeating: 0, count: 65536)
        let n = recv(fd, &buf, buf.count, 0)
        guard n > 0 else { throw Failure(description: n == 0 ? "peer closed" : "receive timed out") }
        raw += buf[0..<n]
        while raw.count >= 5 {
            let length = Int(raw[3]) << 8 | Int(raw[4])
            guard raw.count >= 5 + length else { break }
            if raw[0] == 23 { applicationRecords.append(length) }
            raw.removeFirst(5 + length)
        }
        _ = buf.withUnsafeBytes { BIO_write(fromWire, $0.baseAddress, Int32(n)) }
    }
}
