import XCTest
@testable import PgmuxIO

final class BufferPoolTests: XCTestCase {
    func testReusesReturnedBuffers() {
        let pool = BufferPool(size: 1024)
        let a = pool.take()
        pool.give(a)
        XCTAssertEqual(pool.take(), a)
        XCTAssertEqual(pool.inUse, 1)
    }

    func testTrimFreesOnlyBuffersUnusedForAWholeInterval() {
        let pool = BufferPool(size: 1024)
        // A burst: 20 buffers at once, all given back.
        let burst = (0..<20).map { _ in pool.take() }
        burst.forEach(pool.give)
        XCTAssertEqual(pool.freeCount, 20)
        // The interval that saw the burst ends: every free buffer was needed during it.
        XCTAssertEqual(pool.trim(floor: 4), 0)
        // A quiet interval using at most 3 at a time: 17 sat unused, all but the floor go.
        let few = (0..<3).map { _ in pool.take() }
        few.forEach(pool.give)
        XCTAssertEqual(pool.trim(floor: 4), 13)
        XCTAssertEqual(pool.freeCount, 7)
        XCTAssertEqual(pool.inUse, 0)
    }

    func testTrimKeepsBuffersInUseDuringTheInterval() {
        let pool = BufferPool(size: 1024)
        let held = (0..<10).map { _ in pool.take() }
        held.forEach(pool.give)
        _ = pool.trim(floor: 0)  // interval boundary
        let again = (0..<10).map { _ in pool.take() }
        XCTAssertEqual(pool.trim(floor: 0), 0, "nothing was free during the whole interval")
        again.forEach(pool.give)
        XCTAssertEqual(pool.freeCount, 10)
    }

    func testKeepFreeBoundsTheFreeList() {
        let pool = BufferPool(size: 1024, keepFree: 2)
        let three = (0..<3).map { _ in pool.take() }
        three.forEach(pool.give)
        XCTAssertEqual(pool.freeCount, 2)
    }
}
