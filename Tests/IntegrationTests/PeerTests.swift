import Foundation
import Glibc
import XCTest
import PgmuxCore

/// `[peers]` and `peer_id`: two pgmux processes on one TCP port (so_reuseport), each also on its
/// own Unix socket, which is what each one's `[peers]` entry points at (PgBouncer's recommended
/// so_reuseport setup). A CancelRequest landing on the wrong process is forwarded to the right one.
final class PeerTests: XCTestCase {
    private struct Group {
        let port: Int
        let hba: String
        var a: PgmuxProcess
        var b: PgmuxProcess
        func dir(_ name: String) -> String { PostgresCluster.shared.dir + "/pgmux-\(port)-\(name)" }
    }

    /// Peer ids 1 (`a`) and 2 (`b`); peer 3 accepts connections but never answers (the test's
    /// `silent` socket), nothing listens for peer 4. Unix socket logins need no password (the raw
    /// protocol client), TCP ones use SCRAM.
    private func start(_ name: String, peerId: Int, port: Int, hba: String) throws -> PgmuxProcess {
        let base = PostgresCluster.shared.dir + "/pgmux-\(port)-"
        return try PgmuxProcess(
            settings: ["so_reuseport": "1", "peer_id": "\(peerId)", "auth_type": "hba", "auth_hba_file": hba,
                       "admin_users": "admin", "default_pool_size": "4", "cancel_wait_timeout": "3",
                       "log_disconnections": "1"],
            userlist: [PostgresCluster.scramUser, ("admin", "adminpw")], port: port, instance: name,
            peers: [1: "host=\(base)a port=\(port)", 2: "host=\(base)b port=\(port) pool_size=2",
                    3: "host=\(base)silent port=\(port) pool_size=1", 4: "host=\(base)nobody port=\(port)"])
    }

    private func group() throws -> Group {
        let port = PostgresCluster.freePort()
        let hba = PostgresCluster.shared.dir + "/peers-hba-\(port).conf"
        try "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n".write(toFile: hba, atomically: false, encoding: .utf8)
        let a = try start("a", peerId: 1, port: port, hba: hba)
        let b = try start("b", peerId: 2, port: port, hba: hba)
        return Group(port: port, hba: hba, a: a, b: b)
    }

    private func console(_ g: Group, _ name: String) throws -> PQConnection {
        try PQConnection("host=\(g.dir(name)) port=\(g.port) user=admin dbname=pgbouncer connect_timeout=10")
    }

    private func show(_ c: PQConnection, _ what: String) throws -> [[String: String]] {
        let res = try c.queryWithColumns("SHOW \(what)")
        return res.rows.map { row in Dictionary(uniqueKeysWithValues: zip(res.columns, row.map { $0 ?? "NULL" })) }
    }

    /// A query on one process, cancelled through the other one's socket.
    private func cancelAcross(_ g: Group, session: String, via: String, key transform: (UInt64) -> UInt64 = { $0 },
                              sleep: Double = 10) throws -> (sqlstate: String?, seconds: Double) {
        let s = try RawSession(dir: g.dir(session), port: g.port)
        try s.login(user: PostgresCluster.scramUser.0, database: PostgresCluster.database)
        XCTAssertEqual(PeerCancelKey.peerId(of: s.cancelKey), session == "a" ? 1 : 2, "the key carries the peer id")
        XCTAssertEqual(s.cancelKey & PeerCancelKey.ttlMask, PeerCancelKey.ttlMask, "TTL 3 as handed out")
        let started = Date()
        s.send(query: "SELECT pg_sleep(\(sleep))")
        usleep(300_000)
        try RawSession.cancel(key: transform(s.cancelKey), dir: g.dir(via), port: g.port)
        let state = try s.finishQuery()
        return (state, Date().timeIntervalSince(started))
    }

