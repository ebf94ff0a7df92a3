import CLibPQ
import Foundation
import XCTest

/// LISTEN/NOTIFY through a transaction-mode pool (issue 16, item 3): one listener connection per
/// pool and event loop with listening clients (`workers`, two here), notifications delivered to
/// every subscriber between its transactions.
final class ListenNotifyTests: XCTestCase {
    private func pgmux(_ settings: [String: String] = [:]) throws -> PgmuxProcess {
        var s = ["pool_mode": "transaction", "default_pool_size": "2", "admin_users": "admin"]
        for (k, v) in settings { s[k] = v }
        return try PgmuxProcess(settings: s, userlist: [PostgresCluster.scramUser, ("admin", "adminpw")])
    }

    private var direct: String {
        "host=127.0.0.1 port=\(PostgresCluster.shared.port) dbname=\(PostgresCluster.database) "
            + "user=\(PostgresCluster.scramUser.0) password=\(PostgresCluster.scramUser.1)"
    }

    /// The listener's backend pid, from SHOW SERVERS (state `listen`).
    private func listenerPids(_ p: PgmuxProcess) throws -> [String] {
        let admin = try PQConnection(p.conninfo(user: "admin", password: "adminpw", database: "pgbouncer"))
        defer { admin.finish() }
        let res = try admin.queryWithColumns("SHOW SERVERS")
        let state = res.columns.firstIndex(of: "state")!, pid = res.columns.firstIndex(of: "remote_pid")!
        return res.rows.filter { $0[state] == "listen" }.map { $0[pid] ?? "" }
    }

    func testEveryNotificationReachesEachSubscriberOnce() throws {
        let p = try pgmux()
        let channels = ["alpha", "beta", "Gamma Ray"]
        // Client i listens on channels[i % 3] and on "everyone".
        let listeners = try (0..<10).map { _ in try PQConnection(p.conninfo()) }
        for (i, c) in listeners.enumerated() {
            let ch = channels[i % 3]
            _ = try c.query(ch == "Gamma Ray" ? "/* quoted */ listen \"Gamma Ray\";" : "LISTEN \(ch.uppercased())")
            _ = try c.query("listen Everyone")
        }
        XCTAssertTrue((1...2).contains(try listenerPids(p).count), "one listener per pool and loop")
        // Writers: through pgmux (pg_notify in a transaction) and straight to PostgreSQL (NOTIFY).
        let sent = Locked<[String: (channel: String, pid: String)]>([:])
        let writers = [Thread { [conninfo = p.conninfo()] in
            guard let w = try? PQConnection(conninfo) else { return }
            for n in 0..<60 {
                let ch = channels[n % 3], payload = "via-pgmux-\(n)"
                if let pid = try? w.scalar("SELECT pg_backend_pid() FROM (SELECT pg_notify('\(ch)', '\(payload)')) s") {
                    sent.update { $0[payload] = (ch, pid) }
                }
            }
            w.finish()
        }, Thread { [direct] in
            guard let w = try? PQConnection(direct), let pid = try? w.scalar("SELECT pg_backend_pid()") else { return }
            for n in 0..<40 {
                let ch = n % 2 == 0 ? "everyone" : "beta", payload = "direct-\(n)"
                if (try? w.query("NOTIFY \(ch), '\(payload)'")) != nil {
                    sent.update { $0[payload] = (ch, pid) }
                }
            }
            w.finish()
        }]
        let done = Locked(0)
        for t in writers { t.start() }
        // Meanwhile the listeners run transactions: notifications wait for their ends.
        let received = Locked<[[(String, String, String)]]>(Array(repeating: [], count: 10))
        let errors = Locked<[String]>([])
        let readers = listeners.enumerated().map { (i, c) in
            Thread {
                var mine: [(String, String, String)] = []
                let deadline = Date().addingTimeInterval(30)
                var quietSince = Date()
                while Date() < deadline {
                    do {
                        _ = try c.query("BEGIN")
                        _ = try c.query("SELECT count(*) FROM pg_class")
                        _ = try c.query("COMMIT")
                    } catch { errors.update { $0.append("client \(i): \(error)") }; break }
                    let got = c.notifications()
                    mine += got
                    if !got.isEmpty { quietSince = Date() }
                    if done.value == 2 && Date().timeIntervalSince(quietSince) > 1.5 { break }
                    usleep(5_000)
                }
                received.update { $0[i] = mine }
            }
        }
        for t in readers { t.start() }
        while writers.contains(where: { !$0.isFinished }) { usleep(20_000) }
        done.update { $0 = 2 }
        while readers.contains(where: { !$0.isFinished }) { usleep(20_000) }
        XCTAssertEqual(errors.value, [])
        let all = sent.value
        XCTAssertEqual(all.count, 100)
        for i in 0..<10 {
            let mine = received.value[i]
            let expected = all.filter { $0.value.channel == channels[i % 3] || $0.value.channel == "everyone" }
            XCTAssertEqual(mine.count, expected.count, "client \(i): duplicates or losses")
            XCTAssertEqual(Set(mine.map(\.1)), Set(expected.keys), "client \(i)")
            for (channel, payload, pid) in mine {
                XCTAssertEqual(all[payload]?.channel, channel, payload)
                XCTAssertEqual(all[payload]?.pid, pid, "pid of \(payload)")
            }
            // In order per sender.
            let direct = mine.filter { $0.1.hasPrefix("direct-") }.map { Int($0.1.dropFirst(7))! }
            XCTAssertEqual(direct, direct.sorted(), "client \(i)")
        }
        XCTAssertTrue((1...2).contains(try listenerPids(p).count), "one listener per pool and loop")
    }

