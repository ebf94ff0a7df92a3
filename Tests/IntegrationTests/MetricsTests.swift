import Foundation
import Glibc
import XCTest

/// The Prometheus endpoint: valid text format, pgbouncer_exporter names, figures that follow load.
final class MetricsTests: XCTestCase {
    private func get(_ port: Int, _ request: String) -> String {
        String(decoding: rawExchange(port: port, send: Array(request.utf8)), as: UTF8.self)
    }

    /// Checks every line against the text exposition format and returns samples by name+labels.
    private func parse(_ body: String) -> [String: Double] {
        var samples: [String: Double] = [:]
        var typed = Set<String>()
        for line in body.split(separator: "\n", omittingEmptySubsequences: false) where !line.isEmpty {
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                XCTAssertEqual(parts.count, 4, String(line))
                XCTAssertTrue(["gauge", "counter", "histogram"].contains(String(parts[3])), String(line))
                typed.insert(String(parts[2]))
                continue
            }
            if line.hasPrefix("# HELP ") { continue }
            guard let space = line.lastIndex(of: " ") else { XCTFail("no value: \(line)"); continue }
            let key = String(line[..<space])
            let value = Double(line[line.index(after: space)...])
            XCTAssertNotNil(value, String(line))
            let name = String(key.prefix { $0 != "{" })
            XCTAssertTrue(name.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" || $0 == ":" }, name)
            let family = ["_bucket", "_sum", "_count"].reduce(name) { n, suffix in
                typed.contains(n) ? n : (n.hasSuffix(suffix) ? String(n.dropLast(suffix.count)) : n)
            }
            XCTAssertTrue(typed.contains(family), "sample before its # TYPE: \(line)")
            if key.contains("{") { XCTAssertTrue(key.hasSuffix("}"), String(line)) }
            samples[key] = value
        }
        return samples
    }

    func testMetricsAreValidAndFollowLoad() throws {
        let metricsPort = PostgresCluster.freePort()
        let pgmux = try PgmuxProcess(settings: ["metrics_port": "\(metricsPort)", "default_pool_size": "3"])
        let r = try Pgbench.run(port: pgmux.port, clients: 6, seconds: 2)
        let response = get(metricsPort, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertTrue(response.hasPrefix("HTTP/1.0 200 OK"), response)
        let body = String(response[response.range(of: "\r\n\r\n")!.upperBound...])
        let samples = parse(body)
        let db = PostgresCluster.database
        XCTAssertEqual(samples["pgbouncer_up"], 1)
        let tx = samples["pgbouncer_stats_sql_transactions_pooled_total{database=\"\(db)\"}"] ?? 0
        XCTAssertGreaterThanOrEqual(Int(tx), r.transactions)
        let idle = samples["pgbouncer_pools_server_idle_connections{database=\"\(db)\",user=\"\(PostgresCluster.scramUser.0)\"}"]
        XCTAssertNotNil(idle)
        XCTAssertLessThanOrEqual(idle ?? 99, 3)
        let count = samples["pgmux_query_duration_seconds_count{database=\"\(db)\",user=\"\(PostgresCluster.scramUser.0)\"}"] ?? 0
        XCTAssertGreaterThanOrEqual(Int(count), r.transactions)
        XCTAssertGreaterThan(samples["pgmux_process_open_fds"] ?? 0, 0)
    }

    func testSlowAndMalformedRequestsDoNotStallTheLoop() throws {
        let metricsPort = PostgresCluster.freePort()
        let pgmux = try PgmuxProcess(settings: ["metrics_port": "\(metricsPort)"])
        // A client that sends half a request and stalls.
        let stalled = loopbackConnect(port: metricsPort)
        _ = "GET /met".withCString { send(stalled ?? -1, $0, 8, Int32(MSG_NOSIGNAL)) }
        XCTAssertTrue(get(metricsPort, "POST /x HTTP/1.0\r\n\r\n").hasPrefix("HTTP/1.0 404"))
        XCTAssertTrue(get(metricsPort, String(repeating: "A", count: 20000)).hasPrefix("HTTP/1.0 431"))
        XCTAssertEqual(try PQConnection(pgmux.conninfo()).scalar("SELECT 1"), "1", "the pooler is not stalled")
        XCTAssertTrue(get(metricsPort, "GET /metrics HTTP/1.0\r\n\r\n").hasPrefix("HTTP/1.0 200"))
        if let stalled { close(stalled) }
    }
}
