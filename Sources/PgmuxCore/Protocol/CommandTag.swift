/// CommandComplete tags the relay must notice.
public enum CommandTag {
    /// `DISCARD ALL` and `DEALLOCATE ALL` drop every prepared statement of the session, so the
    /// server's statement cache and the client's names must forget them too. `body` is the whole
    /// CommandComplete body; a body without its terminator is too short to hold a tag.
    @inlinable
    public static func dropsPreparedStatements(_ body: UnsafeRawBufferPointer) -> Bool {
        guard body.count == 12 || body.count == 15, body[0] == UInt8(ascii: "D"), body[body.count - 1] == 0 else { return false }
        let tag = UnsafeRawBufferPointer(rebasing: body[..<(body.count - 1)])
        return tag.elementsEqual("DISCARD ALL".utf8) || tag.elementsEqual("DEALLOCATE ALL".utf8)
    }
}
