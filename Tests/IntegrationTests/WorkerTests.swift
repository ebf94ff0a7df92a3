import Foundation
import Glibc
import XCTest

/// `workers = 2`: one pooler on two event loops. Limits stay global and exact, no client waits
/// while an idle server of its pool sits on the other loop, cancels and the console reach every
/// loop, and the metrics endpoint adds them up.
final class WorkerTests: XCTestCase {
    private func pgmux(_ settings: [String: String] = [:]) throws -> PgmuxProcess {
        var s = ["workers": "2", "admin_users": "admin"]
        for (k, v) in settings { s[k] = v }
        return try PgmuxProcess(settings: s, userlist: [PostgresCluster.scramUser, PostgresCluster.md5User, ("admin", "adminpw")])
    }

    private func console(_ p: PgmuxProcess) throws -> PQConnection {
        try PQConnection(p.conninfo(user: "admin", password: "adminpw", database: "pgbouncer"))
    }

    private func show(_ c: PQConnection, _ what: String) throws -> [[String: String]] {
        let res = try c.queryWithColumns("SHOW \(what)")
        return res.rows.map { row in Dictionary(uniqueKeysWithValues: zip(res.columns, row.map { $0 ?? "NULL" })) }
    }

    /// Opens clients until some sit on each worker; returns them by worker (SHOW CLIENTS `worker`).
    private func clientsOnBothWorkers(_ p: PgmuxProcess, _ admin: PQConnection, atLeast n: Int = 1) throws -> [Int: [PQConnection]] {
        var byWorker: [Int: [PQConnection]] = [:]
        for _ in 0..<64 {
            let c = try PQConnection(p.conninfo())
            let pid = try XCTUnwrap(try c.scalar("SELECT 'app-' || (random() * 1e9)::bigint"))
            try c.query("SET application_name = '\(pid)'")
            let row = try show(admin, "CLIENTS").first { $0["application_name"] == pid }
            let worker = Int(try XCTUnwrap(row?["worker"])) ?? -1
            byWorker[worker, default: []].append(c)
            if byWorker.count == 2 && byWorker.values.allSatisfy({ $0.count >= n }) { return byWorker }
        }
        XCTFail("clients did not spread over both workers: \(byWorker.mapValues(\.count))")
        return byWorker
    }

    private func peakBackends(during work: @escaping @Sendable () throws -> Void) throws -> Int {
        let done = Flag(), errorBox = ErrorBox()
        let t = Thread { do { try work() } catch { errorBox.error = error }; done.set() }
        t.start()
        var peak = 0
        while !done.isSet {
            peak = max(peak, try PostgresCluster.shared.backendCount(user: PostgresCluster.scramUser.0))
            usleep(50_000)
        }
        if let e = errorBox.error { throw e }
        return peak
    }

    func testPoolSizeIsGlobalAcrossWorkersUnderLoad() throws {
        let p = try pgmux(["default_pool_size": "3"])
        let admin = try console(p)
        let port = p.port
        let peak = try peakBackends {
            let r = try Pgbench.run(port: port, clients: 24, seconds: 4)
            XCTAssertGreaterThan(r.transactions, 500)
        }
        XCTAssertGreaterThan(peak, 0)
        XCTAssertLessThanOrEqual(peak, 3, "PostgreSQL saw more backends than pool_size with two workers")
        let threads = try show(admin, "THREADS")
        XCTAssertEqual(threads.map { $0["worker"] }, ["0", "1"])
        for t in threads { XCTAssertGreaterThan(Double(t["cpu_seconds"] ?? "") ?? 0, 0, "both loops ran: \(threads)") }
        XCTAssertTrue(p.isRunning)
    }

    /// Connections made one after the other (an application's pool filling up) spread over the
    /// loops, whichever loop the kernel wakes for each.
    func testConnectionsMadeOneAfterAnotherSpreadOverTheWorkers() throws {
        let p = try pgmux()
        let admin = try console(p)
        let clients = try (0..<20).map { _ in try PQConnection(p.conninfo()) }
        for c in clients { XCTAssertEqual(try c.scalar("SELECT 1"), "1") }
        let perWorker = try show(admin, "THREADS").map { Int($0["clients"] ?? "") ?? -1 }
        XCTAssertEqual(perWorker.reduce(0, +), 21, "20 clients and the console: \(perWorker)")
        XCTAssertLessThanOrEqual(abs(perWorker[0] - perWorker[1]), 2, "\(perWorker)")
        let rows = try show(admin, "CLIENTS").filter { $0["database"] == PostgresCluster.database }
        XCTAssertEqual(rows.filter { $0["worker"] == "0" }.count + rows.filter { $0["worker"] == "1" }.count, 20)
    }

