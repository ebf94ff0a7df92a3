import XCTest
@testable import PgmuxCore

final class AdminColumnsTests: XCTestCase {
    private func sig(_ cols: [AdminColumn]) -> String {
        cols.map { c -> String in
            switch c.type { case .text: "s"; case .int4: "i"; case .int8: "q"; case .numeric: "N"; case .bytea: "b" }
        }.joined()
    }

    func testPools() {
        XCTAssertEqual(AdminColumns.pools.map(\.name), [
            "database", "user", "cl_active", "cl_waiting", "cl_active_cancel_req", "cl_waiting_cancel_req",
            "sv_active", "sv_active_cancel", "sv_being_canceled", "sv_idle", "sv_used", "sv_tested", "sv_login",
            "maxwait", "maxwait_us", "pool_mode", "load_balance_hosts", "cl_pinned"])
        XCTAssertEqual(sig(AdminColumns.pools), "ssiiiiiiiiiiiiissi")
        XCTAssertEqual(AdminColumns.pools.map(\.type.oid), [25, 25] + Array(repeating: 23, count: 13) + [25, 25, 23])
    }

    func testClientsServersSockets() {
        let names = ["type", "user", "database", "replication", "state", "addr", "port", "local_addr", "local_port",
                     "connect_time", "request_time", "wait", "wait_us", "close_needed", "ptr", "link", "remote_pid",
                     "tls", "application_name", "prepared_statements", "id", "pinned", "worker"]
        XCTAssertEqual(AdminColumns.clients.map(\.name), names)
        XCTAssertEqual(sig(AdminColumns.clients), "ssssssisissiiississiiii")
        XCTAssertEqual(AdminColumns.columns(for: .servers), AdminColumns.clients)
        XCTAssertEqual(AdminColumns.sockets.map(\.name),
                       names + ["recv_pos", "pkt_pos", "pkt_remain", "send_pos", "send_remain", "pkt_avail", "send_avail"])
        XCTAssertEqual(sig(AdminColumns.sockets), "ssssssisissiiississiiiiiiiiiii")
        XCTAssertEqual(AdminColumns.columns(for: .activeSockets), AdminColumns.sockets)
    }

    func testStats() {
        XCTAssertEqual(AdminColumns.stats.map(\.name), [
            "database", "total_server_assignment_count", "total_xact_count", "total_query_count", "total_received",
            "total_sent", "total_xact_time", "total_query_time", "total_wait_time", "total_client_parse_count",
            "total_server_parse_count", "total_bind_count", "total_server_reset_count", "avg_server_assignment_count",
            "avg_xact_count", "avg_query_count", "avg_recv", "avg_sent", "avg_xact_time", "avg_query_time", "avg_wait_time",
            "avg_client_parse_count", "avg_server_parse_count", "avg_bind_count", "avg_server_reset_count"])
        XCTAssertEqual(sig(AdminColumns.stats), "s" + String(repeating: "N", count: 24))
        XCTAssertEqual(AdminColumns.stats.dropFirst().map(\.type.oid), Array(repeating: 1700, count: 24))
        XCTAssertEqual(AdminColumns.statsTotals.map(\.name), [
            "database", "server_assignment_count", "xact_count", "query_count", "bytes_received", "bytes_sent",
            "xact_time", "query_time", "wait_time", "client_parse_count", "server_parse_count", "bind_count",
            "server_reset_count"])
        XCTAssertEqual(AdminColumns.statsAverages.map(\.name), [
            "database", "server_assignment_count", "xact_count", "query_count", "bytes_received", "bytes_sent",
            "xact_time", "query_time", "wait_time", "avg_client_parse_count", "avg_server_parse_count", "avg_bind_count",
            "avg_server_reset_count"])
        XCTAssertEqual(sig(AdminColumns.statsTotals), "s" + String(repeating: "N", count: 12))
        XCTAssertEqual(sig(AdminColumns.statsAverages), "s" + String(repeating: "N", count: 12))
        XCTAssertEqual(sig(AdminColumns.totals), "sN")
        XCTAssertEqual(AdminColumns.totalsRowNames.count, 24)
        XCTAssertEqual(AdminColumns.totalsRowNames[3], "total_client_bytes")
        XCTAssertEqual(AdminColumns.totalsRowNames.last, "avg_server_reset_count")
    }

    func testDatabasesUsersConfig() {
        XCTAssertEqual(AdminColumns.databases.map(\.name), [
            "name", "host", "port", "database", "force_user", "pool_size", "min_pool_size", "reserve_pool_size",
            "server_lifetime", "pool_mode", "load_balance_hosts", "max_connections", "current_connections",
            "max_client_connections", "current_client_connections", "paused", "disabled"])
        XCTAssertEqual(sig(AdminColumns.databases), "ssissiiiissiiiiii")
        XCTAssertEqual(AdminColumns.users.map(\.name), [
            "name", "pool_size", "reserve_pool_size", "pool_mode", "max_user_connections", "current_connections",
            "max_user_client_connections", "current_client_connections"])
        XCTAssertEqual(sig(AdminColumns.users), "ssssiiii")
        XCTAssertEqual(AdminColumns.config.map(\.name), ["key", "value", "default", "changeable"])
        XCTAssertEqual(sig(AdminColumns.config), "ssss")
    }

    func testOthers() {
        XCTAssertEqual(sig(AdminColumns.fds), "issssiqisssssbb")
        XCTAssertEqual(AdminColumns.fds.map(\.type.oid).suffix(2), [17, 17])
        XCTAssertEqual(sig(AdminColumns.dnsHosts), "sqs")
        XCTAssertEqual(AdminColumns.dnsHosts[1].type.oid, 20)
        XCTAssertEqual(AdminColumns.dnsHosts[1].type.size, 8)
        XCTAssertEqual(sig(AdminColumns.dnsZones), "sqi")
        XCTAssertEqual(AdminColumns.lists.map(\.name), ["list", "items"])
        XCTAssertEqual(AdminColumns.mem.map(\.name), ["name", "size", "used", "free", "memtotal"])
        XCTAssertEqual(AdminColumns.version.map(\.name), ["version"])
        XCTAssertEqual(AdminColumns.state.map(\.name), ["key", "value"])
        XCTAssertEqual(sig(AdminColumns.peers), "isii")
        XCTAssertEqual(sig(AdminColumns.peerPools), "iiiii")
        XCTAssertTrue(AdminColumns.columns(for: .help).isEmpty)
        for item in AdminShowItem.allCases where item != .help {
            XCTAssertFalse(AdminColumns.columns(for: item).isEmpty, "\(item)")
        }
    }
}
