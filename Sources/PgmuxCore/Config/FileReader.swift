import Glibc

/// Whole-file reading with plain POSIX calls.
///
/// Sources avoid Foundation (smaller binary, no locale surprises), so config and auth files are
/// read with open/read. Files are decoded as UTF-8 with invalid bytes replaced; the parsers only
/// care about ASCII syntax characters.
enum FileReader {
    /// Reads `path` entirely, or returns the `strerror` text of the failure.
    static func read(_ path: String) -> Result<String, FileReadFailure> {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            return .failure(FileReadFailure(reason: currentErrnoText()))
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { buf in
                Glibc.read(fd, buf.baseAddress, buf.count)
            }
            if n < 0 {
                if errno == EINTR { continue }
                return .failure(FileReadFailure(reason: currentErrnoText()))
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return .success(String(decoding: bytes, as: UTF8.self))
    }

    private static func currentErrnoText() -> String {
        String(cString: strerror(errno))
    }
}

/// Why a file could not be read (the C library's message, e.g. "No such file or directory").
struct FileReadFailure: Error {
    let reason: String
}

extension StringProtocol {
    /// Trims ASCII whitespace on both sides (config syntax is ASCII; no Foundation needed).
    var trimmingASCIIWhitespace: Substring {
        var s = self[...]
        while let c = s.first, c.isASCIIWhitespace { s = s.dropFirst() }
        while let c = s.last, c.isASCIIWhitespace { s = s.dropLast() }
        return Substring(s)
    }
}

extension Character {
    var isASCIIWhitespace: Bool {
        self == " " || self == "\t" || self == "\n" || self == "\r\n" || self == "\r" || self == "\u{0B}" || self == "\u{0C}"
    }
}