    func testMaxDbConnectionsIsGlobalAcrossWorkers() throws {
        let p = try pgmux(["default_pool_size": "6", "max_db_connections": "2"])
        let port = p.port
        let peak = try peakBackends {
            let r = try Pgbench.run(port: port, clients: 16, seconds: 3)
            XCTAssertGreaterThan(r.transactions, 200)
        }
        XCTAssertLessThanOrEqual(peak, 2, "max_db_connections exceeded with two workers")
    }

    /// pool_size 1: the only server idles on one loop after its client's transaction; a client
    /// on the other loop gets it (it moves) instead of waiting for query_wait_timeout.
    func testNoClientWaitsWhileAServerIdlesOnTheOtherWorker() throws {
        let p = try pgmux(["default_pool_size": "1", "query_wait_timeout": "10"])
        let admin = try console(p)
        let clients = try clientsOnBothWorkers(p, admin)
        let a = try XCTUnwrap(clients[0]?.first), b = try XCTUnwrap(clients[1]?.first)
        for round in 0..<20 {
            let (first, second) = round % 2 == 0 ? (a, b) : (b, a)
            let started = Date()
            XCTAssertEqual(try first.scalar("SELECT 'first'"), "first")
            XCTAssertEqual(try second.scalar("SELECT 'second'"), "second")
            XCTAssertLessThan(Date().timeIntervalSince(started), 2, "round \(round): a client waited for a stranded server")
        }
        XCTAssertLessThanOrEqual(try PostgresCluster.shared.backendCount(user: PostgresCluster.scramUser.0), 1)
        let moved = try show(admin, "THREADS").reduce(0) { $0 + (Int($1["servers_moved_in"] ?? "") ?? 0) }
        XCTAssertGreaterThan(moved, 0, "the server moved between the loops")
        let pool = try XCTUnwrap(try show(admin, "POOLS").first { $0["database"] == PostgresCluster.database })
        XCTAssertEqual(pool["sv_idle"], "1", "one server, counted once: \(pool)")
    }

    /// pool_size 1: a client of one loop waits while a client of the other holds the server in
    /// a transaction. At COMMIT the server idles on the holder's loop, which keeps it for the
    /// hand-over grace (its own clients may want it) and then hands it over on its own timer,
    /// not only when the waiting loop's maintenance asks again (every 1/3 s).
    func testAServerReleasedOnOneWorkerReachesAWaiterOnTheOtherAtOnce() throws {
        let p = try pgmux(["default_pool_size": "1", "query_wait_timeout": "10"])
        let admin = try console(p)
        let clients = try clientsOnBothWorkers(p, admin)
        let a = try XCTUnwrap(clients[0]?.first), b = try XCTUnwrap(clients[1]?.first)
        var waits: [Double] = []
        for round in 0..<8 {
            let (holder, waiter) = round % 2 == 0 ? (a, b) : (b, a)
            try holder.query("BEGIN")
            XCTAssertEqual(try holder.scalar("SELECT 'holding'"), "holding")
            let served = Locked<Date?>(nil)
            let t = Thread { if (try? waiter.scalar("SELECT 'served'")) == "served" { served.update { $0 = Date() } } }
            t.start()
            usleep(300_000)
            XCTAssertNil(served.value, "round \(round): served while the only server was in a transaction")
            let committed = Date()
            try holder.query("COMMIT")
            XCTAssertTrue(waitUntil(5) { served.value != nil }, "round \(round): the waiter was never served")
            waits.append(served.value.map { $0.timeIntervalSince(committed) } ?? 5)
        }
        let median = waits.sorted()[waits.count / 2]
        XCTAssertLessThan(median, 0.1, "the server waited for the other loop's maintenance: \(waits)")
        XCTAssertLessThanOrEqual(try PostgresCluster.shared.backendCount(user: PostgresCluster.scramUser.0), 1)
    }

