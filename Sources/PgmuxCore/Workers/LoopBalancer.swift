/// Which event loops take clients (`workers` > 1), and which clients move between loops: a pure
/// policy that loop 0 consults once a second with what each loop did.
///
/// `worker_placement = load`: a lightly loaded pooler costs least on one loop. Two loops that
/// each relay half the load wake up for fewer events each, so the same transactions cost more
/// wake-ups and system calls (measured with `make loop-cost` and `make bench`: 10–20 % more CPU
/// per transaction on a 2-CPU machine shared with PostgreSQL and the clients), and spreading
/// gains nothing while one loop keeps up. So clients gather on the loops *in use* (`0..<inUse`);
/// one more loop is taken into use when those are busy (their threads on a CPU more than
/// `spreadAbove` of the time on average, `busyTicksBeforeSpreading` ticks in a row), and the last
/// one is given up when the others would carry the whole load below `packBelow` each
/// (`quietTicksBeforePacking` ticks in a row). The gap between the two keeps it from flapping.
///
/// `even`: every loop is in use.
///
/// Either way, the clients of loops out of use move to loops in use, and the loops in use keep
/// client counts within two of each other, the tolerance of the accept-time spreading (clients
/// that close leave holes that new ones may never fill). Counts here are all of a loop's clients;
/// the shell moves those that can move (`Move.count` at most), and the next tick sees the rest.
public struct LoopBalancer: Sendable {
    public struct Move: Equatable, Sendable {
        public let from: Int
        public let to: Int
        public let count: Int
        public init(from: Int, to: Int, count: Int) { self.from = from; self.to = to; self.count = count }
    }

    /// Average busy fraction of the loops in use above which one more is taken into use.
    public static let spreadAbove = 0.6
    /// The load of all loops, shared by one loop fewer, below which the last one is given up.
    public static let packBelow = 0.3
    public static let busyTicksBeforeSpreading = 2
    public static let quietTicksBeforePacking = 3

    public let loops: Int
    /// Loops `0..<inUse` take clients.
    public private(set) var inUse: Int
    private var busyTicks = 0
    private var quietTicks = 0

    /// A pooler starts on one loop with `load` (nothing is busy yet), on all with `even`.
    public init(loops: Int, placement: WorkerPlacement) {
        precondition(loops >= 1)
        self.loops = loops
        inUse = placement == .even ? loops : 1
    }

    /// One tick: `busy[i]` is the fraction of the last tick that loop i's thread spent on a CPU,
    /// `clients[i]` its client connections. Returns the moves that level the loops in use.
    public mutating func tick(placement: WorkerPlacement, busy: [Double], clients: [Int]) -> [Move] {
        precondition(busy.count == loops && clients.count == loops)
        decideLoopsInUse(placement, totalBusy: busy.reduce(0, +))
        return Self.leveling(clients, inUse: inUse)
    }

    private mutating func decideLoopsInUse(_ placement: WorkerPlacement, totalBusy: Double) {
        guard placement == .load else {
            inUse = loops
            busyTicks = 0
            quietTicks = 0
            return
        }
        if inUse < loops && totalBusy / Double(inUse) > Self.spreadAbove {
            quietTicks = 0
            busyTicks += 1
            if busyTicks >= Self.busyTicksBeforeSpreading { inUse += 1; busyTicks = 0 }
        } else if inUse > 1 && totalBusy / Double(inUse - 1) < Self.packBelow {
            busyTicks = 0
            quietTicks += 1
            if quietTicks >= Self.quietTicksBeforePacking { inUse -= 1; quietTicks = 0 }
        } else {
            busyTicks = 0
            quietTicks = 0
        }
    }

    /// The moves that empty loops `inUse...` into the least populated loops in use, then bring
    /// the loops in use within two clients of each other.
    public static func leveling(_ clients: [Int], inUse: Int) -> [Move] {
        var counts = clients
        var moves: [Move] = []
        func move(_ n: Int, from: Int, to: Int) {
            guard n > 0 else { return }
            counts[from] -= n
            counts[to] += n
            if let i = moves.firstIndex(where: { $0.from == from && $0.to == to }) {
                moves[i] = Move(from: from, to: to, count: moves[i].count + n)
            } else {
                moves.append(Move(from: from, to: to, count: n))
            }
        }
        for from in inUse..<counts.count {
            // Water-filling: raise the lowest loops in use to the next level, until all are given.
            while counts[from] > 0 {
                let low = (0..<inUse).map { counts[$0] }.min()!
                let lowest = (0..<inUse).filter { counts[$0] == low }
                let next = (0..<inUse).map { counts[$0] }.filter { $0 > low }.min() ?? Int.max
                let room = next == Int.max ? Int.max : (next - low) * lowest.count
                let give = min(counts[from], room)
                for (k, to) in lowest.enumerated() {
                    move(give / lowest.count + (k < give % lowest.count ? 1 : 0), from: from, to: to)
                }
            }
        }
        let ins = 0..<inUse
        guard let most = ins.map({ counts[$0] }).max(), let least = ins.map({ counts[$0] }).min(), most - least > 2 else {
            return moves
        }
        // Even shares; the loops with the most clients keep the odd ones (fewer moves).
        let total = ins.reduce(0) { $0 + counts[$1] }
        let order = ins.sorted { counts[$0] != counts[$1] ? counts[$0] > counts[$1] : $0 < $1 }
        var target = [Int](repeating: total / inUse, count: inUse)
        for i in order.prefix(total % inUse) { target[i] += 1 }
        for to in ins where counts[to] < target[to] {
            for from in order where counts[from] > target[from] && counts[to] < target[to] {
                move(min(counts[from] - target[from], target[to] - counts[to]), from: from, to: to)
            }
        }
        return moves
    }
}
