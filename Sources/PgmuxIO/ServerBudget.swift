import PgmuxCore
import Synchronization

/// The server limits of the whole process, whatever loop opens the server: pool_size and
/// reserve_pool_size per pool, max_db_connections and max_user_connections (`ServerCaps`). A
/// server is counted from the moment a loop decides to open it (`reserve`, under the lock with
/// the decision, so two loops can never both take the last place) until it closes; a server
/// moving between loops stays counted. PostgreSQL therefore never sees more backends than the
/// configuration allows, whatever `workers` is.
final class ServerBudget: @unchecked Sendable {
    private let lock = Lock()
    private var caps = ServerCaps()
    /// Servers per pool key (connecting, lent or idle, on every loop), listeners excepted.
    /// Entries stay once made: pools keep a reference (`Pool.serverTotalRef`).
    private var pools: [String: PoolServerTotal] = [:]

    /// The count of pool `key`'s servers on every loop, for the pool to read without the lock.
    func poolTotal(for key: String) -> PoolServerTotal {
        lock.withLock { entry(key) }
    }

    private func entry(_ key: String) -> PoolServerTotal {
        if let t = pools[key] { return t }
        let t = PoolServerTotal()
        pools[key] = t
        return t
    }

    /// Counts one more server of pool `key` when `decide` (asked with the pool's total across
    /// loops) allows one and the caps do: `.allow`. `.deny` when either refuses, `.evict` when
    /// a cap is full and a waiting client may have an idle server of another pool closed.
    /// `key` nil: a server outside the pool's count (a LISTEN/NOTIFY listener), caps only.
    func reserve(pool key: String?, database: String, user: String, maxDatabase: Int, maxUser: Int,
                 evictIfNeeded: Bool, decide: (Int) -> Bool) -> ServerCaps.Verdict {
        lock.withLock {
            let total = key.map { entry($0) }
            guard decide(total?.current ?? 0) else { return .deny }
            let verdict = caps.verdict(database: database, user: user, maxDatabase: maxDatabase, maxUser: maxUser,
                                       evictIfNeeded: evictIfNeeded)
            if verdict == .allow {
                total?.count.add(1, ordering: .relaxed)
                caps.opened(database: database, user: user)
            }
            return verdict
        }
    }

    /// A counted server closed, or a reserved one could not be started (`pool` nil: outside
    /// the pool's count).
    func released(pool key: String?, database: String, user: String) {
        lock.withLock {
            if let key, let total = pools[key], total.current > 0 { total.count.subtract(1, ordering: .relaxed) }
            caps.closed(database: database, user: user)
        }
    }

    func count(database: String) -> Int { lock.withLock { caps.count(database: database) } }
    func count(user: String) -> Int { lock.withLock { caps.count(user: user) } }
}

/// One pool's servers on every loop, changed under `ServerBudget`'s lock only and read without
/// it: a loop whose own servers leave room (its pool spread over several loops) learns that the
/// pool is full from one shared read instead of the budget's lock, the common case under load.
/// A read may be a moment old; a `.no` from it is then corrected by what follows a server's
/// close anyway (the closing loop wakes the loops whose clients wait, whose next look, after
/// the mailbox's lock, reads the new count; and the janitor's `topUp` every third of a second),
/// and a `.yes` is checked again under the lock.
final class PoolServerTotal: Sendable {
    fileprivate let count = Atomic<Int>(0)
    var current: Int { count.load(ordering: .relaxed) }
}

/// A pool's login backoff, failing flag and cached error, shared by its loops.
struct PoolLoginState: Sendable {
    var backoff: LoginBackoff
    var failing: Bool
    var message: String
}

/// Who idles and who waits in one pool, per loop, so that no client waits on one loop while an
/// idle server of its pool sits on another: a loop that idles a server while another loop's
/// clients wait hands it over, and a loop whose clients wait for a server it may not open asks
/// a loop that idles one. Both sides publish under one lock before they look, so at least one
/// of them sees the other.
final class PoolShare: @unchecked Sendable {
    private let lock = Lock()
    private var idle: [Int]
    private var waiting: [Int]
    /// When each loop's longest-waiting client began to wait (infinity: none waits).
    private var oldestWait: [Double]
    /// A released server goes to another loop, although clients of its own loop wait, when that
    /// loop's first client has waited this much longer: first come, first served across loops,
    /// give or take this, without moving servers back and forth under even load.
    static let fairnessSlack = 0.005

    init(loops: Int) {
        idle = Array(repeating: 0, count: loops)
        waiting = Array(repeating: 0, count: loops)
        oldestWait = Array(repeating: .infinity, count: loops)
    }

    /// Publishes loop `index`'s figures; returns the other loop with the most waiting clients
    /// and one with an idle server, if any.
    func publish(loop index: Int, idle myIdle: Int, waiting myWaiting: Int,
                 oldestWait since: Double?) -> (waiting: Int?, idle: Int?) {
        lock.withLock {
            idle[index] = myIdle
            waiting[index] = myWaiting
            oldestWait[index] = myWaiting > 0 ? since ?? .infinity : .infinity
            var mostWaiting: Int?, anyIdle: Int?
            for i in idle.indices where i != index {
                if waiting[i] > 0 && (mostWaiting.map { waiting[i] > waiting[$0] } ?? true) { mostWaiting = i }
                if idle[i] > 0 && anyIdle == nil { anyIdle = i }
            }
            return (mostWaiting, anyIdle)
        }
    }

    /// The pool's login health as the loop that logged in last left it (a pool made later on
    /// another loop starts from it).
    var loginState: PoolLoginState? {
        get { lock.withLock { storedLoginState } }
        set { lock.withLock { storedLoginState = newValue } }
    }
    private var storedLoginState: PoolLoginState?

    /// The ParameterStatus set of the pool's first server login on any loop.
    var welcome: [(String, String)]? {
        get { lock.withLock { storedWelcome } }
        set { lock.withLock { if storedWelcome == nil { storedWelcome = newValue } } }
    }
    private var storedWelcome: [(String, String)]?

    /// The loop whose first waiting client began to wait more than `fairnessSlack` before
    /// `since` (this loop's first), the earliest such; nil when none.
    func waitingLonger(than since: Double, except index: Int) -> Int? {
        lock.withLock {
            var best: Int?
            for i in oldestWait.indices where i != index && waiting[i] > 0
                && oldestWait[i] < since - PoolShare.fairnessSlack && oldestWait[i] < (best.map { oldestWait[$0] } ?? .infinity) {
                best = i
            }
            return best
        }
    }

    /// Loops other than `index` whose clients wait (a server closed: they may open one now).
    func waitingLoops(except index: Int) -> [Int] {
        lock.withLock { waiting.indices.filter { $0 != index && waiting[$0] > 0 } }
    }
}