    func testUnlistenAndDisconnectUnsubscribe() throws {
        // One loop: which listener connection unlistens (or closes) then does not depend on
        // where the clients landed.
        let p = try pgmux(["log_disconnections": "1", "workers": "1"])
        let a = try PQConnection(p.conninfo()), b = try PQConnection(p.conninfo()), c = try PQConnection(p.conninfo())
        _ = try a.query("LISTEN u1"); _ = try a.query("LISTEN u2"); _ = try b.query("LISTEN u2"); _ = try c.query("LISTEN solo")
        XCTAssertEqual(try a.query("UNLISTEN u1;").count, 0)
        let w = try PQConnection(direct)
        _ = try w.query("NOTIFY u1, 'after unlisten'")
        _ = try w.query("NOTIFY u2, 'second'")
        XCTAssertEqual(a.waitForNotification(timeout: 5)?.1, "second", "UNLISTEN u1 stopped u1 only")
        XCTAssertEqual(b.waitForNotification(timeout: 5)?.1, "second")
        // The last client of "solo" leaves: the listener (of its loop) unlistens it.
        let pids = try listenerPids(p)
        XCTAssertFalse(pids.isEmpty)
        c.finish()
        XCTAssertTrue(try waitUntil(5) {
            try w.scalar("SELECT count(*) FROM pg_stat_activity WHERE pid IN (\(pids.joined(separator: ","))) AND query = 'UNLISTEN \"solo\"'") == "1"
        })
        // UNLISTEN * stops everything for b, not for a.
        _ = try b.query("UNLISTEN *")
        _ = try w.query("NOTIFY u2, 'third'")
        XCTAssertEqual(a.waitForNotification(timeout: 5)?.1, "third")
        XCTAssertNil(b.waitForNotification(timeout: 0.5))
        // NOTIFY through pgmux is an ordinary statement; a LISTEN inside a longer text passes through.
        _ = try b.query("SELECT 1; NOTIFY u2, 'fourth'")
        XCTAssertEqual(a.waitForNotification(timeout: 5)?.1, "fourth")
        XCTAssertEqual(Set(try listenerPids(p)), Set(pids))
    }

    func testLostListenerIsReplacedAndClientsAreTold() throws {
        let p = try pgmux()
        let a = try PQConnection(p.conninfo()), b = try PQConnection(p.conninfo())
        let notices = NoticeCollector()
        notices.attach(to: a)
        _ = try a.query("LISTEN lost"); _ = try b.query("LISTEN lost")
        // Every listener (a and b may sit on different loops, each with its own).
        let firsts = try listenerPids(p)
        XCTAssertFalse(firsts.isEmpty)
        let w = try PQConnection(direct)
        for first in firsts { XCTAssertEqual(try w.scalar("SELECT pg_terminate_backend(\(first))"), "t") }
        XCTAssertTrue(waitUntil(5) {
            _ = a.notifications()
            return notices.messages.contains { $0.contains("pgmux: the notification connection was lost; notifications may have been missed") }
        })
        XCTAssertTrue(try waitUntil(5) { try !self.listenerPids(p).isEmpty })
        XCTAssertTrue(Set(try listenerPids(p)).isDisjoint(with: firsts))
        // The notice comes once the new listener listens again: nothing sent after it is missed.
        _ = try w.query("NOTIFY lost, 'again'")
        XCTAssertEqual(a.waitForNotification(timeout: 5)?.1, "again")
        XCTAssertEqual(b.waitForNotification(timeout: 5)?.1, "again")
        XCTAssertEqual(try a.scalar("SELECT 'still usable'"), "still usable")
    }

