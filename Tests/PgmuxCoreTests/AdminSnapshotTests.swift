import XCTest
@testable import PgmuxCore

final class AdminSnapshotTests: XCTestCase {
    func testPoolsSortedAndFormatted() throws {
        var s = AdminSnapshot()
        var b = AdminPoolRow(database: "b", user: "u")
        b.clActive = 2; b.clWaiting = 1; b.svIdle = 3; b.maxWaitUs = 2_500_123; b.poolMode = "transaction"
        b.loadBalanceHosts = "round-robin"
        var a2 = AdminPoolRow(database: "a", user: "z")
        a2.poolMode = "statement"
        let a1 = AdminPoolRow(database: "a", user: "Y")
        s.pools = [b, a2, a1, AdminPoolRow(database: "pgbouncer", user: "pgbouncer")]
        let t = try XCTUnwrap(s.table(for: .pools))
        XCTAssertEqual(t.columns, AdminColumns.pools)
        XCTAssertEqual(t.rows.map { [$0[0]!, $0[1]!] }, [["a", "Y"], ["a", "z"], ["b", "u"], ["pgbouncer", "pgbouncer"]])
        XCTAssertEqual(t.rows[2], ["b", "u", "2", "1", "0", "0", "0", "0", "0", "3", "0", "0", "0", "2", "500123",
                                   "transaction", "round-robin", "0"])
        XCTAssertNil(t.rows[0][16])
    }

    func testHostsRowsAsGiven() throws {
        var s = AdminSnapshot()
        s.hosts = [
            AdminHostRow(database: "app", host: "db1", port: 5432, targetSessionAttrs: "read-write", role: "standby",
                         state: "wrong role", failures: 0, retryIn: 0, lastError: ""),
            AdminHostRow(database: "app", host: "db2", port: 5433, targetSessionAttrs: "read-write", role: "unknown",
                         state: "backoff", failures: 3, retryIn: 1.25, lastError: "connect failed: Connection refused"),
        ]
        let t = try XCTUnwrap(s.table(for: .hosts))
        XCTAssertEqual(t.columns.map(\.name), ["database", "host", "port", "target_session_attrs", "role", "state",
                                               "failures", "retry_in", "last_error"])
        XCTAssertEqual(t.rows, [["app", "db1", "5432", "read-write", "standby", "wrong role", "0", "0.000", ""],
                                ["app", "db2", "5433", "read-write", "unknown", "backoff", "3", "1.250",
                                 "connect failed: Connection refused"]])
        XCTAssertEqual(AdminParser.parse("show hosts;"), .success(.show(.hosts)))
    }

    func testThreadsRowPerWorker() throws {
        var s = AdminSnapshot()
        var w0 = AdminThreadRow(worker: 0)
        w0.clients = 3; w0.waitingClients = 1; w0.servers = 2; w0.activeServers = 1; w0.idleServers = 1; w0.pools = 1
        w0.cpuSeconds = 1.5; w0.serversMovedIn = 4; w0.serversMovedOut = 2; w0.clientsMovedIn = 7
        var w1 = AdminThreadRow(worker: 1)
        w1.clientsMovedOut = 7; w1.inUse = false
        s.threads = [w0, w1]
        let t = try XCTUnwrap(s.table(for: .threads))
        XCTAssertEqual(t.columns.map(\.name), ["worker", "clients", "waiting_clients", "servers", "active_servers",
                                               "idle_servers", "pools", "cpu_seconds", "servers_moved_in", "servers_moved_out",
                                               "clients_moved_in", "clients_moved_out", "in_use"])
        XCTAssertEqual(t.rows, [["0", "3", "1", "2", "1", "1", "1", "1.500", "4", "2", "7", "0", "1"],
                                ["1", "0", "0", "0", "0", "0", "0", "0.000", "0", "0", "0", "7", "0"]])
        XCTAssertEqual(AdminParser.parse("SHOW THREADS"), .success(.show(.threads)))
    }

