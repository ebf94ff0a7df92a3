/// The session parameters a pooler must keep consistent per client (PgBouncer's varcache): the
/// client's choices are replayed with `SET` on each server it is lent, so moving between servers is
/// invisible to it.
public enum ParameterTracking {
    /// Always tracked (lowercased).
    public static let always: Set<String> = [
        "client_encoding", "datestyle", "timezone", "standard_conforming_strings", "application_name",
    ]

    public static func trackedSet(extra: [String]) -> Set<String> {
        always.union(extra.map { $0.lowercased() })
    }


    /// What to do with the `options` startup parameter (PgBouncer's `set_startup_options`).
    public enum OptionsVerdict: Equatable {
        /// Accepted; these tracked settings (lowercased name → value) apply to the client.
        case accepted([String: String])
        /// Not made of `-c name=value` / `--name=value` items, even when `options` is ignored.
        case malformed
        /// An untracked setting that `ignore_startup_parameters` does not cover.
        case unsupported(name: String, value: String)
    }

    public static let malformedOptionsText =
        "unsupported options startup parameter: only '-c config=val' and '--config=val' are allowed"

    /// Tracked settings in `options` are always honoured; an untracked one is ignored when it,
    /// or `options` itself, is listed in `ignore_startup_parameters` (`ignored`, lowercased),
    /// else refused. Listing `options` does not make malformed text acceptable.
    public static func evaluateOptions(_ text: String, isTracked: (String) -> Bool,
                                       ignored: Set<String>) -> OptionsVerdict {
        guard let items = parseOptions(text) else { return .malformed }
        var tracked: [String: String] = [:]
        for (name, value) in items {
            let n = name.lowercased()
            if isTracked(n) { tracked[n] = value; continue }
            if ignored.contains(n) || ignored.contains("options") { continue }
            return .unsupported(name: name, value: value)
        }
        return .accepted(tracked)
    }

    /// Parses `-c name=value` / `--name=value` items of the `options` startup parameter.
    /// Returns nil when the text holds anything else.
    public static func parseOptions(_ text: String) -> [(String, String)]? {
        var result: [(String, String)] = []
        var tokens: [String] = []
        var cur = ""
        var escaped = false
        for ch in text {
            if escaped { cur.append(ch); escaped = false; continue }
            if ch == "\\" { escaped = true; continue }
            if ch == " " || ch == "\t" { if !cur.isEmpty { tokens.append(cur); cur = "" }; continue }
            cur.append(ch)
        }
        if !cur.isEmpty { tokens.append(cur) }
        var i = 0
        while i < tokens.count {
            var item: Substring
            if tokens[i] == "-c" {
                guard i + 1 < tokens.count else { return nil }
                item = Substring(tokens[i + 1]); i += 2
            } else if tokens[i].hasPrefix("-c") {
                item = tokens[i].dropFirst(2); i += 1
            } else if tokens[i].hasPrefix("--") {
                item = tokens[i].dropFirst(2); i += 1
            } else {
                return nil
            }
            guard let eq = item.firstIndex(of: "="), eq != item.startIndex else { return nil }
            let name = item[..<eq].replacingOccurrencesOfDash()
            result.append((name, String(item[item.index(after: eq)...])))
        }
        return result
    }
}

extension Substring {
    /// `--client-encoding=x` means `client_encoding` (PostgreSQL treats dashes as underscores).
    fileprivate func replacingOccurrencesOfDash() -> String {
        String(map { $0 == "-" ? "_" : $0 })
    }
}
