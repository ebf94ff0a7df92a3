/// Recognises a simple Query text that is exactly one `LISTEN channel`, `UNLISTEN channel` or
/// `UNLISTEN *` (leading whitespace and comments, trailing semicolons allowed), with PostgreSQL's
/// lexical rules: keywords in any case, unquoted names folded to lower case, double-quoted names
/// kept with `""` unescaped, names longer than 63 bytes truncated as PostgreSQL truncates them.
/// Anything else (a multi-statement text, `LISTEN` inside a longer text) is nil and passes
/// through: pgmux serves only what it is certain of.
public enum ListenStatement: Equatable, Sendable {
    case listen(String)
    case unlisten(String)
    case unlistenAll

    /// NAMEDATALEN - 1: the longest identifier PostgreSQL keeps.
    static let maxNameBytes = 63

    public static func classify(_ text: UnsafeRawBufferPointer) -> ListenStatement? {
        var lexer = SQLLexer(text)
        lexer.skipSpace()
        guard let keyword = lexer.word(), keyword == "listen" || keyword == "unlisten" else { return nil }
        guard lexer.skipSpace() else { return nil }
        if keyword == "unlisten", lexer.peek == UInt8(ascii: "*") {
            lexer.position += 1
            return lexer.atEndOfStatements() ? .unlistenAll : nil
        }
        let quoted = lexer.peek == UInt8(ascii: "\"")
        guard let name = lexer.name(), quoted || !reservedWords.contains(name), lexer.atEndOfStatements() else { return nil }
        let channel = truncated(name)
        return keyword == "listen" ? .listen(channel) : .unlisten(channel)
    }

    /// A cheap test before `classify`, which allocates: false when the text cannot be one. The
    /// text may be the start of a message not read whole yet: true while what there is could
    /// begin one (a comment first is left to `classify`).
    public static func mightBe(_ text: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        while i < text.count, text[i] == 32 || (text[i] >= 9 && text[i] <= 13) { i += 1 }
        guard i < text.count else { return true }
        if text[i] == UInt8(ascii: "-") || text[i] == UInt8(ascii: "/") { return true }
        return startsWithKeyword(text, at: i, "listen") || startsWithKeyword(text, at: i, "unlisten")
    }

    /// `keyword` (lower case) at `i` in any case, then a byte that ends a word, or the end so far.
    private static func startsWithKeyword(_ text: UnsafeRawBufferPointer, at i: Int, _ keyword: StaticString) -> Bool {
        let k = UnsafeRawBufferPointer(start: keyword.utf8Start, count: keyword.utf8CodeUnitCount)
        for (n, c) in k.enumerated() {
            guard i + n < text.count else { return true }
            guard text[i + n] | 0x20 == c else { return false }
        }
        guard i + k.count < text.count else { return true }
        let next = text[i + k.count] | 0x20
        return !((next >= UInt8(ascii: "a") && next <= UInt8(ascii: "z")) || (text[i + k.count] >= UInt8(ascii: "0") && text[i + k.count] <= UInt8(ascii: "9"))
                 || text[i + k.count] == UInt8(ascii: "_") || text[i + k.count] == UInt8(ascii: "$") || text[i + k.count] >= 0x80)
    }

    /// Keywords PostgreSQL 15 does not take as an unquoted channel name (reserved and
    /// type_func_name keywords): `LISTEN all` passes through, and fails there as it should.
    static let reservedWords: Set<String> = [
        "all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric", "both", "case", "cast", "check",
        "collate", "column", "constraint", "create", "current_catalog", "current_date", "current_role", "current_time",
        "current_timestamp", "current_user", "default", "deferrable", "desc", "distinct", "do", "else", "end", "except",
        "false", "fetch", "for", "foreign", "from", "grant", "group", "having", "in", "initially", "intersect", "into",
        "lateral", "leading", "limit", "localtime", "localtimestamp", "not", "null", "offset", "on", "only", "or", "order",
        "placing", "primary", "references", "returning", "select", "session_user", "some", "symmetric", "table", "then",
        "to", "trailing", "true", "union", "unique", "user", "using", "variadic", "when", "where", "window", "with",
        "authorization", "binary", "collation", "concurrently", "cross", "current_schema", "freeze", "full", "ilike",
        "inner", "is", "isnull", "join", "left", "like", "natural", "notnull", "outer", "overlaps", "right", "similar",
        "tablesample", "verbose",
    ]

    /// The command tag PostgreSQL answers with.
    public var commandTag: String {
        if case .listen = self { return "LISTEN" }
        return "UNLISTEN"
    }

    /// PostgreSQL's truncation of a long identifier: to 63 bytes, at a character boundary.
    static func truncated(_ name: String) -> String {
        let utf8 = Array(name.utf8)
        guard utf8.count > maxNameBytes else { return name }
        var end = maxNameBytes
        while end > 0 && utf8[end] & 0xC0 == 0x80 { end -= 1 }  // utf8[end] starts the cut character
        return String(decoding: utf8[..<end], as: UTF8.self)
    }

    /// `name` as a double-quoted identifier, for the statements pgmux sends itself.
    public static func quoted(_ name: String) -> String {
        "\"" + String(name.flatMap { $0 == "\"" ? ["\"", "\""] : [$0] }) + "\""
    }
}
