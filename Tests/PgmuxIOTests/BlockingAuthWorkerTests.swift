import XCTest
import Glibc
import CLibEV
@testable import PgmuxIO
import PgmuxCore

/// Blocking password checks (PAM, LDAP, GSSAPI) run on worker threads: a slow one holds up
/// neither the loop nor the others, verdicts come back on the loop thread, the queue is bounded.
final class BlockingAuthWorkerTests: XCTestCase {
    final class Box: @unchecked Sendable { var verdicts: [String: BlockingAuthWorker.Verdict] = [:]; var onLoop = true }

    func testSlowCheckDoesNotHoldUpTheOthers() throws {
        let loop = try EventLoop(config: Config(path: ""), log: Log())
        let worker = BlockingAuthWorker(ev: loop.ev, maxThreads: 2, capacity: 8)
        let loopThread = pthread_self()
        let box = Box()
        func record(_ name: String) -> (BlockingAuthWorker.Verdict) -> Void {
            { verdict in
                box.verdicts[name] = verdict
                if pthread_equal(pthread_self(), loopThread) == 0 { box.onLoop = false }
            }
        }
        let started = Date()
        XCTAssertTrue(worker.submit({ usleep(1_500_000); return .accepted }, record("slow")))
        XCTAssertTrue(worker.submit({ .refused("wrong password") }, record("fast")))
        XCTAssertLessThan(Date().timeIntervalSince(started), 0.1, "submitting runs nothing")
        while box.verdicts["fast"] == nil && Date().timeIntervalSince(started) < 5 { ev_run(loop.ev, Int32(EVRUN_ONCE)) }
        XCTAssertEqual(box.verdicts["fast"], .refused("wrong password"))
        XCTAssertLessThan(Date().timeIntervalSince(started), 1, "the fast check did not wait for the slow one")
        XCTAssertNil(box.verdicts["slow"])
        while box.verdicts["slow"] == nil && Date().timeIntervalSince(started) < 5 { ev_run(loop.ev, Int32(EVRUN_ONCE)) }
        XCTAssertEqual(box.verdicts["slow"], .accepted)
        XCTAssertTrue(box.onLoop, "verdicts are delivered on the loop thread")
        worker.stop()
    }

    func testQueueIsBounded() throws {
        let loop = try EventLoop(config: Config(path: ""), log: Log())
        let worker = BlockingAuthWorker(ev: loop.ev, maxThreads: 1, capacity: 3)
        let box = Box()
        for i in 0..<3 {
            XCTAssertTrue(worker.submit({ usleep(200_000); return .accepted }) { box.verdicts["\(i)"] = $0 })
        }
        XCTAssertFalse(worker.submit({ .accepted }) { _ in XCTFail("a refused job has no completion") }, "capacity 3")
        let started = Date()
        while box.verdicts.count < 3 && Date().timeIntervalSince(started) < 5 { ev_run(loop.ev, Int32(EVRUN_ONCE)) }
        XCTAssertEqual(box.verdicts.count, 3)
        XCTAssertTrue(worker.submit({ .accepted }) { box.verdicts["after"] = $0 }, "room again once the queue drained")
        while box.verdicts["after"] == nil && Date().timeIntervalSince(started) < 5 { ev_run(loop.ev, Int32(EVRUN_ONCE)) }
        XCTAssertEqual(box.verdicts["after"], .accepted)
        worker.stop()
    }
}