    private func conn(_ owner: AdminConnectionOwner, _ state: AdminConnectionState, id: UInt64,
                      linked: Bool = false, buffered: Bool = false) -> AdminConnectionRow {
        var c = AdminConnectionRow(owner: owner, state: state, user: "u")
        c.id = id; c.ptr = "0x\(id)"; c.link = linked ? "0xff" : nil; c.hasBufferedData = buffered
        return c
    }

    func testClientsOrderStatesAndIdle() throws {
        var s = AdminSnapshot()
        let pb = AdminConnectionOwner.pool(database: "b", user: "u"), pa = AdminConnectionOwner.pool(database: "a", user: "u")
        s.connections = [
            conn(pb, .clWaiting, id: 1), conn(pb, .clActive, id: 2, linked: true), conn(.peer(id: 7), .clActiveCancelReq, id: 3),
            conn(pa, .clWaitingCancelReq, id: 4), conn(pa, .clActive, id: 5), conn(pa, .svActive, id: 6, linked: true),
            conn(.login, .clLogin, id: 8), conn(pb, .clActive, id: 9),
        ]
        var nouser = conn(.peer(id: 7), .clWaitingCancelReq, id: 10)
        nouser.user = nil
        s.connections.append(nouser)
        let t = try XCTUnwrap(s.table(for: .clients))
        XCTAssertEqual(t.columns.count, 23)
        XCTAssertEqual(t.rows.map { $0[20]! }, ["5", "4", "2", "9", "1", "3", "10"])
        XCTAssertEqual(t.rows.map { $0[4]! }, ["idle", "waiting_cancel_req", "active", "idle", "waiting",
                                             "active_cancel_req", "waiting_cancel_req"])
        XCTAssertEqual(t.rows[0][0], "C")
        XCTAssertEqual(t.rows[0][2], "a")
        XCTAssertEqual(t.rows[5][2], "(nodb)")
        XCTAssertEqual(t.rows[6][1], "(nouser)")
        XCTAssertEqual(t.rows[0][15], "")
        XCTAssertEqual(t.rows[2][15], "0xff")
    }

    func testServerRowValues() throws {
        var s = AdminSnapshot()
        let p = AdminConnectionOwner.pool(database: "db", user: "u")
        var c = conn(p, .svIdle, id: 0x1_0000_0005)
        c.replication = .logical; c.addr = "127.0.0.1"; c.port = 5432; c.localAddr = "127.0.0.1"; c.localPort = 40000
        c.connectTime = "2025-01-02 03:04:05 UTC"; c.requestTime = "2025-01-02 03:04:06 UTC"
        c.waitUs = 3_000_007; c.closeNeeded = true; c.remotePid = 4242; c.tls = "TLSv1.3/TLS_AES_256_GCM_SHA384"
        c.applicationName = "app"; c.preparedStatements = 2; c.worker = 1
        s.connections = [conn(p, .svLogin, id: 1), c, conn(p, .svActive, id: 2, linked: true), conn(.peer(id: 1), .svLogin, id: 3),
                         conn(p, .clActive, id: 4)]
        let t = try XCTUnwrap(s.table(for: .servers))
        XCTAssertEqual(t.rows.map { $0[4]! }, ["active", "idle", "new", "new"])
        XCTAssertEqual(t.rows[1], ["S", "u", "db", "logical", "idle", "127.0.0.1", "5432", "127.0.0.1", "40000",
                                   "2025-01-02 03:04:05 UTC", "2025-01-02 03:04:06 UTC", "3", "7", "1", "0x4294967301", "",
                                   "4242", "TLSv1.3/TLS_AES_256_GCM_SHA384", "app", "2", "5", "0", "1"])
    }

