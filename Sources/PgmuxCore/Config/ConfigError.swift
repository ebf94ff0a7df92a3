/// A configuration problem, always located precisely.
///
/// PgBouncer refuses to start (or to RELOAD) on a bad config line and logs the file and line;
/// operators fix configs from that log line, so every error here carries the file, the line and,
/// when one is involved, the key. For bad values `message` also states what would be accepted.
public struct ConfigError: Error, Equatable, CustomStringConvertible, Sendable {
    /// File the problem was found in (as given or as resolved for `%include`).
    public let file: String
    /// 1-based line number; 0 when the problem concerns the file as a whole (e.g. it cannot be opened).
    public let line: Int
    /// The offending key, or nil when the line has none (syntax errors, missing sections).
    public let key: String?
    /// Human-readable explanation, including the allowed values for bad values.
    public let message: String

    public init(file: String, line: Int, key: String? = nil, message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    /// `"<file>:<line>: <key>: <message>"`, or `"<file>:<line>: <message>"` without a key.
    public var description: String {
        if let key {
            return "\(file):\(line): \(key): \(message)"
        }
        return "\(file):\(line): \(message)"
    }
}
