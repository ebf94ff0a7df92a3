/// The online-restart protocol between the old process and the new one (`pgmux -R`), one
/// message per SOCK_SEQPACKET record, the sockets themselves riding along as SCM_RIGHTS.
///
/// new → old: `hello`; old → new: `registry` (zero or more: the prepared-statement definitions
/// in id order, so that the new process gives them the same ids, which servers know them by)
/// then `listeners` (one descriptor per entry, in order); new → old:
/// `ready` once it accepts on them (the old process stops accepting only then); old → new:
/// `client` (one descriptor) for each client as it becomes idle; new → old: `ack` once the client
/// is adopted (the old process forgets it only then; a session-pooled client comes with its
/// server, two descriptors); old → new: `server` (one descriptor) for
/// each idle server, forgotten by the old process at once (one lost on the way costs a new
/// connection, nothing more); new → old: `cancel` with the key of a CancelRequest that reached the
/// new process for a client still in the old one. `refused` ends a takeover that cannot go on.
public enum TakeoverMessage: Equatable, Sendable {
    case hello(version: UInt32)
    /// Definitions for ids `first`, `first + 1`, …
    case registry(first: Int, [TakeoverStatement.Definition])
    case listeners([TakeoverListener])
    case ready
    case client(TakeoverClient)
    case server(TakeoverServer)
    case ack(id: UInt64)
    case cancel(key: UInt64)
    case refused(reason: String)

    /// The protocol both sides speak; a hello with another version is refused.
    public static let version: UInt32 = 1

    /// How many descriptors travel with this message.
    public var descriptorCount: Int {
        switch self {
        case .listeners(let l): return l.count
        case .client(let c): return c.server == nil ? 1 : 2
        case .server: return 1
        default: return 0
        }
    }

    public struct Malformed: Error, Equatable, CustomStringConvertible {
        public let description: String
        public init(_ d: String) { description = d }
    }

    public func encode() -> [UInt8] {
        var w = TakeoverWriter()
        switch self {
        case .hello(let v): w.u8(UInt8(ascii: "H")); w.u32(v)
        case .listeners(let ls):
            w.u8(UInt8(ascii: "L")); w.u32(UInt32(ls.count))
            for l in ls {
                w.u8(l.kind.rawValue)
                w.string(l.description)
                w.optionalString(l.unixPath)
            }
        case .registry(let first, let definitions):
            w.u8(UInt8(ascii: "D")); w.u32(UInt32(first)); w.u32(UInt32(definitions.count))
            for d in definitions { w.definition(d) }
        case .ready: w.u8(UInt8(ascii: "R"))
        case .client(let c):
            w.u8(UInt8(ascii: "C"))
            w.u64(c.id); w.u8(c.isUnix ? 1 : 0)
            w.string(c.user); w.string(c.database); w.u64(c.cancelKey)
            let params = c.params.sorted { $0.key < $1.key }
            w.u32(UInt32(params.count))
            for (k, v) in params { w.string(k); w.string(v) }
            w.settings(c.settings)
            w.u8(c.pinned ? 1 : 0)
            w.u32(UInt32(c.statements.count))
            for s in c.statements {
                w.string(s.name)
                w.definition(s.definition)
            }
            if let sv = c.server { w.u8(1); w.server(sv) } else { w.u8(0) }
        case .server(let sv):
            w.u8(UInt8(ascii: "S"))
            w.server(sv)
        case .ack(let id): w.u8(UInt8(ascii: "A")); w.u64(id)
        case .cancel(let key): w.u8(UInt8(ascii: "K")); w.u64(key)
        case .refused(let why): w.u8(UInt8(ascii: "X")); w.string(why)
        }
        return w.out
    }

    /// Decodes one record; anything short, long or unknown is `Malformed`.
    public static func decode(_ record: [UInt8]) throws -> TakeoverMessage {
        var r = TakeoverReader(record)
        let message: TakeoverMessage
        switch try r.u8() {
        case UInt8(ascii: "H"): message = .hello(version: try r.u32())
        case UInt8(ascii: "L"):
            let n = try r.count(minimumBytesEach: 9)
            var ls: [TakeoverListener] = []
            for _ in 0..<n {
                guard let kind = TakeoverListener.Kind(rawValue: try r.u8()) else { throw Malformed("unknown listener kind") }
                ls.append(TakeoverListener(kind: kind, description: try r.string(), unixPath: try r.optionalString()))
            }
            message = .listeners(ls)
        case UInt8(ascii: "D"):
            let first = Int(try r.u32())
            var definitions: [TakeoverStatement.Definition] = []
            for _ in 0..<(try r.count(minimumBytesEach: 5)) { definitions.append(try r.definition()) }
            message = .registry(first: first, definitions)
        case UInt8(ascii: "R"): message = .ready
        case UInt8(ascii: "C"):
            let id = try r.u64()
            let isUnix = try r.u8() != 0
            let user = try r.string(), database = try r.string(), key = try r.u64()
            var params: [String: String] = [:]
            for _ in 0..<(try r.count(minimumBytesEach: 8)) {
                let k = try r.string()
                params[k] = try r.string()
            }
            let settings = try r.settings()
            let pinned = try r.flag()
            var statements: [TakeoverStatement] = []
            for _ in 0..<(try r.count(minimumBytesEach: 9)) {
                statements.append(TakeoverStatement(name: try r.string(), definition: try r.definition()))
            }
            let server: TakeoverServer?
            switch try r.u8() {
            case 0: server = nil
            case 1: server = try r.server()
            default: throw Malformed("bad presence byte")
            }
            message = .client(TakeoverClient(id: id, isUnix: isUnix, user: user, database: database, cancelKey: key,
                                             params: params, settings: settings, pinned: pinned,
                                             statements: statements, server: server))
        case UInt8(ascii: "S"): message = .server(try r.server())
        case UInt8(ascii: "A"): message = .ack(id: try r.u64())
        case UInt8(ascii: "K"): message = .cancel(key: try r.u64())
        case UInt8(ascii: "X"): message = .refused(reason: try r.string())
        default: throw Malformed("unknown message type")
        }
        guard r.atEnd else { throw Malformed("trailing bytes") }
        return message
    }
}