    func testSocketsAndActiveSockets() throws {
        var s = AdminSnapshot()
        let p = AdminConnectionOwner.pool(database: "db", user: "u")
        var login = conn(.login, .clLogin, id: 9, buffered: true)
        login.database = nil
        s.connections = [login, conn(p, .svIdle, id: 1), conn(p, .clActive, id: 2), conn(p, .clActiveCancelReq, id: 3),
                         conn(p, .svLogin, id: 4, buffered: true)]
        let t = try XCTUnwrap(s.table(for: .sockets))
        XCTAssertEqual(t.columns.count, 30)
        XCTAssertEqual(t.rows.map { $0[4]! }, ["cl_active", "sv_idle", "sv_login", "cl_login"])
        XCTAssertEqual(t.rows[3][2], "(nodb)")
        XCTAssertEqual(t.rows[0][25], "0")
        let a = try XCTUnwrap(s.table(for: .activeSockets))
        XCTAssertEqual(a.rows.map { $0[20]! }, ["4", "9"])
    }

    func testStatsPerDatabaseAndAverages() throws {
        var s = AdminSnapshot()
        var p1 = AdminPoolRow(database: "db", user: "a"), p2 = AdminPoolRow(database: "db", user: "b")
        p1.stats.queryCount = 30; p1.stats.queryTime = 3000; p1.stats.xactCount = 10; p1.stats.xactTime = 5000
        p1.stats.clientBytes = 1000; p1.stats.serverAssignmentCount = 4; p1.stats.waitTime = 400
        p1.olderStats.queryCount = 10; p1.olderStats.queryTime = 1000
        p2.stats.queryCount = 10; p2.stats.queryTime = 1000; p2.stats.psBindCount = 7
        let adm = AdminPoolRow(database: "pgbouncer", user: "pgbouncer")
        s.pools = [adm, p2, p1]
        s.statsWindowUs = 2_000_000
        let t = try XCTUnwrap(s.table(for: .stats))
        XCTAssertEqual(t.rows.count, 2)
        let row = t.rows[0]
        XCTAssertEqual(row[0], "db")
        // totals: assignments, xacts, queries, received, sent, xact_time, query_time, wait_time, parses, binds
        XCTAssertEqual(Array(row[1...12]), ["4", "10", "40", "1000", "0", "5000", "4000", "400", "0", "0", "7", "0"])
        // averages over 2 s: 30 new queries → 15/s; query time (4000-1000)/30 = 100; xact 10 → 5/s, 5000/10 = 500
        XCTAssertEqual(Array(row[13...24]), ["2", "5", "15", "500", "0", "500", "100", "100", "0", "0", "3", "0"])
        XCTAssertEqual(t.rows[1], ["pgbouncer"] + Array(repeating: "0", count: 24))
        XCTAssertEqual(try XCTUnwrap(s.table(for: .statsTotals)).rows[0], Array(row[0...12]))
        XCTAssertEqual(try XCTUnwrap(s.table(for: .statsAverages)).rows[0], [row[0]] + Array(row[13...24]))

        let totals = try XCTUnwrap(s.table(for: .totals))
        XCTAssertEqual(totals.rows.count, 24)
        XCTAssertEqual(totals.rows[2], ["total_query_count", "40"])
        XCTAssertEqual(totals.rows[14], ["avg_query_count", "15"])

        s.statsWindowUs = 0
        XCTAssertEqual(try XCTUnwrap(s.table(for: .statsAverages)).rows[0], ["db"] + Array(repeating: "0", count: 12))
    }

