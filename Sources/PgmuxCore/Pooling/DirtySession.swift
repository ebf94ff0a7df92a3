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
    public static func mayChange(_ text: UnsafeRawBufferPointer) -> Bool {
        TextScan.contains(text, "set") || TextScan.contains(text, "prepare") || TextScan.contains(text, "listen")
            || TextScan.contains(text, "temp") || TextScan.contains(text, "hold") || TextScan.contains(text, "advisory")
            || TextScan.contains(text, "declare") || TextScan.contains(text, "load") || TextScan.contains(text, "nextval")
    }
}
