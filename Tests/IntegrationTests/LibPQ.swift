import CLibPQ
import Foundation

/// A small libpq wrapper: the real client library applications use, driven synchronously.
final class PQConnection: @unchecked Sendable {
    let conn: OpaquePointer
    private var finished = false

    struct Error: Swift.Error, CustomStringConvertible {
        let description: String
        let sqlstate: String?
    }

    init(_ conninfo: String) throws {
        conn = PQconnectdb(conninfo)
        guard PQstatus(conn) == CONNECTION_OK else {
            let message = String(cString: PQerrorMessage(conn))
            throw Error(description: message, sqlstate: nil)
        }
    }

    deinit { finish() }

    /// Closes the connection now (Terminate, then close).
    func finish() {
        if !finished { PQfinish(conn); finished = true }
    }

    /// Runs a query; returns the rows of the last result as text (nil for NULL).
    @discardableResult
    func query(_ sql: String) throws -> [[String?]] {
        guard let res = PQexec(conn, sql) else { throw Error(description: String(cString: PQerrorMessage(conn)), sqlstate: nil) }
        defer { PQclear(res) }
        return try rows(res)
    }

    /// Simple query returning column names too (for SHOW in the admin console).
    func queryWithColumns(_ sql: String) throws -> (columns: [String], rows: [[String?]]) {
        guard let res = PQexec(conn, sql) else { throw Error(description: String(cString: PQerrorMessage(conn)), sqlstate: nil) }
        defer { PQclear(res) }
        let rows = try rows(res)
        let columns = (0..<PQnfields(res)).map { String(cString: PQfname(res, $0)) }
        return (columns, rows)
    }

    func scalar(_ sql: String) throws -> String? { try query(sql).first?.first ?? nil }

    /// Extended protocol with parameters (Parse/Bind/Describe/Execute/Sync).
    func queryParams(_ sql: String, _ params: [String]) throws -> [[String?]] {
        var cstrings = params.map { strdup($0) }
        defer { cstrings.forEach { free($0) } }
        let res = cstrings.withUnsafeMutableBufferPointer { buf -> OpaquePointer? in
            buf.withMemoryRebound(to: UnsafePointer<CChar>?.self) { p in
                PQexecParams(conn, sql, Int32(params.count), nil, p.baseAddress, nil, nil, 0)
            }
        }
        guard let res else { throw Error(description: String(cString: PQerrorMessage(conn)), sqlstate: nil) }
        defer { PQclear(res) }
        return try rows(res)
    }

    /// Protocol-level prepared statement (Parse + Sync).
    func prepare(_ name: String, _ sql: String) throws {
        guard let res = PQprepare(conn, name, sql, 0, nil) else { throw Error(description: String(cString: PQerrorMessage(conn)), sqlstate: nil) }
        defer { PQclear(res) }
        _ = try rows(res)
    }

    /// Bind + Execute + Sync of a named statement.
    func execPrepared(_ name: String, _ params: [String] = []) throws -> [[String?]] {
        var cstrings = params.map { strdup($0) }
        defer { cstrings.forEach { free($0) } }
        let res = cstrings.withUnsafeMutableBufferPointer { buf -> OpaquePointer? in
            buf.withMemoryRebound(to: UnsafePointer<CChar>?.self) { p in
                PQexecPrepared(conn, name, Int32(params.count), p.baseAddress, nil, nil, 0)
            }
        }
        guard let res else { throw Error(description: String(cString: PQerrorMessage(conn)), sqlstate: nil) }
        defer { PQclear(res) }
        return try rows(res)
    }

    /// Describe of a statement: its parameter and column counts.
    func describePrepared(_ name: String) throws -> (params: Int, columns: Int) {
        guard let res = PQdescribePrepared(conn, name) else { throw Error(description: String(cString: PQerrorMessage(conn)), sqlstate: nil) }
        defer { PQclear(res) }
        _ = try rows(res)
        return (Int(PQnparams(res)), Int(PQnfields(res)))
    }