    func testDatabasesUsersConfig() throws {
        var s = AdminSnapshot()
        var d = AdminDatabaseRow(name: "zdb", database: "real")
        d.host = "h1,h2"; d.port = 5432; d.forceUser = "fu"; d.poolSize = 20; d.serverLifetime = 3600
        d.poolMode = "transaction"; d.loadBalanceHosts = "round-robin"; d.paused = true
        var admin = AdminDatabaseRow(name: "pgbouncer", database: "pgbouncer")
        admin.port = 6432; admin.poolSize = 2; admin.poolMode = "statement"
        s.databases = [d, admin]
        let t = try XCTUnwrap(s.table(for: .databases))
        XCTAssertEqual(t.rows[0], ["pgbouncer", nil, "6432", "pgbouncer", nil, "2", "0", "0", "0", "statement", nil,
                                   "0", "0", "0", "0", "0", "0"])
        XCTAssertEqual(t.rows[1], ["zdb", "h1,h2", "5432", "real", "fu", "20", "0", "0", "3600", "transaction",
                                   "round-robin", "0", "0", "0", "0", "1", "0"])

        var u1 = AdminUserRow(name: "bob"); u1.poolSize = 5; u1.reservePoolSize = 12345678901
        var u2 = AdminUserRow(name: "alice"); u2.poolMode = "session"; u2.maxUserConnections = 3
        s.users = [u1, u2]
        let ut = try XCTUnwrap(s.table(for: .users))
        XCTAssertEqual(ut.rows[0], ["alice", "", "", "session", "3", "0", "0", "0"])
        XCTAssertEqual(ut.rows[1][1], "        5")
        XCTAssertEqual(ut.rows[1][3], nil)

        s.config = [AdminConfigRow(key: "client_tls_ca_file", value: "", defaultValue: "", changeable: true),
                    AdminConfigRow(key: "listen_port", value: "6432", defaultValue: "6432", changeable: false),
                    AdminConfigRow(key: "client_tls13_ciphers", value: nil, defaultValue: nil, changeable: true)]
        let ct = try XCTUnwrap(s.table(for: .config))
        XCTAssertEqual(ct.rows.map { $0[0]! }, ["client_tls13_ciphers", "client_tls_ca_file", "listen_port"])
        XCTAssertEqual(ct.rows[0], ["client_tls13_ciphers", nil, nil, "yes"])
        XCTAssertEqual(ct.rows[2][3], "no")
    }

    func testListsStateVersionFdsDns() throws {
        var s = AdminSnapshot()
        s.lists.databases = 3; s.lists.dnsPending = 1
        let l = try XCTUnwrap(s.table(for: .lists))
        XCTAssertEqual(l.rows.map { $0[0]! }, ["databases", "users", "peers", "pools", "peer_pools", "free_clients",
                                             "used_clients", "login_clients", "free_servers", "used_servers",
                                             "dns_names", "dns_zones", "dns_queries", "dns_pending"])
        XCTAssertEqual(l.rows[0][1], "3")
        XCTAssertEqual(l.rows[13][1], "1")

        s.pauseMode = .pause
        XCTAssertEqual(try XCTUnwrap(s.table(for: .state)).rows, [["active", "no"], ["paused", "yes"], ["suspended", "no"]])
        s.version = "PgBouncer 1.25.2"
        XCTAssertEqual(try XCTUnwrap(s.table(for: .version)).rows, [["PgBouncer 1.25.2"]])
        XCTAssertNil(s.table(for: .help))

        var f = AdminFdRow(fd: 5, task: "server")
        f.user = "u"; f.cancel = UInt64.max; f.scramClientKey = [0x00, 0xab, 0x10]
        s.fds = [AdminFdRow(fd: 3, task: "pooler"), f]
        let ft = try XCTUnwrap(s.table(for: .fds))
        XCTAssertEqual(ft.rows[0], ["3", "pooler", nil, nil, nil, "0", "0", "0", nil, nil, nil, nil, nil, nil, nil])
        XCTAssertEqual(ft.rows[1][6], "18446744073709551615")
        XCTAssertEqual(ft.rows[1][13], "\\x00ab10")

        s.dnsHosts = [AdminDNSHostRow(hostname: "h", ttl: 12, addrs: "1.2.3.4:5432,5.6.7.8:5432")]
        XCTAssertEqual(try XCTUnwrap(s.table(for: .dnsHosts)).rows, [["h", "12", "1.2.3.4:5432,5.6.7.8:5432"]])
        s.dnsZones = [AdminDNSZoneRow(zonename: "z", serial: 4_000_000_000, count: 2)]
        XCTAssertEqual(try XCTUnwrap(s.table(for: .dnsZones)).rows, [["z", "4000000000", "2"]])
    }
}