/// A listening socket handed over: what it is, and (for a Unix socket pgmux created) the file to
/// remove when the process that holds it last closes it.
public struct TakeoverListener: Equatable, Sendable {
    public enum Kind: UInt8, Sendable { case pooler = 1, metrics = 2 }
    public var kind: Kind
    public var description: String
    public var unixPath: String?
    public init(kind: Kind, description: String, unixPath: String?) {
        self.kind = kind
        self.description = description
        self.unixPath = unixPath
    }
}

/// What a logged-in client is beyond its socket: the new process attaches it to the pool for
/// (database, user) as a login would, with the parameters and cancel key it was given.
public struct TakeoverClient: Equatable, Sendable {
    /// The old process's id for it, echoed in `ack`.
    public var id: UInt64
    public var isUnix: Bool
    public var user: String
    public var database: String
    public var cancelKey: UInt64
    /// Tracked parameters (lowercased name → value).
    public var params: [String: String]
    /// SET/RESET of unreported parameters, replayed on each server it is lent.
    public var settings: SessionSettings
    /// Transaction pooling: it holds session state (locks, temporary tables, cursors) and keeps
    /// its server, which moves with it.
    public var pinned: Bool
    /// Its named prepared statements, with definitions (ids are per process).
    public var statements: [TakeoverStatement]
    /// In session pooling, the server it holds (between transactions), which moves with it.
    public var server: TakeoverServer?
    public init(id: UInt64, isUnix: Bool, user: String, database: String, cancelKey: UInt64,
                params: [String: String], settings: SessionSettings = [:], pinned: Bool = false,
                statements: [TakeoverStatement], server: TakeoverServer? = nil) {
        self.id = id
        self.isUnix = isUnix
        self.user = user
        self.database = database
        self.cancelKey = cancelKey
        self.params = params
        self.settings = settings
        self.pinned = pinned
        self.statements = statements
        self.server = server
    }
}

/// An idle server connection: the pool it belongs to, the host of the database's list it was
/// opened to, and what the pooler knows of its session.
public struct TakeoverServer: Equatable, Sendable {
    public struct Parameter: Equatable, Sendable {
        /// Lowercased name, the spelling the server used, and the value.
        public var key: String, name: String, value: String
        public init(key: String, name: String, value: String) {
            self.key = key
            self.name = name
            self.value = value
        }
    }
    public var database: String
    /// The pool's user (the server login user).
    public var user: String
    public var hostName: String
    public var hostPort: Int
    /// The backend's cancel key.
    public var backendKey: UInt64
    /// Parameters as the server reported them.
    public var parameters: [Parameter]
    /// Lowercased names in the order the server reported them (the pool's welcome).
    public var reportedOrder: [String]
    /// Unreported parameters clients have set on it (reset before another client's turn).
    public var settings: SessionSettings
    /// Session pooling: its client may have changed the session since its last reset.
    public var dirty: Bool
    /// A statement it has prepared, under the name `PGMUX_<id>`.
    public struct Prepared: Equatable, Sendable {
        public var id: Int
        public var definition: TakeoverStatement.Definition
        public init(id: Int, definition: TakeoverStatement.Definition) {
            self.id = id
            self.definition = definition
        }
    }
    /// The statements it has prepared, least recently used first.
    public var statements: [Prepared]
    public init(database: String, user: String, hostName: String, hostPort: Int, backendKey: UInt64,
                parameters: [Parameter], reportedOrder: [String], settings: SessionSettings = [:],
                dirty: Bool = false, statements: [Prepared]) {
        self.database = database
        self.user = user
        self.hostName = hostName
        self.hostPort = hostPort
        self.backendKey = backendKey
        self.parameters = parameters
        self.reportedOrder = reportedOrder
        self.settings = settings
        self.dirty = dirty
        self.statements = statements
    }
}

/// One of a client's prepared statements: its name and what `PreparedStatementRegistry`
/// registers it from (a Parse body after the name, or the tail of an SQL PREPARE).
public struct TakeoverStatement: Equatable, Sendable {
    public enum Definition: Equatable, Sendable { case parse([UInt8]), sql(String) }
    public var name: String
    public var definition: Definition
    public init(name: String, definition: Definition) {
        self.name = name
        self.definition = definition
    }
}