    /// pool_size 2 and a busy loop whose own queue never empties: a client of the other loop is
    /// still served in turn (the server goes to the loop whose client has waited longest),
    /// instead of waiting until the busy loop's queue drains.
    func testClientsOfAQuietWorkerAreServedWhileTheOtherIsSaturated() throws {
        let p = try pgmux(["default_pool_size": "2", "query_wait_timeout": "20"])
        let admin = try console(p)
        let clients = try clientsOnBothWorkers(p, admin, atLeast: 8)
        let (busyWorker, quietWorker) = (clients[0]!.count >= clients[1]!.count) ? (0, 1) : (1, 0)
        let busy = Array(clients[busyWorker]!.prefix(8)), quiet = try XCTUnwrap(clients[quietWorker]?.first)
        let stop = Flag()
        for c in busy {
            Thread { while !stop.isSet { _ = try? c.scalar("SELECT pg_sleep(0.02)") } }.start()
        }
        defer { stop.set(); usleep(200_000) }
        usleep(300_000)
        var slowest = 0.0
        for _ in 0..<10 {
            let started = Date()
            XCTAssertEqual(try quiet.scalar("SELECT 'quiet'"), "quiet")
            slowest = max(slowest, Date().timeIntervalSince(started))
        }
        XCTAssertLessThan(slowest, 1.0, "the quiet loop's client waited behind the busy loop's queue")
        XCTAssertLessThanOrEqual(try PostgresCluster.shared.backendCount(user: PostgresCluster.scramUser.0), 2)
    }

    /// Several clients on both loops run a long query; each is cancelled by a CancelRequest on a
    /// new connection, which either loop may accept.
    func testCancelReachesClientsOfEitherWorker() throws {
        let p = try pgmux(["default_pool_size": "40"])  // every client has a server to cancel
        let admin = try console(p)
        let clients = try clientsOnBothWorkers(p, admin, atLeast: 3).values.flatMap { $0 }
        let group = DispatchGroup()
        let errors = Locked<[String]>([])
        for c in clients {
            group.enter()
            Thread {
                defer { group.leave() }
                do { _ = try c.query("SELECT pg_sleep(20)"); errors.update { $0.append("not cancelled") } } catch {
                    errors.update { $0.append("\(error)") }
                }
            }.start()
        }
        usleep(400_000)
        let started = Date()
        for c in clients { XCTAssertTrue(c.cancel()) }
        XCTAssertEqual(group.wait(timeout: .now() + 10), .success)
        XCTAssertLessThan(Date().timeIntervalSince(started), 8)
        XCTAssertEqual(errors.value.count, clients.count)
        for e in errors.value { XCTAssertTrue(e.contains("canceling statement"), e) }
    }

    func testOneConsoleViewAndCommandsActOnEveryWorker() throws {
        let p = try pgmux(["default_pool_size": "4", "query_wait_timeout": "10"])
        let admin = try console(p)
        let clients = try clientsOnBothWorkers(p, admin, atLeast: 2)
        let all = clients.values.flatMap { $0 }
        let pools = try show(admin, "POOLS").filter { $0["database"] == PostgresCluster.database }
        XCTAssertEqual(pools.count, 1, "one row per pool: \(pools)")
        XCTAssertEqual(pools.first?["cl_active"], String(all.count))
        let rows = try show(admin, "CLIENTS").filter { $0["database"] == PostgresCluster.database }
        XCTAssertEqual(rows.count, all.count)
        XCTAssertEqual(Set(rows.compactMap { $0["worker"] }), ["0", "1"])
        XCTAssertEqual(try show(admin, "LISTS").first { $0["list"] == "used_clients" }?["items"], String(all.count + 1))

        // PAUSE holds every client on every worker; RESUME lets them all go on.
        _ = try admin.query("PAUSE")
        let done = Locked(0)
        for c in all { Thread { if (try? c.scalar("SELECT 1")) == "1" { done.update { $0 += 1 } } }.start() }
        usleep(500_000)
        XCTAssertEqual(done.value, 0, "paused on every worker")
        _ = try admin.query("RESUME")
        XCTAssertTrue(waitUntil(5) { done.value == all.count }, "resumed on every worker: \(done.value)")

        // RELOAD switches every worker to the new pool size.
        let text = try String(contentsOfFile: p.configPath, encoding: .utf8)
        try text.replacingOccurrences(of: "default_pool_size = 4", with: "default_pool_size = 2")
            .write(toFile: p.configPath, atomically: false, encoding: .utf8)
        _ = try admin.query("RELOAD")
        XCTAssertEqual(try show(admin, "CONFIG").first { $0["key"] == "default_pool_size" }?["value"], "2")
        let port = p.port
        let peak = try peakBackends { _ = try Pgbench.run(port: port, clients: 12, seconds: 2) }
        XCTAssertLessThanOrEqual(peak, 4, "servers above the new size close as they are released")

        // KILL drops the clients of every worker.
        _ = try admin.query("KILL \(PostgresCluster.database)")
        for c in all { XCTAssertThrowsError(try c.scalar("SELECT 1")) }
        XCTAssertEqual(try PQConnection(p.conninfo()).scalar("SELECT 'after kill'"), "after kill")
    }

