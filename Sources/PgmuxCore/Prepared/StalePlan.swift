/// PostgreSQL's "cached plan must not change result type": a prepared statement whose result
/// columns changed under it (`SELECT *` prepared, then `ALTER TABLE … ADD COLUMN`). The server
/// answers it at every execution until the statement is prepared again, and a pooler that keeps
/// statements prepared on its servers would keep reusing the stale one for every client.
public enum StalePlan {
    /// Whether an ErrorResponse body reports a stale plan: SQLSTATE 0A000 raised by
    /// RevalidateCachedQuery (the routine field is not translated, unlike the message, which is
    /// also accepted in English when the routine is missing). Malformed bodies are not.
    public static func isReported(_ body: UnsafeRawBufferPointer) -> Bool {
        var code = false, routine = false, message = false
        var i = 0
        while i < body.count, body[i] != 0 {
            let field = body[i]
            i += 1
            guard let end = body[i...].firstIndex(of: 0) else { return false }
            let value = UnsafeRawBufferPointer(rebasing: body[i..<end])
            switch field {
            case UInt8(ascii: "C"): code = value.elementsEqual("0A000".utf8)
            case UInt8(ascii: "R"): routine = value.elementsEqual("RevalidateCachedQuery".utf8)
            case UInt8(ascii: "M"): message = value.elementsEqual("cached plan must not change result type".utf8)
            default: break
            }
            i = end + 1
        }
        return code && (routine || message)
    }
}