    /// As PostgreSQL does, a client inside a transaction gets notifications once it ends, after
    /// its ReadyForQuery, never between the messages of a reply.
    func testHeldDuringTransactionDeliveredAfter() throws {
        let p = try pgmux()
        let a = try PQConnection(p.conninfo())
        _ = try a.query("LISTEN held")
        _ = try a.query("BEGIN")
        let w = try PQConnection(direct)
        _ = try w.query("NOTIFY held, 'one'")
        _ = try w.query("NOTIFY held, 'two'")
        usleep(300_000)
        // A large reply while they wait: libpq would fail on a message cut by another.
        XCTAssertEqual(try a.query("SELECT repeat('x', 100000) FROM generate_series(1, 20)").count, 20)
        XCTAssertEqual(a.notifications().map(\.1), [], "held inside the transaction")
        _ = try a.query("COMMIT")
        var got: [String] = []
        XCTAssertTrue(waitUntil(5) { got += a.notifications().map(\.1); return got.count >= 2 })
        XCTAssertEqual(got, ["one", "two"])
    }

    /// A client pinned to its server (an advisory lock, see PINNING) gets notifications between
    /// its transactions too, without waiting for the server's release.
    func testPinnedClientGetsNotificationsBetweenTransactions() throws {
        let p = try pgmux()
        let a = try PQConnection(p.conninfo())
        _ = try a.query("LISTEN pinned")
        _ = try a.query("SELECT pg_advisory_lock(4242)")
        let w = try PQConnection(direct)
        _ = try w.query("NOTIFY pinned, 'while pinned'")
        XCTAssertEqual(a.waitForNotification(timeout: 5)?.1, "while pinned")
        // One that comes during its transaction follows soon after it, still pinned.
        _ = try a.query("BEGIN")
        _ = try w.query("NOTIFY pinned, 'during'")
        usleep(200_000)
        _ = try a.query("COMMIT")
        XCTAssertEqual(a.waitForNotification(timeout: 2)?.1, "during")
        _ = try a.query("SELECT pg_advisory_unlock(4242)")
        _ = try w.query("NOTIFY pinned, 'after'")
        XCTAssertEqual(a.waitForNotification(timeout: 5)?.1, "after")
    }

    /// A client that does not read loses what does not fit its 256 kB, is told how much, and
    /// holds no one back.
    func testSlowClientDropsAndIsTold() throws {
        let p = try pgmux()
        let slow = try PQConnection(p.conninfo()), fast = try PQConnection(p.conninfo())
        let notices = NoticeCollector()
        notices.attach(to: slow)
        _ = try slow.query("LISTEN flood"); _ = try fast.query("LISTEN flood")
        let w = try PQConnection(direct)
        // 3000 notifications of 4 kB, 12 MB: far beyond the socket buffers of a client that reads
        // nothing. Sent 50 at a time, each batch once the fast client has read the one before,
        // so that it never falls behind by more than a batch.
        var fastGot = 0
        for batch in 0..<60 {
            _ = try w.query("SELECT pg_notify('flood', g || repeat('x', 4000)) FROM generate_series(\(batch * 50 + 1), \(batch * 50 + 50)) g")
            XCTAssertTrue(waitUntil(10) { fastGot += fast.notifications().count; return fastGot >= batch * 50 + 50 })
        }
        XCTAssertEqual(fastGot, 3000, "the client that reads gets everything")
        var slowGot = 0, quietSince = Date()
        while Date().timeIntervalSince(quietSince) < 1 {
            let n = slow.notifications().count
            if n > 0 { slowGot += n; quietSince = Date() }
            usleep(20_000)
        }
        // The warning comes before its next notification or at the end of its next transaction.
        // With two loops the slow client's loop has a listener of its own, which may still be
        // taking in the flood: a transaction at a time until the warning is there.
        // Then until a second passes with nothing new: every notification is either delivered or
        // counted in a warning.
        var settled = Date()
        XCTAssertTrue(waitUntil(20) {
            let before = (slowGot, notices.messages.count)
            _ = try? slow.query("SELECT 1")
            slowGot += slow.notifications().count
            if (slowGot, notices.messages.count) != before { settled = Date() }
            return notices.messages.contains { $0.contains("dropped") } && Date().timeIntervalSince(settled) > 1
        })
        let warnings = notices.messages.filter { $0.contains("dropped") }
        XCTAssertFalse(warnings.isEmpty)
        let dropped = warnings.reduce(0) { $0 + (Int($1.split(separator: " ").first { Int($0) != nil } ?? "") ?? -1) }
        XCTAssertGreaterThan(dropped, 0)
        XCTAssertLessThan(slowGot * 4000, 8 << 20, "held within socket buffers and 256 kB")
        XCTAssertEqual(slowGot + dropped, 3000, "\(warnings)")
        XCTAssertEqual(try slow.scalar("SELECT 'usable'"), "usable")
    }