    func testMetricsAddUpEveryWorker() throws {
        let metricsPort = PostgresCluster.freePort()
        let p = try pgmux(["metrics_port": "\(metricsPort)"])
        let admin = try console(p)
        let clients = try clientsOnBothWorkers(p, admin, atLeast: 2)
        let total = clients.values.reduce(0) { $0 + $1.count }
        let body = String(decoding: rawExchange(port: metricsPort, send: Array("GET /metrics HTTP/1.0\r\n\r\n".utf8)), as: UTF8.self)
        let line = body.split(separator: "\n").first {
            $0.hasPrefix("pgbouncer_pools_client_active_connections{") && $0.contains("database=\"\(PostgresCluster.database)\"")
        }
        XCTAssertEqual(line?.split(separator: " ").last.map(String.init), String(total), body)
    }

    // MARK: worker_placement

    private func threads(_ admin: PQConnection) throws -> [(clients: Int, movedIn: Int, movedOut: Int, inUse: String)] {
        try show(admin, "THREADS").map {
            (Int($0["clients"] ?? "") ?? -1, Int($0["clients_moved_in"] ?? "") ?? -1, Int($0["clients_moved_out"] ?? "") ?? -1,
             $0["in_use"] ?? "")
        }
    }

    /// Clients 0, 1, 4, 5, ... over TLS: connections alternate between the loops, so each loop
    /// gets some of both.
    private static func overTLS(_ i: Int) -> Bool { i / 2 % 2 == 0 }

    private func threadsText(_ admin: PQConnection) -> String { (try? threads(admin)).map { "\($0)" } ?? "?" }

    /// `load` (the default): under a light load every new client goes to loop 0, whichever loop
    /// the kernel wakes; loop 1 is not in use.
    func testLoadPlacementGathersALightLoadOnOneLoop() throws {
        let p = try pgmux(["worker_placement": "load"])
        let admin = try console(p)
        let clients = try (0..<12).map { _ in try PQConnection(p.conninfo()) }
        for c in clients { XCTAssertEqual(try c.scalar("SELECT 1"), "1") }
        let t = try threads(admin)
        XCTAssertEqual(t.map(\.clients), [13, 0], "12 clients and the console on loop 0: \(t)")
        XCTAssertEqual(t.map(\.inUse), ["1", "0"])
        let rows = try show(admin, "CLIENTS").filter { $0["database"] == PostgresCluster.database }
        XCTAssertEqual(Set(rows.map { $0["worker"] ?? "" }), ["0"])
    }

