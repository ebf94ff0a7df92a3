import Foundation
import Glibc

/// A raw client answering an AuthenticationCleartextPassword request with `password`; returns
/// the SQLSTATE of the ErrorResponse it then gets, or nil when it got none (e.g. logged in).
/// libpq shows no SQLSTATE for login failures, so the pam / ldap tests check it this way.
func cleartextLoginSQLState(port: Int, user: String, database: String, password: String,
                            timeout: Int = 10) -> String? {
    guard let fd = loopbackConnect(port: port) else { return nil }
    defer { close(fd) }
    var tv = timeval(tv_sec: timeout, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    func sendAll(_ bytes: [UInt8]) { _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }
    func readMessage() -> (UInt8, [UInt8])? {
        var header = [UInt8](repeating: 0, count: 5)
        guard recv(fd, &header, 5, Int32(MSG_WAITALL)) == 5 else { return nil }
        let length = Int(header[1]) << 24 | Int(header[2]) << 16 | Int(header[3]) << 8 | Int(header[4])
        guard length >= 4, length < 1 << 20 else { return nil }
        var body = [UInt8](repeating: 0, count: length - 4)
        if !body.isEmpty { guard recv(fd, &body, body.count, Int32(MSG_WAITALL)) == body.count else { return nil } }
        return (header[0], body)
    }
    sendAll(startupMessage(user: user, database: database))
    guard let (type, body) = readMessage(), type == UInt8(ascii: "R"), body == [0, 0, 0, 3] else { return nil }
    sendAll([UInt8(ascii: "p")] + be32(password.utf8.count + 5) + Array(password.utf8) + [0])
    while let (type, body) = readMessage() {
        guard type == UInt8(ascii: "E") else { continue }
        var i = 0
        while i < body.count, body[i] != 0 {
            let code = body[i]
            var end = i + 1
            while end < body.count, body[end] != 0 { end += 1 }
            if code == UInt8(ascii: "C") { return String(decoding: body[(i + 1)..<end], as: UTF8.self) }
            i = end + 1
        }
        return nil
    }
    return nil
}
