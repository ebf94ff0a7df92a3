/// Column types PgBouncer uses in admin result sets (`pktbuf_write_RowDescription`).
public enum AdminColumnType: Equatable, Sendable {
    case text, int4, int8, numeric, bytea

    public var oid: Int32 {
        switch self {
        case .text: return 25
        case .int4: return 23
        case .int8: return 20
        case .numeric: return 1700
        case .bytea: return 17
        }
    }

    public var size: Int16 {
        switch self {
        case .int4: return 4
        case .int8: return 8
        case .text, .numeric, .bytea: return -1
        }
    }
}

public struct AdminColumn: Equatable, Sendable {
    public var name: String
    public var type: AdminColumnType

    public init(_ name: String, _ type: AdminColumnType) {
        self.name = name
        self.type = type
    }
}

/// A SHOW result: columns in wire order and text rows (nil = SQL NULL).
public struct AdminTable: Equatable, Sendable {
    public var columns: [AdminColumn]
    public var rows: [[String?]]

    public init(columns: [AdminColumn], rows: [[String?]] = []) {
        self.columns = columns
        self.rows = rows
    }

    public mutating func append(_ row: [String?]) {
        precondition(row.count == columns.count, "admin row width \(row.count) != \(columns.count) columns")
        rows.append(row)
    }

    /// RowDescription (table OID 0, column 0, typmod -1, text format), DataRows, CommandComplete
    /// `SHOW`. No ReadyForQuery: see `AdminReply.table`.
    public func encode(into builder: inout MessageBuilder) {
        builder.rowDescription(columns.map { (name: $0.name, typeOID: $0.type.oid, size: $0.type.size) })
        for row in rows { builder.dataRow(row) }
        builder.commandComplete("SHOW")
    }
}

/// Complete console replies, each ending with ReadyForQuery `I` unless noted.
public enum AdminReply {
    /// A SHOW result set.
    public static func table(_ table: AdminTable, into b: inout MessageBuilder) {
        table.encode(into: &b)
        b.readyForQuery(UInt8(ascii: "I"))
    }

    /// CommandComplete `tag` + ReadyForQuery (RELOAD, PAUSE, …; `command.tag`).
    public static func complete(_ tag: String, into b: inout MessageBuilder) {
        b.commandComplete(tag)
        b.readyForQuery(UInt8(ascii: "I"))
    }

    /// ErrorResponse with exactly S=ERROR, C=sqlstate, M=message, then ReadyForQuery.
    public static func error(_ error: AdminError, into b: inout MessageBuilder) {
        b.errorResponse(fields: [(UInt8(ascii: "S"), "ERROR"), (UInt8(ascii: "C"), error.sqlstate),
                                 (UInt8(ascii: "M"), error.message)])
        b.readyForQuery(UInt8(ascii: "I"))
    }

    /// NoticeResponse S=NOTICE, C=00000, M=message (`pktbuf_write_Notice`); no ReadyForQuery.
    public static func notice(_ message: String, into b: inout MessageBuilder) {
        b.errorResponse(fields: [(UInt8(ascii: "S"), "NOTICE"), (UInt8(ascii: "C"), "00000"),
                                 (UInt8(ascii: "M"), message)], notice: true)
    }

    /// Fake SET: NOTICE `SET ignored`, tag `SET`.
    public static func fakeSet(into b: inout MessageBuilder) {
        notice("SET ignored", into: &b)
        complete("SET", into: &b)
    }

    /// Fake SHOW: one text column named after the parameter, one row.
    public static func fakeShow(_ parameter: AdminFakeParameter, into b: inout MessageBuilder) {
        table(AdminTable(columns: [AdminColumn(parameter.rawValue, .text)], rows: [[parameter.value]]), into: &b)
    }

    /// Successful `SET key = value`; `tlsFailed` adds the TLS NOTICE before the tag.
    public static func setDone(key: String, value: String, tlsFailed: Bool = false, into b: inout MessageBuilder) {
        if tlsFailed { notice("TLS settings could not be applied, still using old configuration", into: &b) }
        complete(AdminCommand.set(key: key, value: value).tag, into: &b)
    }

    /// `SHOW HELP`: NOTICE `Console usage` with the command list as DETAIL, tag `SHOW`, no rows.
    public static func help(into b: inout MessageBuilder) {
        b.errorResponse(fields: [(UInt8(ascii: "S"), "NOTICE"), (UInt8(ascii: "C"), "00000"),
                                 (UInt8(ascii: "M"), "Console usage"), (UInt8(ascii: "D"), helpDetail)],
                        notice: true)
        complete("SHOW", into: &b)
    }

    /// PgBouncer 1.25.2's help text, byte for byte.
    public static let helpDetail = """
        \n\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION
        \tSHOW PEERS|PEER_POOLS
        \tSHOW FDS|SOCKETS|ACTIVE_SOCKETS|LISTS|MEM|STATE
        \tSHOW DNS_HOSTS|DNS_ZONES
        \tSHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS
        \tSET key = arg
        \tRELOAD
        \tPAUSE [<db>]
        \tRESUME [<db>]
        \tDISABLE <db>
        \tENABLE <db>
        \tRECONNECT [<db>]
        \tKILL [<db>]
        \tKILL_CLIENT <client_id>
        \tSUSPEND
        \tSHUTDOWN
        \tSHUTDOWN WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS
        \tWAIT_CLOSE [<db>]
        """
}
