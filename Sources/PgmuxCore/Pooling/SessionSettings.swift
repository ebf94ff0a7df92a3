/// Session settings that follow a client from server to server in transaction pooling: `SET`
/// and `RESET` of any parameter, `search_path` and `role` included (PostgreSQL reports only a
/// few parameters by ParameterStatus, which pgmux already follows; the others used to stay on
/// whichever server ran the SET and leak into its next client: PgBouncer #396, #452).
///
/// A simple Query that is exactly one such statement is recognised by its first words;
/// `SET LOCAL`, transaction characteristics and anything else pass by unnoticed.
public enum SessionCommand: Equatable, Sendable {
    /// `key` is the parameter as PostgreSQL names it (lower case unless quoted); `setting` keeps
    /// the client's own spelling of the name and value, to be replayed verbatim.
    case set(key: String, setting: SessionSetting)
    case reset(key: String)
    /// `RESET ALL`, `DISCARD ALL`.
    case resetAll
    case other

    public static func classify(_ text: UnsafeRawBufferPointer) -> SessionCommand {
        var lexer = SQLLexer(text)
        lexer.skipSpace()
        switch lexer.word() {
        case "set": return set(&lexer)
        case "reset":
            lexer.skipSpace()
            let start = lexer.position
            guard let first = lexer.word() else { return named(&lexer, start: start, reset: true) }
            lexer.skipSpace()
            switch first {
            case "all": return lexer.atEndOfStatements() ? .resetAll : .other
            case "time":
                return lexer.word() == "zone" && lexer.atEndOfStatements() ? .reset(key: "timezone") : .other
            case "session": return .other  // RESET SESSION AUTHORIZATION
            default:
                lexer.position = start
                return named(&lexer, start: start, reset: true)
            }
        case "discard":
            lexer.skipSpace()
            return lexer.word() == "all" && lexer.atEndOfStatements() ? .resetAll : .other
        default:
            return .other
        }
    }

    /// After `SET`: `[SESSION] name {TO | =} value`, and the special forms with a parameter of
    /// their own (TIME ZONE, SCHEMA, NAMES, ROLE).
    private static func set(_ lexer: inout SQLLexer) -> SessionCommand {
        lexer.skipSpace()
        var start = lexer.position
        var first = lexer.word()
        if first == "session" {
            lexer.skipSpace()
            start = lexer.position
            first = lexer.word()
            if first == "authorization" || first == "characteristics" { return .other }
        }
        let special: (key: String, name: String)?
        switch first {
        case "local", "transaction", "constraints": return .other
        case "time":
            lexer.skipSpace()
            guard lexer.word() == "zone" else { return .other }
            special = ("timezone", "timezone")
        case "schema": special = ("search_path", "search_path")
        case "names": special = ("client_encoding", "client_encoding")
        case "role": special = ("role", "role")
        default: special = nil
        }
        if let special {
            lexer.skipSpace()
            // `SET ROLE TO x` is not the ROLE form: `role` followed by TO/= is the parameter.
            if special.key == "role" && (lexer.peek == UInt8(ascii: "=") || lexer.peekWord() == "to") {
                lexer.position = start
                return named(&lexer, start: start, reset: false)
            }
            return value(&lexer, key: special.key, name: special.name)
        }
        lexer.position = start
        return named(&lexer, start: start, reset: false)
    }

    /// `name [TO | = value]` (dotted names for extension settings).
    private static func named(_ lexer: inout SQLLexer, start: Int, reset: Bool) -> SessionCommand {
        guard var key = lexer.name() else { return .other }
        while lexer.peek == UInt8(ascii: ".") {
            lexer.position += 1
            guard let part = lexer.name() else { return .other }
            key += "." + part
        }
        let name = lexer.text(start, lexer.position)
        lexer.skipSpace()
        if reset { return lexer.atEndOfStatements() ? .reset(key: key) : .other }
        if lexer.peek == UInt8(ascii: "=") { lexer.position += 1 } else if lexer.word() != "to" { return .other }
        return value(&lexer, key: key, name: name)
    }

    /// The value up to the end of the statement; `DEFAULT` means RESET.
    private static func value(_ lexer: inout SQLLexer, key: String, name: String) -> SessionCommand {
        lexer.skipSpace()
        let start = lexer.position
        if lexer.word() == "default", lexer.atEndOfStatements() { return .reset(key: key) }
        lexer.position = start
        guard let end = lexer.endOfSingleStatement(), end > start else { return .other }
        return .set(key: key, setting: SessionSetting(name: name, value: lexer.text(start, end)))
    }
}

/// One remembered setting, as the client wrote it: replayed as `SET name TO value`.
public struct SessionSetting: Equatable, Hashable, Sendable {
    public var name: String
    public var value: String
    public init(name: String, value: String) { self.name = name; self.value = value }
}

/// Settings (key → setting) a client made, or a server has had made.
public typealias SessionSettings = [String: SessionSetting]

extension SessionCommand {
    /// Applies this command to a set of settings.
    public func apply(to settings: inout SessionSettings) {
        switch self {
        case .set(let key, let setting): settings[key] = setting
        case .reset(let key): settings[key] = nil
        case .resetAll: settings.removeAll()
        case .other: break
        }
    }

    /// The statements that turn a server's settings into a client's.
    public static func sync(from server: SessionSettings, to client: SessionSettings) -> String {
        var sql = ""
        for (key, setting) in client.sorted(by: { $0.key < $1.key }) where server[key] != setting {
            sql += "SET \(setting.name) TO \(setting.value);"
        }
        for key in server.keys.sorted() where client[key] == nil {
            sql += "RESET \(server[key]!.name);"
        }
        return sql
    }
}

/// SET/RESET statements a server has run for its client and not yet settled. A statement counts
/// once it succeeded (its CommandComplete) and its transaction is over: at once outside a
/// transaction block, at COMMIT inside one; a rollback or an error forgets it. A statement is
/// only followed when nothing else was in flight on the server, so the next ReadyForQuery is its.
public struct PendingSessionCommands: Sendable {
    private struct Entry: Sendable {
        var command: SessionCommand
        var inTransaction: Bool
        var succeeded = false
    }
    private var entries: [Entry] = []
    private var committed = false

    public init() {}

    public var isEmpty: Bool { entries.isEmpty }

    public mutating func sent(_ command: SessionCommand, inTransaction: Bool) {
        entries.append(Entry(command: command, inTransaction: inTransaction))
    }

    /// A CommandComplete with `tag` (without its terminator).
    public mutating func commandComplete(_ tag: UnsafeRawBufferPointer) {
        if tag.elementsEqual("SET".utf8) || tag.elementsEqual("RESET".utf8) || tag.elementsEqual("DISCARD ALL".utf8) {
            if let i = entries.firstIndex(where: { !$0.succeeded }) { entries[i].succeeded = true }
        } else if tag.elementsEqual("COMMIT".utf8) {
            committed = true
        } else if tag.elementsEqual("ROLLBACK".utf8) {
            committed = false
        }
    }

    /// A ReadyForQuery with `status`: the commands that now hold, in order.
    public mutating func readyForQuery(_ status: UInt8) -> [SessionCommand] {
        entries.removeAll { !$0.succeeded }  // failed: the error ended its Query
        defer { committed = false }
        guard status == UInt8(ascii: "I") else { return [] }
        let settled = entries.filter { !$0.inTransaction || committed }.map(\.command)
        entries.removeAll()
        return settled
    }

    public mutating func removeAll() { entries.removeAll(); committed = false }
}
