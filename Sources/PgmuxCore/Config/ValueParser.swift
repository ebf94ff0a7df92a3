/// Typed value conversion with PgBouncer's rules, producing located errors.
///
/// One instance per value being parsed carries file/line/key so every failure can name them and
/// state what is allowed. Rules mirror libusual's `cf_set_*`: integers go through `strtol(.., 0)`
/// semantics (0x hex, leading-0 octal), booleans are the integers 0/1 only, times are decimal
/// seconds with an optional fraction, lists are comma-separated.
struct ValueParser {
    let file: String
    let line: Int
    let key: String
    let value: String

    func fail(_ expected: String) -> ConfigError {
        ConfigError(file: file, line: line, key: key,
                    message: "invalid value \"\(value)\" for \(key): expected \(expected)")
    }

    /// Any integer with strtol base-0 syntax: optional sign, `0x` hex, leading `0` octal, decimal.
    func integer() throws(ConfigError) -> Int {
        guard let v = Self.parseInteger(value.trimmingASCIIWhitespace) else {
            throw fail("an integer (0x prefix for hex, leading 0 for octal)")
        }
        return v
    }

    func integer(in range: ClosedRange<Int>) throws(ConfigError) -> Int {
        let v = try integer()
        guard range.contains(v) else {
            // "Open-ended" limits read better as ">= n" unless the value overshot the 32-bit cap.
            if range.upperBound >= Int(Int32.max) && v < range.lowerBound {
                throw fail("an integer >= \(range.lowerBound)")
            }
            throw fail("an integer in \(range.lowerBound)..\(range.upperBound)")
        }
        return v
    }

    /// Sizes, counts, limits: negative makes no sense, 32-bit like PgBouncer's `int`.
    func nonNegative() throws(ConfigError) -> Int {
        try integer(in: 0...Int(Int32.max))
    }

    func port() throws(ConfigError) -> Int {
        try integer(in: 1...65535)
    }

    /// `port=5432` or, as libpq takes it with a host list, `port=5432,5433` (one per host).
    func portList() throws(ConfigError) -> [Int] {
        let parts = value.split(separator: ",", omittingEmptySubsequences: false)
        var ports: [Int] = []
        for part in parts {
            guard let p = Self.parseInteger(part.trimmingASCIIWhitespace), (1...65535).contains(p) else {
                throw fail("a port in 1..65535, or a comma list of them (one per host)")
            }
            ports.append(p)
        }
        return ports
    }

    /// Only `0` and `1`: PgBouncer rejects on/off/true/false, and accepting them here would let a
    /// config work with pgmux that PgBouncer refuses.
    func bool() throws(ConfigError) -> Bool {
        switch value.trimmingASCIIWhitespace {
        case "0": return false
        case "1": return true
        default: throw fail("0 or 1 (booleans are integers; on/off/true/false are not accepted)")
        }
    }

    /// Seconds, fractions allowed (`0.5`); PgBouncer stores µs, we keep Double seconds.
    func seconds() throws(ConfigError) -> Double {
        let text = value.trimmingASCIIWhitespace
        var digits = 0
        var dots = 0
        for c in text {
            if c == "." { dots += 1 } else if c.isASCII && c.isNumber { digits += 1 } else { digits = -1; break }
        }
        guard digits > 0, dots <= 1, let v = Double(String(text)) else {
            throw fail("a non-negative number of seconds (fractions allowed, e.g. 30 or 0.5)")
        }
        return v
    }

    func list() -> [String] {
        Self.parseList(value)
    }

    func string() -> String { value }

    func choice<E: ConfigEnum>(_ type: E.Type) throws(ConfigError) -> E {
        if let v = E.parse(value.trimmingASCIIWhitespace.lowercased()) { return v }
        throw fail(E.allowedText)
    }

    static func parseList(_ text: String) -> [String] {
        text.split(separator: ",").map { String($0.trimmingASCIIWhitespace) }.filter { !$0.isEmpty }
    }

    static func parseInteger(_ text: Substring) -> Int? {
        var s = text
        var negative = false
        if s.first == "+" || s.first == "-" {
            negative = s.first == "-"
            s = s.dropFirst()
        }
        var radix = 10
        if s.hasPrefix("0x") || s.hasPrefix("0X") {
            radix = 16
            s = s.dropFirst(2)
        } else if s.count > 1 && s.first == "0" {
            radix = 8
            s = s.dropFirst()
        }
        guard !s.isEmpty, s.allSatisfy({ $0.isASCII && $0.isHexDigit }), let magnitude = Int(s, radix: radix) else {
            return nil
        }
        return negative ? -magnitude : magnitude
    }
}

/// String-valued enumerations in configs; errors list the accepted spellings.
public protocol ConfigEnum: CaseIterable, Sendable {
    /// Canonical spelling, as written in configs and shown by SHOW CONFIG.
    var configName: String { get }
    /// Extra accepted spellings mapped to their case.
    static var aliases: [String: Self] { get }
}

extension ConfigEnum {
    public static var aliases: [String: Self] { [:] }

    /// Case-insensitive lookup of canonical names and aliases.
    public static func parse(_ text: some StringProtocol) -> Self? {
        let lower = text.lowercased()
        if let v = allCases.first(where: { $0.configName == lower }) { return v }
        return aliases[lower]
    }

    /// "a, b or c" for error messages.
    static var allowedText: String {
        let names = allCases.map(\.configName)
        guard names.count > 1 else { return names.first ?? "" }
        return names.dropLast().joined(separator: ", ") + " or " + names.last!
    }
}