    private func rows(_ res: OpaquePointer) throws -> [[String?]] {
        let status = PQresultStatus(res)
        guard status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK || status == PGRES_COPY_IN || status == PGRES_COPY_OUT else {
            let state = PQresultErrorField(res, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            // libpq keeps a FATAL sent just before a close in the connection's message, not the result's.
            let text = String(cString: PQresultErrorMessage(res)) + String(cString: PQerrorMessage(conn))
            throw Error(description: text, sqlstate: state)
        }
        var out: [[String?]] = []
        for r in 0..<PQntuples(res) {
            var row: [String?] = []
            for c in 0..<PQnfields(res) {
                row.append(PQgetisnull(res, r, c) == 1 ? nil : String(cString: PQgetvalue(res, r, c)))
            }
            out.append(row)
        }
        return out
    }

    /// COPY ... FROM STDIN with the given text lines.
    func copyIn(_ sql: String, lines: [String]) throws {
        try query(sql)
        for line in lines {
            let data = Array((line + "\n").utf8)
            guard data.withUnsafeBufferPointer({ $0.withMemoryRebound(to: CChar.self) { PQputCopyData(conn, $0.baseAddress, Int32($0.count)) } }) == 1 else {
                throw Error(description: String(cString: PQerrorMessage(conn)), sqlstate: nil)
            }
        }
        guard PQputCopyEnd(conn, nil) == 1 else { throw Error(description: String(cString: PQerrorMessage(conn)), sqlstate: nil) }
        while let res = PQgetResult(conn) {
            defer { PQclear(res) }
            _ = try rows(res)
        }
    }

    /// COPY ... TO STDOUT: returns the text received.
    func copyOut(_ sql: String) throws -> String {
        try query(sql)
        var text = ""
        while true {
            var buf: UnsafeMutablePointer<CChar>?
            let n = PQgetCopyData(conn, &buf, 0)
            if n > 0, let buf { text += String(cString: buf); PQfreemem(buf); continue }
            break
        }
        while let res = PQgetResult(conn) { defer { PQclear(res) }; _ = try rows(res) }
        return text
    }

    /// Sends a cancel for the query in progress (from another thread).
    func cancel() -> Bool {
        guard let c = PQgetCancel(conn) else { return false }
        defer { PQfreeCancel(c) }
        var err = [CChar](repeating: 0, count: 256)
        return PQcancel(c, &err, 256) == 1
    }

    /// Waits up to `timeout` seconds for a NOTIFY; returns its channel and payload.
    func waitForNotification(timeout: Double) -> (String, String)? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            PQconsumeInput(conn)
            if let n = PQnotifies(conn) {
                defer { PQfreemem(n) }
                return (String(cString: n.pointee.relname), String(cString: n.pointee.extra))
            }
            usleep(20_000)
        }
        return nil
    }

    var sslInUse: Bool { PQsslInUse(conn) == 1 }
    func parameter(_ name: String) -> String? { PQparameterStatus(conn, name).map { String(cString: $0) } }
    var isOK: Bool { PQstatus(conn) == CONNECTION_OK }
}

func be32(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 0xff), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }

/// A StartupMessage (protocol 3.0) for a raw client.
func startupMessage(user: String, database: String) -> [UInt8] {
    let body = be32(196608) + Array("user\0\(user)\0database\0\(database)\0\0".utf8)
    return be32(body.count + 4) + body
}

func simpleQuery(_ sql: String) -> [UInt8] {
    [UInt8(ascii: "Q")] + be32(sql.utf8.count + 5) + Array(sql.utf8) + [0]
}

/// Reads from a blocking socket until the bytes end with a ReadyForQuery (or the peer stops).
func readUntilReady(_ fd: Int32) -> [UInt8] {
    var got: [UInt8] = [], buf = [UInt8](repeating: 0, count: 4096)
    while !(got.count >= 6 && got[got.count - 6] == UInt8(ascii: "Z")) {
        let n = recv(fd, &buf, buf.count, 0)
        if n <= 0 { break }
        got += buf[0..<n]
    }
    return got
}

/// Polls `condition` every `interval` seconds (50 ms) for up to `timeout` seconds; its last value.
func waitUntil(_ timeout: Double, every interval: Double = 0.05, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        usleep(useconds_t(interval * 1e6))
    }
    return try condition()
}

/// A blocking TCP connection to 127.0.0.1:`port`, or nil when nothing listens there.
func loopbackConnect(port: Int) -> Int32? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    if rc == 0 { return fd }
    close(fd)
    return nil
}

/// Sends raw bytes to a TCP port and returns whatever comes back until the peer closes.
func rawExchange(port: Int, send bytes: [UInt8], timeout: Double = 3) -> [UInt8] {
    guard let fd = loopbackConnect(port: port) else { return [] }
    defer { close(fd) }
    var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = recv(fd, &buf, buf.count, 0)
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return out
}

/// Collects NoticeResponse texts of a connection (libpq notice processor).
final class NoticeCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var collected: [String] = []
    var messages: [String] { lock.lock(); defer { lock.unlock() }; return collected }

    func attach(to c: PQConnection) {
        PQsetNoticeProcessor(c.conn, { arg, message in
            guard let arg, let message else { return }
            let me = Unmanaged<NoticeCollector>.fromOpaque(arg).takeUnretainedValue()
            me.lock.lock(); me.collected.append(String(cString: message)); me.lock.unlock()
        }, Unmanaged.passUnretained(self).toOpaque())
    }
}
