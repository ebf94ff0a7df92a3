/// Current values of settings as text, for SHOW CONFIG: the typed properties are found by their
/// camel-case names (`tcp_keepcnt` → `tcpKeepcnt`) and printed the way the ini file writes them.
extension Settings {
    public func textValue(of key: String) -> String? {
        let camel = Settings.camelCase(key)
        for child in Mirror(reflecting: self).children where child.label == camel {
            return Settings.text(child.value)
        }
        return nil
    }

    static func camelCase(_ key: String) -> String {
        var out = ""
        var upper = false
        for ch in key {
            if ch == "_" { upper = true; continue }
            out.append(upper ? Character(ch.uppercased()) : ch)
            upper = false
        }
        return out
    }

    static func text(_ value: Any) -> String? {
        switch value {
        case let b as Bool: return b ? "1" : "0"
        case let i as Int: return String(i)
        case let d as Double: return d == d.rounded() && abs(d) < 1e15 ? String(Int(d)) : String(d)
        case let s as String: return s
        case let list as [String]: return list.joined(separator: ",")
        case let r as any RawRepresentable: return "\(r.rawValue)"
        default:
            let m = Mirror(reflecting: value)
            if m.displayStyle == .optional { return m.children.first.flatMap { text($0.value) } }
            return "\(value)"
        }
    }
}