    /// RELOAD from `even` to `load`: the quiet pooler gives loop 1 up after three seconds and its
    /// clients move to loop 0 between transactions, TLS session, prepared statement, session
    /// setting, cancel key and SHOW CLIENTS id included; a client inside a transaction stays until
    /// it ends. None of them notices.
    func testClientsOfALoopGivenUpMoveAndGoOnWorking() throws {
        let t = PostgresCluster.shared.tlsDir
        let p = try pgmux(["default_pool_size": "6", "max_prepared_statements": "10", "client_tls_sslmode": "allow",
                           "client_tls_cert_file": t + "/server.crt", "client_tls_key_file": t + "/server.key"])
        let admin = try console(p)
        let all = try (0..<16).map { i in
            try PQConnection(p.conninfo(extra: "application_name=mover\(i) sslmode=\(Self.overTLS(i) ? "require" : "disable")"))
        }
        sleep(2)  // loop 0 levels the loops once a second: placement settles
        let rows = try show(admin, "CLIENTS")
        let loop1 = all.indices.filter { i in rows.first { $0["application_name"] == "mover\(i)" }?["worker"] == "1" }
        // Two over TLS and two without.
        let picked = Array(loop1.filter(Self.overTLS).prefix(2) + loop1.filter { !Self.overTLS($0) }.prefix(2))
        guard picked.count == 4 else { return XCTFail("clients on loop 1: \(rows)") }
        let onLoop1 = picked.map { all[$0] }
        XCTAssertEqual(picked.map { i in rows.first { $0["application_name"] == "mover\(i)" }?["tls"]?.isEmpty == false },
                       [true, true, false, false], "SHOW CLIENTS tls")
        var ids: [String: String] = [:]
        for (n, c) in onLoop1.enumerated() {
            try c.prepare("moving\(n)", "SELECT $1::int + \(n)")
            try c.query("SET statement_timeout = '\(n + 7)s'")
            let name = try XCTUnwrap(c.scalar("SHOW application_name"))
            ids[name] = try show(admin, "CLIENTS").first { $0["application_name"] == name }?["ptr"]
        }
        let inTransaction = onLoop1[3]
        try inTransaction.query("BEGIN")
        XCTAssertEqual(try inTransaction.scalar("SELECT 'held'"), "held")

        let text = try String(contentsOfFile: p.configPath, encoding: .utf8)
        try text.replacingOccurrences(of: "worker_placement = even", with: "worker_placement = load")
            .write(toFile: p.configPath, atomically: false, encoding: .utf8)
        _ = try admin.query("RELOAD")
        // Polled slowly: each SHOW stops the world, and would keep the pooler from being quiet
        // under ThreadSanitizer.
        XCTAssertTrue(try waitUntil(15, every: 1) { try threads(admin)[1].inUse == "0" }, "loop 1 given up: \(threadsText(admin))")
        XCTAssertTrue(try waitUntil(5, every: 0.5) { try threads(admin)[0].movedIn >= 3 }, "\(threadsText(admin))")
        sleep(2)
        let moving = try show(admin, "CLIENTS").filter { ($0["application_name"] ?? "").hasPrefix("mover") }
        let inTxName = try XCTUnwrap(inTransaction.scalar("SHOW application_name"))
        for row in moving where ids[row["application_name"] ?? ""] != nil {
            let name = row["application_name"] ?? ""
            XCTAssertEqual(row["worker"], name == inTxName ? "1" : "0", "\(name): in a transaction it stays")
            XCTAssertEqual(row["ptr"], ids[name], "\(name) keeps its id")
        }
        try inTransaction.query("COMMIT")
        XCTAssertTrue(try waitUntil(6, every: 0.5) {
            try show(admin, "CLIENTS").first { $0["application_name"] == inTxName }?["worker"] == "0"
        }, "the client moves once its transaction ended")

        for (n, c) in onLoop1.enumerated() {
            XCTAssertEqual(try c.execPrepared("moving\(n)", ["1"]).first?.first ?? nil, String(1 + n))
            XCTAssertEqual(try c.scalar("SHOW statement_timeout"), "\(n + 7)s")
            XCTAssertEqual(try c.scalar("SELECT 1"), "1")
        }
        // Their cancel keys still reach their backends.
        let sleeper = onLoop1[0]
        let errorBox = ErrorBox(), done = Flag()
        Thread { do { _ = try sleeper.query("SELECT pg_sleep(20)") } catch { errorBox.error = error }; done.set() }.start()
        usleep(400_000)
        XCTAssertTrue(sleeper.cancel())
        XCTAssertTrue(waitUntil(8) { done.isSet })
        XCTAssertTrue("\(errorBox.error.map { "\($0)" } ?? "")".contains("canceling statement"))
        // Only a console client (which stays where it is) may be left there.
        let left = try show(admin, "CLIENTS").filter { $0["worker"] == "1" && $0["database"] != "pgbouncer" }
        XCTAssertEqual(left.count, 0, "\(left)")
    }

    /// `even`: clients that leave one loop leave it with fewer than the other; loop 0 levels the
    /// loops again (within two clients) by moving some of the other's.
    func testEvenPlacementLevelsTheLoopsAfterClientsLeave() throws {
        let p = try pgmux()
        let admin = try console(p)
        let clients = try clientsOnBothWorkers(p, admin, atLeast: 5)
        for c in clients[1] ?? [] { c.finish() }
        XCTAssertTrue(try waitUntil(5) {
            let t = try threads(admin)
            return abs(t[0].clients - t[1].clients) <= 2 && t[1].movedIn > 0
        }, "levelled: \(threadsText(admin))")
        for c in clients[0] ?? [] { XCTAssertEqual(try c.scalar("SELECT 'still here'"), "still here") }
    }
}
