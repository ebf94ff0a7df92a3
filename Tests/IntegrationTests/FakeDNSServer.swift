import Foundation
import Glibc

/// A tiny DNS server on a loopback UDP port, for pgmux's `dns_nameservers`: answers A queries
/// with the IPv4 address the test set for the name (NXDOMAIN for names it did not), AAAA with
/// no record, SOA with the serial the test set; or, when `silent`, never answers at all.
final class FakeDNSServer: @unchecked Sendable {
    let port: Int
    private let fd: Int32
    private let lock = NSLock()
    private var addresses: [String: String] = [:]
    private var serial: UInt32 = 1
    private var stopped = false
    private var queryCount = 0
    private let done = DispatchSemaphore(value: 0)

    init(silent: Bool = false) throws {
        let sock = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var chosen = 0
        for _ in 0..<50 {
            let candidate = PostgresCluster.freePort()
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(candidate).bigEndian)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(sock, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if rc == 0 { chosen = candidate; break }
        }
        guard chosen != 0 else {
            close(sock)
            throw PostgresCluster.Failure(description: "no UDP port for the fake DNS server")
        }
        fd = sock
        port = chosen
        var tv = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        Thread { [self] in serve(silent: silent) }.start()
    }

    /// `dns_nameservers` value.
    var nameserver: String { "127.0.0.1:\(port)" }

    func set(_ name: String, _ ipv4: String?) { lock.withLock { addresses[name] = ipv4 } }
    func setSerial(_ s: UInt32) { lock.withLock { serial = s } }
    var queries: Int { lock.withLock { queryCount } }

    func stop() {
        lock.withLock { stopped = true }
        done.wait()
        close(fd)
    }

    deinit { if !lock.withLock({ stopped }) { stop() } }

    private func serve(silent: Bool) {
        var buf = [UInt8](repeating: 0, count: 1500)
        while !lock.withLock({ stopped }) {
            var from = sockaddr_storage()
            var fromLen = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let n = withUnsafeMutablePointer(to: &from) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, &buf, buf.count, 0, $0, &fromLen) }
            }
            guard n > 12 else { continue }
            lock.withLock { queryCount += 1 }
            if silent { continue }
            guard let reply = answer(Array(buf[0..<n])) else { continue }
            _ = withUnsafePointer(to: &from) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, reply, reply.count, 0, $0, fromLen) }
            }
        }
        done.signal()
    }

    /// The reply to one query: the question copied, then at most one answer record.
    private func answer(_ q: [UInt8]) -> [UInt8]? {
        var i = 12
        var labels: [String] = []
        while i < q.count, q[i] != 0 {
            let len = Int(q[i])
            guard i + 1 + len <= q.count else { return nil }
            labels.append(String(decoding: q[(i + 1)..<(i + 1 + len)], as: UTF8.self))
            i += 1 + len
        }
        guard i + 5 <= q.count else { return nil }
        let questionEnd = i + 5
        let qtype = Int(q[i + 1]) << 8 | Int(q[i + 2])
        let name = labels.joined(separator: ".").lowercased()
        let (ipv4, soaSerial) = lock.withLock { (addresses[name], serial) }
        var record: [UInt8] = []
        var rcode: UInt8 = 0
        if qtype == 6 {  // SOA, for any zone
            record = [0xC0, 0x0C, 0, 6, 0, 1, 0, 0, 0, 1, 0, 22, 0, 0] + be32(Int(soaSerial)) + be32(60) + be32(60) + be32(60) + be32(1)
        } else if let ipv4 {
            if qtype == 1 {
                let parts = ipv4.split(separator: ".").compactMap { UInt8($0) }
                record = [0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4] + parts
            }
        } else {
            rcode = 3  // NXDOMAIN
        }
        var r = Array(q[0..<2]) + [0x81, 0x80 | rcode, 0, 1, 0, record.isEmpty ? 0 : 1, 0, 0, 0, 0]
        r += q[12..<questionEnd]
        return r + record
    }
}