    /// Statement mode serves LISTEN the same way; session mode passes it through to the client's
    /// own server, with no listener connection.
    func testStatementAndSessionModes() throws {
        let w = try PQConnection(direct)
        let statement = try pgmux(["pool_mode": "statement"])
        let a = try PQConnection(statement.conninfo())
        _ = try a.query("LISTEN st")
        _ = try a.query("SELECT 1")
        _ = try w.query("NOTIFY st, 'statement mode'")
        XCTAssertEqual(a.waitForNotification(timeout: 5)?.1, "statement mode")
        XCTAssertEqual(try listenerPids(statement).count, 1)
        let session = try pgmux(["pool_mode": "session"])
        let b = try PQConnection(session.conninfo())
        _ = try b.query("LISTEN se")
        XCTAssertEqual(try b.scalar("SELECT pg_listening_channels()"), "se")
        _ = try w.query("NOTIFY se, 'session mode'")
        XCTAssertEqual(b.waitForNotification(timeout: 5)?.1, "session mode")
        XCTAssertEqual(try listenerPids(session).count, 0)
    }

    /// LISTEN with the extended protocol (PQexecParams: Parse, Bind, Describe, Execute, Sync).
    func testExtendedProtocolListen() throws {
        let p = try pgmux()
        let a = try PQConnection(p.conninfo())
        XCTAssertEqual(try a.queryParams("LISTEN ext", []).count, 0)
        let w = try PQConnection(direct)
        _ = try w.query("NOTIFY ext, 'extended'")
        XCTAssertEqual(a.waitForNotification(timeout: 5)?.1, "extended")
        XCTAssertEqual(try listenerPids(p).count, 1)
        XCTAssertEqual(try a.queryParams("UNLISTEN ext", []).count, 0)
        XCTAssertEqual(try a.queryParams("SELECT $1::int + 1", ["41"]), [["42"]])
        XCTAssertTrue(try waitUntil(5) { try listenerPids(p).isEmpty }, "closed once nothing is listened on")
    }

