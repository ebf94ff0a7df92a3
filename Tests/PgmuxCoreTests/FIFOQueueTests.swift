import XCTest
@testable import PgmuxCore

private final class Waiter {
    let id: Int
    init(_ id: Int) { self.id = id }
}

final class FIFOQueueTests: XCTestCase {
    private func ids(_ q: FIFOQueue<Waiter>) -> [Int] { q.elements.map(\.id) }

    func testEmptyQueue() {
        var q = FIFOQueue<Waiter>()
        XCTAssertTrue(q.isEmpty)
        XCTAssertEqual(q.count, 0)
        XCTAssertNil(q.first)
        XCTAssertNil(q.popFirst())
        XCTAssertNil(q.popFirst())
        XCTAssertEqual(q.drain().count, 0)
        XCTAssertTrue(q.isEmpty)
    }

    func testFirstInFirstOut() {
        var q = FIFOQueue<Waiter>()
        for i in 1...5 { q.append(Waiter(i)) }
        XCTAssertEqual(q.count, 5)
        XCTAssertEqual(q.first?.id, 1)
        XCTAssertEqual(q.popFirst()?.id, 1)
        XCTAssertEqual(q.popFirst()?.id, 2)
        q.append(Waiter(6))
        XCTAssertEqual(ids(q), [3, 4, 5, 6])
        XCTAssertEqual([q.popFirst(), q.popFirst(), q.popFirst(), q.popFirst()].map { $0?.id }, [3, 4, 5, 6])
        XCTAssertNil(q.popFirst())
        XCTAssertTrue(q.isEmpty)
    }

    func testRemoveFromMiddleByIdentity() {
        var q = FIFOQueue<Waiter>()
        let w = (1...5).map { Waiter($0) }
        for x in w { q.append(x) }
        _ = q.popFirst()
        q.remove { $0 === w[2] }
        XCTAssertEqual(ids(q), [2, 4, 5])
        XCTAssertEqual(q.count, 3)
        // An element already popped, or never queued, is not removed (nor is a look-alike).
        q.remove { $0 === w[0] }
        q.remove { $0 === Waiter(4) }
        XCTAssertEqual(ids(q), [2, 4, 5])
        q.remove { $0 === w[4] }; q.remove { $0 === w[1] }
        XCTAssertEqual(ids(q), [4])
        XCTAssertEqual(q.first?.id, 4)
        q.remove { $0 === w[3] }
        XCTAssertTrue(q.isEmpty)
        XCTAssertNil(q.popFirst())
    }

    func testDrainReturnsRemainingInOrderAndEmpties() {
        var q = FIFOQueue<Waiter>()
        for i in 1...6 { q.append(Waiter(i)) }
        _ = q.popFirst(); _ = q.popFirst()
        XCTAssertEqual(q.drain().map(\.id), [3, 4, 5, 6])
        XCTAssertTrue(q.isEmpty)
        XCTAssertEqual(q.count, 0)
        q.append(Waiter(7))
        XCTAssertEqual(q.popFirst()?.id, 7)
    }

    func testManyAppendsAndPopsCompaction() {
        var q = FIFOQueue<Waiter>()
        var next = 0, expected = 0
        // Keep the queue non-empty so the compaction branch (head > 64, half consumed) is used.
        for _ in 0..<300 { q.append(Waiter(next)); next += 1 }
        for round in 0..<50 {
            for _ in 0..<97 {
                XCTAssertEqual(q.popFirst()?.id, expected, "round \(round)")
                expected += 1
            }
            for _ in 0..<100 { q.append(Waiter(next)); next += 1 }
            XCTAssertEqual(q.count, next - expected)
            XCTAssertEqual(q.first?.id, expected)
        }
        // Removing after compaction still works by identity.
        let mid = q.elements[q.elements.startIndex + 10]
        q.remove { $0 === mid }
        let rest = q.drain().map(\.id)
        XCTAssertEqual(rest, Array(expected..<next).filter { $0 != mid.id })
    }

    func testRandomOperationsMatchModel() {
        var rng = SplitMix64(state: 99)
        var q = FIFOQueue<Waiter>()
        var model: [Waiter] = []
        var next = 0
        for _ in 0..<20000 {
            switch Int.random(in: 0..<10, using: &rng) {
            case 0..<5:
                let w = Waiter(next); next += 1
                q.append(w); model.append(w)
            case 5..<9:
                let got = q.popFirst()
                let want = model.isEmpty ? nil : model.removeFirst()
                XCTAssertTrue(got === want)
            default:
                if !model.isEmpty {
                    let i = Int.random(in: 0..<model.count, using: &rng)
                    q.remove { $0 === model[i] }; model.remove(at: i)
                }
            }
            XCTAssertEqual(q.count, model.count)
        }
        XCTAssertEqual(ids(q), model.map(\.id))
    }
}
