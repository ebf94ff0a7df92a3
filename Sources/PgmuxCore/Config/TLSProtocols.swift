/// `client_tls_protocols` / `server_tls_protocols`: a list of `tlsv1.0` … `tlsv1.3`, `all`,
/// `secure`/`default` (= TLS 1.2 and 1.3), each optionally negated with `!`. OpenSSL takes a
/// version range, so the result is the lowest and highest version allowed (1.0 = 10 … 1.3 = 13).
public enum TLSProtocols {
    public static func range(_ text: String) -> (min: Int, max: Int)? {
        var allowed = Set<Int>()
        for raw in text.split(separator: ",") {
            var item = String(raw).trimmingCharacters(in: " \t").lowercased()
            let negate = item.hasPrefix("!")
            if negate { item.removeFirst() }
            let versions: Set<Int>
            switch item {
            case "tlsv1.0", "tlsv1": versions = [10]
            case "tlsv1.1": versions = [11]
            case "tlsv1.2": versions = [12]
            case "tlsv1.3": versions = [13]
            case "all": versions = [10, 11, 12, 13]
            case "secure", "default", "normal", "legacy": versions = item == "legacy" || item == "normal" ? [10, 11, 12, 13] : [12, 13]
            default: return nil
            }
            if negate { allowed.subtract(versions) } else { allowed.formUnion(versions) }
        }
        guard let lo = allowed.min(), let hi = allowed.max() else { return nil }
        return (lo, hi)
    }
}

extension String {
    fileprivate func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s.removeFirst() }
        while let l = s.last, set.contains(l) { s.removeLast() }
        return String(s)
    }
}
