import XCTest
import Glibc
import CLibEV
@testable import PgmuxIO
import PgmuxCore

/// PBKDF2 runs on the worker thread: submitting costs the loop nothing, the results come back
/// on the loop thread through the ev_async watcher, identical requests share one run.
final class CryptoWorkerTests: XCTestCase {
    func testDerivationsRunOffTheLoopAndReturnOnIt() throws {
        let loop = try EventLoop(config: Config(path: ""), log: Log())
        let worker = loop.crypto
        let loopThread = pthread_self()
        final class Box { var results: [SCRAMKeys?] = []; var onLoop = true }
        let box = Box()
        let requests = (0..<4).map { i in
            SCRAMDerivation(password: Array("pw\(i)".utf8), salt: [UInt8(i), 1, 2, 3], iterations: SCRAMSecret.maxIterations)
        }
        let started = Date()
        for r in requests + [requests[0]] {  // the duplicate shares the first one's run
            worker.submit(r) { keys in
                box.results.append(keys)
                if pthread_equal(pthread_self(), loopThread) == 0 { box.onLoop = false }
            }
        }
        let submitTime = Date().timeIntervalSince(started)
        XCTAssertLessThan(submitTime, 0.02, "submitting 5 derivations of \(SCRAMSecret.maxIterations) iterations must not run them")
        XCTAssertTrue(box.results.isEmpty)
        let deadline = Date().addingTimeInterval(10)
        while box.results.count < 5 && Date() < deadline { ev_run(loop.ev, Int32(EVRUN_ONCE)) }
        XCTAssertEqual(box.results.count, 5)
        XCTAssertTrue(box.onLoop, "completions run on the loop thread")
        XCTAssertEqual(worker.completed, 4, "the duplicate request was derived once")
        XCTAssertEqual(box.results.compactMap { $0 }.count, 5)
        XCTAssertEqual(requests[0].run(), box.results.first ?? nil)
        print("4 derivations of \(SCRAMSecret.maxIterations) iterations: submitted in \(Int(submitTime * 1e6)) us, "
              + "done after \(Int(Date().timeIntervalSince(started) * 1000)) ms")
    }
}
