import PgmuxCore
import XCTest

final class LoopBalancerTests: XCTestCase {
    private typealias B = LoopBalancer
    private typealias Move = LoopBalancer.Move

    /// Ticks `n` times with the same figures; the moves of the last tick.
    @discardableResult
    private func tick(_ b: inout B, _ n: Int = 1, placement: WorkerPlacement = .load, busy: [Double], clients: [Int]) -> [Move] {
        var moves: [Move] = []
        for _ in 0..<n { moves = b.tick(placement: placement, busy: busy, clients: clients) }
        return moves
    }

    func testLoadPlacementStartsOnOneLoopAndEvenOnAll() {
        XCTAssertEqual(B(loops: 4, placement: .load).inUse, 1)
        XCTAssertEqual(B(loops: 4, placement: .even).inUse, 4)
        XCTAssertEqual(B(loops: 1, placement: .load).inUse, 1)
    }

    func testABusyLoopTakesASecondIntoUseAfterTwoBusyTicksAndHalfItsClientsMove() {
        var b = B(loops: 2, placement: .load)
        XCTAssertEqual(tick(&b, busy: [0.9, 0], clients: [100, 0]), [])
        XCTAssertEqual(b.inUse, 1, "one busy second is not enough")
        XCTAssertEqual(tick(&b, busy: [0.9, 0], clients: [100, 0]), [Move(from: 0, to: 1, count: 50)])
        XCTAssertEqual(b.inUse, 2)
    }

    func testAQuietTickBetweenBusyOnesStartsTheCountAgain() {
        var b = B(loops: 2, placement: .load)
        tick(&b, busy: [0.9, 0], clients: [10, 0])
        tick(&b, busy: [0.4, 0], clients: [10, 0])
        tick(&b, busy: [0.9, 0], clients: [10, 0])
        XCTAssertEqual(b.inUse, 1)
        tick(&b, busy: [0.9, 0], clients: [10, 0])
        XCTAssertEqual(b.inUse, 2)
    }

    func testLoadBelowTheSpreadThresholdStaysOnOneLoop() {
        var b = B(loops: 2, placement: .load)
        XCTAssertEqual(tick(&b, 10, busy: [LoopBalancer.spreadAbove - 0.05, 0], clients: [1000, 0]), [])
        XCTAssertEqual(b.inUse, 1)
    }

    func testBetweenTheThresholdsTheLoopsInUseStay() {
        var b = B(loops: 2, placement: .even)
        // 0.45 in all: more than one loop should carry alone (0.3), less than spreading wants.
        tick(&b, 10, placement: .load, busy: [0.25, 0.2], clients: [10, 10])
        XCTAssertEqual(b.inUse, 2)
    }

    func testAQuietPoolerGivesTheLastLoopUpAfterThreeTicksAndItsClientsMoveBack() {
        var b = B(loops: 2, placement: .even)
        XCTAssertEqual(tick(&b, 2, placement: .load, busy: [0.1, 0.1], clients: [5, 6]), [])
        XCTAssertEqual(b.inUse, 2)
        XCTAssertEqual(tick(&b, placement: .load, busy: [0.1, 0.1], clients: [5, 6]), [Move(from: 1, to: 0, count: 6)])
        XCTAssertEqual(b.inUse, 1)
        // Clients that could not move yet (in a transaction) move at a later tick.
        XCTAssertEqual(tick(&b, busy: [0.1, 0.1], clients: [9, 2]), [Move(from: 1, to: 0, count: 2)])
    }

    func testLoopsAreTakenIntoUseAndGivenUpOneAtATime() {
        var b = B(loops: 4, placement: .load)
        tick(&b, 2, busy: [1, 0, 0, 0], clients: [90, 0, 0, 0])
        XCTAssertEqual(b.inUse, 2)
        // 1.3 over two loops is 0.65 each: a third.
        XCTAssertEqual(tick(&b, 2, busy: [0.7, 0.6, 0, 0], clients: [45, 45, 0, 0]),
                       [Move(from: 0, to: 2, count: 15), Move(from: 1, to: 2, count: 15)])
        XCTAssertEqual(b.inUse, 3)
        // 0.5 in all fits two loops below 0.3 each: the third goes, its clients to the other two.
        XCTAssertEqual(tick(&b, 3, busy: [0.2, 0.2, 0.1, 0], clients: [30, 30, 30, 0]),
                       [Move(from: 2, to: 0, count: 15), Move(from: 2, to: 1, count: 15)])
        XCTAssertEqual(b.inUse, 2)
    }

    func testEvenPlacementUsesEveryLoopAndLevelsCountsWithinTwo() {
        var b = B(loops: 3, placement: .load)
        XCTAssertEqual(tick(&b, placement: .even, busy: [0, 0, 0], clients: [9, 0, 0]),
                       [Move(from: 0, to: 1, count: 3), Move(from: 0, to: 2, count: 3)])
        XCTAssertEqual(b.inUse, 3)
        XCTAssertEqual(tick(&b, placement: .even, busy: [0, 0, 0], clients: [5, 3, 4]), [], "a gap of two is tolerated")
        XCTAssertEqual(tick(&b, placement: .even, busy: [0, 0, 0], clients: [6, 3, 4]), [Move(from: 0, to: 1, count: 1)])
    }

    func testLoopsOutOfUseFillTheEmptiestLoopsInUseFirst() {
        // Loop 2's seven raise loop 0 to loop 1's eight, then one more; loop 3's three even them out.
        XCTAssertEqual(B.leveling([2, 8, 7, 3], inUse: 2),
                       [Move(from: 2, to: 0, count: 7), Move(from: 3, to: 1, count: 2), Move(from: 3, to: 0, count: 1)])
        XCTAssertEqual(B.leveling([0, 0, 0], inUse: 1), [])
        XCTAssertEqual(B.leveling([4, 4], inUse: 2), [])
    }
}
