/// Recognises the SQL-level prepared-statement commands in a simple Query's text: `PREPARE name
/// [(types)] AS statement`, `EXECUTE name [(arguments)]`, `DEALLOCATE [PREPARE] name` and
/// `DEALLOCATE [PREPARE] ALL`. Only a text that is exactly one such statement is recognised (leading
/// whitespace and comments, trailing semicolons allowed), by a scan of its first tokens with
/// PostgreSQL's lexical rules for what it reads: keywords in any case, unquoted names folded to
/// lower case, double-quoted names kept with `""` unescaped. Everything else, a multi-statement
/// text included, is `.other` and passes through untouched: a wrong guess would run the wrong
/// statement, a missed one only behaves as without pgmux.
public enum PreparedStatementSQL: Equatable, Sendable {
    /// `tail`: the text after the name (`(int) AS SELECT $1`), verbatim.
    case prepare(name: String, tail: String)
    /// `arguments`: the text after the name (`(42)` or empty), verbatim.
    case execute(name: String, arguments: String)
    case deallocate(name: String)
    case deallocateAll
    case other

    public static func classify(_ text: UnsafeRawBufferPointer) -> PreparedStatementSQL {
        var lexer = SQLLexer(text)
        lexer.skipSpace()
        guard let keyword = lexer.word() else { return .other }
        switch keyword {
        case "prepare":
            lexer.skipSpace()
            guard let name = lexer.name() else { return .other }
            let tailStart = lexer.position
            // The statement must follow `AS` (after an optional type list); one statement only.
            lexer.skipSpace()
            if lexer.peek == UInt8(ascii: "(") { guard lexer.skipParenthesised() else { return .other }; lexer.skipSpace() }
            guard lexer.word() == "as", let end = lexer.endOfSingleStatement() else { return .other }
            return .prepare(name: name, tail: lexer.text(tailStart, end))
        case "execute":
            lexer.skipSpace()
            guard let name = lexer.name() else { return .other }
            let argumentsStart = lexer.position
            lexer.skipSpace()
            if lexer.peek == UInt8(ascii: "(") { guard lexer.skipParenthesised() else { return .other } }
            let argumentsEnd = lexer.position
            guard lexer.atEndOfStatements() else { return .other }
            return .execute(name: name, arguments: lexer.text(argumentsStart, argumentsEnd))
        case "deallocate":
            lexer.skipSpace()
            let start = lexer.position
            if lexer.word() == "prepare" { lexer.skipSpace() } else { lexer.position = start }
            let beforeName = lexer.position
            if lexer.word() == "all", lexer.atEndOfStatements() { return .deallocateAll }
            lexer.position = beforeName
            guard let name = lexer.name(), lexer.atEndOfStatements() else { return .other }
            return .deallocate(name: name)
        default:
            return .other
        }
    }
}