    /// The listener counts in max_db_connections: with every slot held by a transaction the
    /// LISTEN waits, up to query_wait_timeout; once a server is idle, that one is closed to make
    /// room.
    func testListenerStaysWithinMaxDbConnections() throws {
        let p = try pgmux(["max_db_connections": "2", "query_wait_timeout": "1"])
        let a = try PQConnection(p.conninfo()), b = try PQConnection(p.conninfo()), c = try PQConnection(p.conninfo())
        for h in [a, b] { _ = try h.query("BEGIN"); _ = try h.query("SELECT 1") }
        let started = Date()
        XCTAssertThrowsError(try c.query("LISTEN capped")) { e in
            XCTAssertTrue("\(e)".contains("no server connection left for notifications within query_wait_timeout"), "\(e)")
        }
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(started), 0.9, "waited first")
        // Waiting, then served once a transaction ends.
        let answered = Locked<String?>(nil)
        let t = Thread {
            let r: String
            do { _ = try c.query("LISTEN capped"); r = "ok" } catch { r = "\(error)" }
            answered.update { $0 = r }
        }
        t.start()
        usleep(300_000)
        XCTAssertNil(answered.value, "waits while every slot is busy")
        _ = try a.query("COMMIT")
        XCTAssertTrue(waitUntil(3) { answered.value != nil })
        XCTAssertEqual(answered.value, "ok")
        _ = try b.query("COMMIT")
        XCTAssertEqual(try listenerPids(p).count, 1)
        XCTAssertLessThanOrEqual(try PostgresCluster.shared.backendCount(user: PostgresCluster.scramUser.0), 2)
        let w = try PQConnection(direct)
        _ = try w.query("NOTIFY capped, 'within the cap'")
        XCTAssertEqual(c.waitForNotification(timeout: 5)?.1, "within the cap")
        XCTAssertEqual(try a.scalar("SELECT 'the pool still serves'"), "the pool still serves")
    }

    /// `pgmux -R`: a listening client stays with the old process, which keeps delivering its
    /// notifications, and exits once it leaves; the others move.
    func testListeningClientStaysWithOldProcessOnRestart() throws {
        let old = try pgmux(["server_tls_sslmode": "disable"])
        let listening = try PQConnection(old.conninfo()), plain = try PQConnection(old.conninfo())
        _ = try listening.query("LISTEN restart")
        let console = try PQConnection(old.conninfo(user: "admin", password: "adminpw", database: "pgbouncer"))
        let args = (geteuid() == 0 ? ["-u", "postgres"] : []) + ["-R", old.configPath]
        let new = try Child(PgmuxProcess.binary, args, outputPath: old.dir + "/pgmux-new.log")
        defer { new.signal(SIGQUIT); _ = new.wait(timeout: 10) }
        XCTAssertTrue(try waitUntil(10) {
            try console.query("SHOW STATE").contains { $0[0] == "restart_clients" && $0[1] == "1" }
        }, old.log)
        let w = try PQConnection(direct)
        _ = try w.query("NOTIFY restart, 'kept'")
        XCTAssertEqual(listening.waitForNotification(timeout: 5)?.1, "kept")
        XCTAssertEqual(try plain.scalar("SELECT 'moved'"), "moved")
        XCTAssertTrue(old.isRunning, "the old process waits for its listening client")
        listening.finish()
        XCTAssertTrue(waitUntil(10) { !old.isRunning }, old.log)
    }

    func testPsycopgNotifies() throws {
        guard (try? Shell.run("/usr/bin/env", ["python3", "-c", "import psycopg"])) != nil else { throw XCTSkip("psycopg 3 not installed") }
        let p = try pgmux()
        let script = """
            import psycopg, sys
            conn = psycopg.connect(sys.argv[1], autocommit=True)
            conn.execute("LISTEN py_channel")
            other = psycopg.connect(sys.argv[2], autocommit=True)
            pid = other.execute("SELECT pg_backend_pid()").fetchone()[0]
            other.execute("NOTIFY py_channel, 'from psycopg'")
            conn.execute("SELECT 1")
            for n in conn.notifies(timeout=5, stop_after=1):
                print(n.channel, n.payload, n.pid == pid)
            """
        let out = try Shell.run("/usr/bin/env", ["python3", "-c", script, p.conninfo(), direct])
        XCTAssertEqual(out.trimmingCharacters(in: .whitespacesAndNewlines), "py_channel from psycopg True")
    }
}

extension PQConnection {
    /// Notifications that have arrived: channel, payload, sending backend's pid. Reads until a
    /// read brings none (libpq reads at most its buffer's free space at a time).
    func notifications() -> [(String, String, String)] {
        var out: [(String, String, String)] = []
        while true {
            PQconsumeInput(conn)
            let before = out.count
            while let n = PQnotifies(conn) {
                out.append((String(cString: n.pointee.relname), String(cString: n.pointee.extra), String(n.pointee.be_pid)))
                PQfreemem(n)
            }
            if out.count == before { return out }
        }
    }
}

/// A value shared between test threads.
final class Locked<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var v: T
    init(_ v: T) { self.v = v }
    var value: T { lock.lock(); defer { lock.unlock() }; return v }
    func update(_ f: (inout T) -> Void) { lock.lock(); f(&v); lock.unlock() }
}