    func testCancelArrivingAtTheOtherProcessIsForwardedToItsOwner() throws {
        let g = try group()
        for (session, via) in [("a", "b"), ("b", "a"), ("a", "a")] {
            let r = try cancelAcross(g, session: session, via: via)
            XCTAssertEqual(r.sqlstate, "57014", "query on \(session), cancel sent to \(via)")
            XCTAssertLessThan(r.seconds, 3, "query on \(session), cancel sent to \(via)")
        }
        // Already forwarded twice (TTL 1): one more hop is allowed.
        let twice = try cancelAcross(g, session: "a", via: "b", key: { $0 - 2 })
        XCTAssertEqual(twice.sqlstate, "57014")

        let b = try console(g, "b")
        let peers = try show(b, "PEERS")
        XCTAssertEqual(peers.map { $0["peer_id"] }, ["1", "2", "3", "4"])
        XCTAssertEqual(peers.first?["host"], g.dir("a"))
        XCTAssertEqual(peers.first?["port"], "\(g.port)")
        XCTAssertEqual(peers.map { $0["pool_size"] }, ["4", "2", "1", "4"], "pool_size, else default_pool_size")
        let pools = try show(b, "PEER_POOLS")
        XCTAssertEqual(pools.map { $0["peer_id"] }, ["1"], "b forwarded to a only")
        XCTAssertEqual(pools.first?["cl_active_cancel_req"], "0")
        XCTAssertEqual(pools.first?["sv_active_cancel"], "0")
        let lists = Dictionary(uniqueKeysWithValues: try show(b, "LISTS").map { ($0["list"]!, $0["items"]!) })
        XCTAssertEqual(lists["peers"], "4")
        XCTAssertEqual(lists["peer_pools"], "1")
        XCTAssertEqual(try show(console(g, "a"), "PEER_POOLS").map { $0["peer_id"] }, ["2"], "a forwarded to b only")

        // RELOAD without peer 1: b no longer lists it, nor its idle peer pool, nor forwards to it.
        let config = try String(contentsOfFile: g.b.configPath, encoding: .utf8)
        try config.split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.hasPrefix("1 = ") }
            .joined(separator: "\n").write(toFile: g.b.configPath, atomically: false, encoding: .utf8)
        try b.query("RELOAD")
        XCTAssertEqual(try show(b, "PEERS").map { $0["peer_id"] }, ["2", "3", "4"])
        XCTAssertTrue(waitUntil(3) { (try? self.show(b, "PEER_POOLS"))?.isEmpty == true })
        let dropped = try cancelAcross(g, session: "a", via: "b", sleep: 1)
        XCTAssertNil(dropped.sqlstate, "b does not know peer 1 any more")
    }

    /// Keys that must not be forwarded, and a peer that is not there, hurt nobody.
    func testExhaustedUnknownAndUnreachableKeysAreDropped() throws {
        let g = try group()
        // TTL 0: forwarded three times already; b drops it, the query runs to its end.
        let exhausted = try cancelAcross(g, session: "a", via: "b", key: { $0 & ~PeerCancelKey.ttlMask }, sleep: 1.5)
        XCTAssertNil(exhausted.sqlstate, "not cancelled")
        XCTAssertGreaterThan(exhausted.seconds, 1.4)
        // A peer id missing from [peers], and peer 3 whose socket does not exist: the requester is
        // let go at once.
        for peer in [77, 4] {
            let key = PeerCancelKey.make(random: 0x1234_5678_9ABC_DEF0, peerId: peer)
            let started = Date()
            try RawSession.cancel(key: key, dir: g.dir("b"), port: g.port)
            XCTAssertLessThan(Date().timeIntervalSince(started), 2, "peer \(peer)")
        }
        let c = try PQConnection(g.b.conninfo())
        XCTAssertEqual(try c.scalar("SELECT 'still serving'"), "still serving")
        let logB = g.b.log
        for reason in ["failed to forward cancel request because its TTL was exhausted",
                       "could not find peer to forward request to", "failed to send cancel request"] {
            XCTAssertTrue(logB.contains("closing because: \(reason)"), reason)
        }
    }

    /// A peer that accepts the connection but never acts on the request holds only its own
    /// requests, and only until cancel_wait_timeout; the others wait their turn (pool_size 1).
    func testSilentPeerHoldsOnlyItsOwnRequestsAndOnlyForCancelWaitTimeout() throws {
        let g = try group()
        let silentDir = g.dir("silent")
        try FileManager.default.createDirectory(atPath: silentDir, withIntermediateDirectories: true)
        chmod(silentDir, 0o777)
        let path = "\(silentDir)/.s.PGSQL.\(g.port)"
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener); unlink(path) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in for (i, b) in path.utf8.enumerated() { p[i] = b } }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(bound, 0)
        chmod(path, 0o777)
        XCTAssertEqual(listen(listener, 16), 0)  // never accepted, never read

        let key = PeerCancelKey.make(random: 0x0123_4567_89AB_CDEF, peerId: 3)
        let started = Date()
        let done = (0..<2).map { _ in Flag() }
        let bDir = g.dir("b"), port = g.port
        for flag in done {
            Thread { _ = try? RawSession.cancel(key: key, dir: bDir, port: port); flag.set() }.start()
        }
        let b = try console(g, "b")
        XCTAssertTrue(waitUntil(2) { (try? self.show(b, "PEER_POOLS").first?["cl_waiting_cancel_req"]) == "1" })
        let pool = try XCTUnwrap(try show(b, "PEER_POOLS").first)
        XCTAssertEqual(pool["peer_id"], "3")
        XCTAssertEqual(pool["cl_active_cancel_req"], "1")
        XCTAssertEqual(pool["sv_active_cancel"], "1", "sent, waiting for the peer to close")
        XCTAssertEqual(pool["sv_login"], "0")
        let clients = try show(b, "CLIENTS").filter { $0["state"]?.contains("cancel") ?? false }
        XCTAssertEqual(clients.map { $0["state"]! }.sorted(), ["active_cancel_req", "waiting_cancel_req"])
        XCTAssertEqual(Set(clients.map { $0["database"]! }), ["(nodb)"])
        let servers = try show(b, "SERVERS").filter { $0["state"] == "active_cancel" }
        XCTAssertEqual(servers.count, 1)
        XCTAssertEqual(servers.first?["link"], clients.first { $0["state"] == "active_cancel_req" }?["ptr"])
        // Meanwhile b serves everyone else, cancels included.
        let c = try PQConnection(g.b.conninfo())
        XCTAssertEqual(try c.scalar("SELECT 'not stalled'"), "not stalled")
        let r = try cancelAcross(g, session: "a", via: "b")
        XCTAssertEqual(r.sqlstate, "57014")
        // cancel_wait_timeout (3 s) lets both requesters go.
        XCTAssertTrue(waitUntil(10) { done.allSatisfy(\.isSet) })
        XCTAssertLessThan(Date().timeIntervalSince(started), 6)
        XCTAssertTrue(g.b.log.contains("cancel_wait_timeout"), g.b.log)
    }

    /// libpq's own cancel: client and CancelRequest each land on either process.
    func testCancelsThroughTheSharedPortAlwaysReachTheirQuery() throws {
        let g = try group()
        func forwarded() throws -> Int {
            try show(console(g, "a"), "PEER_POOLS").count + show(console(g, "b"), "PEER_POOLS").count
        }
        // At least 10 rounds, and until some cancel landed on the other process (each does with
        // odds of 1 in 2: 30 rounds all on the right one would be 1 in 10^9).
        for round in 0..<30 {
            if round >= 10, try forwarded() > 0 { break }
            let c = try PQConnection(g.a.conninfo())
            let canceller = Thread {
                usleep(300_000)
                _ = c.cancel()
            }
            let started = Date()
            canceller.start()
            XCTAssertThrowsError(try c.query("SELECT pg_sleep(10)"), "round \(round)") { error in
                XCTAssertEqual((error as? PQConnection.Error)?.sqlstate, "57014", "round \(round): \(error)")
            }
            XCTAssertLessThan(Date().timeIntervalSince(started), 3, "round \(round)")
            XCTAssertEqual(try c.scalar("SELECT 'still usable'"), "still usable")
        }
        XCTAssertGreaterThan(try forwarded(), 0)
    }

    /// SIGTERM to one process closes its TCP listener while its idle clients stay; new
    /// connections all go to the other. Restarted, it takes its share again, cancels included.
    func testRollingRestartLosesNoNewConnection() throws {
        var g = try group()
        func connectAll(_ n: Int, _ what: String) throws {
            for i in 0..<n {
                let c = try PQConnection(g.a.conninfo())
                XCTAssertEqual(try c.scalar("SELECT \(i)"), "\(i)", what)
            }
        }
        try connectAll(20, "before")
        let idleOnA = try PQConnection("host=\(g.dir("a")) port=\(g.port) user=\(PostgresCluster.scramUser.0) dbname=\(PostgresCluster.database)")
        XCTAssertEqual(try idleOnA.scalar("SELECT 1"), "1")
        g.a.signal(SIGTERM)
        XCTAssertTrue(waitUntil(5) { g.a.log.contains("got SIGTERM") })
        usleep(100_000)
        try connectAll(20, "while a drains")
        XCTAssertTrue(g.a.isRunning, "a waits for its client")
        XCTAssertEqual(try idleOnA.scalar("SELECT 'a still serves its client'"), "a still serves its client")
        idleOnA.finish()
        XCTAssertTrue(waitUntil(10) { !g.a.isRunning }, "a exits once its last client left")
        try connectAll(20, "a down")
        g.a = try start("a", peerId: 1, port: g.port, hba: g.hba)
        try connectAll(20, "a back")
        for (session, via) in [("a", "b"), ("b", "a")] {
            let r = try cancelAcross(g, session: session, via: via)
            XCTAssertEqual(r.sqlstate, "57014", "after the restart: query on \(session), cancel sent to \(via)")
        }
    }
}
