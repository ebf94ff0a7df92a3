/// Session pooling runs server_reset_query (DISCARD ALL) when a client leaves, so that the next
/// client finds a clean session. A client that ran nothing that changes session state leaves
/// nothing to reset: its server is handed on as it is (the parameters pgmux follows are synced at
/// the next link anyway), which spares a round trip per connection to applications that connect
/// per request.
///
/// "Changes session state" is decided by a cheap scan of the statement texts, erring towards a
/// reset: any text that mentions `set` (SET, RESET, set_config, but also UPDATE ... SET),
/// `prepare`, `listen`, `temp`, `hold`, `advisory`, `declare`, `load` or `nextval`, any named
/// Parse, any function call message and any statement too large to be scanned marks the session.
public enum DirtySession {
    /// One pass over the text, dispatching on each letter.
    public static func mayChange(_ text: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        while i < text.count {
            let hit: Bool
            switch TextScan.lower(text[i]) {
            case UInt8(ascii: "s"): hit = TextScan.matches(text, at: i, "set")
            case UInt8(ascii: "p"): hit = TextScan.matches(text, at: i, "prepare")
            case UInt8(ascii: "l"): hit = TextScan.matches(text, at: i, "listen") || TextScan.matches(text, at: i, "load")
            case UInt8(ascii: "t"): hit = TextScan.matches(text, at: i, "temp")
            case UInt8(ascii: "h"): hit = TextScan.matches(text, at: i, "hold")
            case UInt8(ascii: "a"): hit = TextScan.matches(text, at: i, "advisory")
            case UInt8(ascii: "d"): hit = TextScan.matches(text, at: i, "declare")
            case UInt8(ascii: "n"): hit = TextScan.matches(text, at: i, "nextval")
            default: hit = false
            }
            if hit { return true }
            i += 1
        }
        return false
    }
}
