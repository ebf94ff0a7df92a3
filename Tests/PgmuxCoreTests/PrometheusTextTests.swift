import XCTest
@testable import PgmuxCore

final class PrometheusTextTests: XCTestCase {
    func testHistogramIsCumulativeAndLabelsAreEscaped() {
        let h = LatencyHistogram()
        for v in [0.0001, 0.003, 0.003, 20] { h.observe(v) }
        XCTAssertEqual(h.count, 4)
        XCTAssertEqual(h.cumulative.first, 1)          // ≤ 0.5 ms
        XCTAssertEqual(h.cumulative[3], 3)              // ≤ 5 ms
        XCTAssertEqual(h.cumulative.last, 4)            // +Inf
        var text = PrometheusText(version: "1")
        var pool = PrometheusText.Pool(database: "we\"ird\\db", user: "u\n", mode: "transaction")
        pool.queryHistogram = h
        pool.clientActive = 2
        text.pools = [pool]
        let out = text.render()
        XCTAssertTrue(out.contains(#"pgbouncer_pools_client_active_connections{database="we\"ird\\db",user="u\n"} 2"#), out)
        XCTAssertTrue(out.contains(#"pgmux_query_duration_seconds_bucket{database="we\"ird\\db",user="u\n",le="+Inf"} 4"#), out)
        XCTAssertTrue(out.contains("# TYPE pgmux_query_duration_seconds histogram"))
    }
}
