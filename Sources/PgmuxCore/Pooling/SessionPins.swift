/// Session state that cannot be replayed on another server keeps a client on its server in
/// transaction pooling ("pinning"): session advisory locks, temporary tables, WITH HOLD cursors,
/// and channels LISTENed on the server itself (a LISTEN inside a transaction block, which the
/// notification hub does not serve). Before, the server went back to the pool still holding them and the next client
/// inherited another's locks and tables.
///
/// Recognising these exactly in SQL would take a parser; instead a cheap scan of each statement
/// text marks the transactions that may have taken such state, and when one of them ends pgmux
/// asks the server itself (`checkQuery`), before it releases the server. Other clients' releases
/// cost nothing.
public enum SessionPins {
    /// Whether `text` may take state that pins: it mentions a session advisory lock function
    /// (`pg_advisory_lock`, `pg_try_advisory_lock`, their `_shared` forms), a temporary table or a
    /// holdable cursor. False positives only cost one check.
    /// One pass over the text, dispatching on each letter (it runs for every statement of a
    /// transaction-pooling client).
    public static func mayPin(_ text: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        while i < text.count {
            switch TextScan.lower(text[i]) {
            case UInt8(ascii: "a"): if TextScan.matches(text, at: i, "advisory_lock") { return true }
            case UInt8(ascii: "t"): if TextScan.matches(text, at: i, "temp") { return true }
            case UInt8(ascii: "h"): if TextScan.matches(text, at: i, "hold") { return true }
            case UInt8(ascii: "l"): if TextScan.matches(text, at: i, "listen") { return true }
            default: break
            }
            i += 1
        }
        return false
    }

    /// How much pinning state the session holds: one row, one count.
    public static let checkQuery = "SELECT (SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' "
        + "AND pid = pg_catalog.pg_backend_pid()) + (SELECT count(*) FROM pg_catalog.pg_cursors WHERE is_holdable) "
        + "+ (SELECT count(*) FROM pg_catalog.pg_class WHERE relnamespace = pg_catalog.pg_my_temp_schema()) "
        + "+ (SELECT count(*) FROM pg_catalog.pg_listening_channels())"

    /// Statement pooling cannot keep a client on its server: the client is refused.
    public static let statementModeRefusal =
        "session advisory locks, temporary tables and WITH HOLD cursors are not allowed in statement pooling mode"
}
