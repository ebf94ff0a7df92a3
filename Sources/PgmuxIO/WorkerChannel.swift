import Glibc
import CLibEV

/// The cross-thread seam of pgmux: work whose cost a peer chooses (PBKDF2, a PAM stack, an LDAP
/// or Kerberos exchange) runs on worker threads, never on the event loop. `CryptoWorker` and
/// `BlockingAuthWorker` keep their tickets and completions on the loop thread; only this channel
/// is touched by both sides.
///
/// * Jobs (Sendable values only) cross in `jobs`, outputs come back in `results`, both under
///   `mutex`; idle workers sleep on `cond`.
/// * A worker wakes the loop with `ev_async_send`, the one libev call that is safe from another
///   thread, and does so under the mutex: once `stop` has set `stopping` (under the same mutex)
///   the watcher is never touched again and the loop may free it.
final class WorkerChannel<Job: Sendable, Output: Sendable>: @unchecked Sendable, WorkerThreadBody {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var jobs: [(UInt64, Job)] = []
    private var results: [(UInt64, Output)] = []
    private var idleThreads = 0
    private var stopping = false
    /// Where workers signal the loop (set before the first thread starts, never changed).
    private var ev: OpaquePointer?
    private var async: UnsafeMutablePointer<ev_async>?
    private let perform: @Sendable (Job) -> Output

    init(perform: @escaping @Sendable (Job) -> Output) {
        self.perform = perform
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    private func locked<R>(_ body: () -> R) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    /// Loop thread, before the first thread starts: where results are announced.
    func wake(_ ev: OpaquePointer, _ async: UnsafeMutablePointer<ev_async>) {
        locked { self.ev = ev; self.async = async }
    }

    /// Starts one more worker thread; false when the system refuses one.
    func startThread() -> Bool {
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self as AnyObject).toOpaque()  // released by the thread
        let rc = pthread_create(&thread, nil, { raw in
            guard let raw else { return nil }
            (Unmanaged<AnyObject>.fromOpaque(raw).takeRetainedValue() as? WorkerThreadBody)?.runWorker()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<AnyObject>.fromOpaque(context).release()
            return false
        }
        pthread_detach(thread)
        return true
    }

    /// Jobs that no idle worker will take at once.
    var unclaimed: Int { locked { jobs.count - idleThreads } }

    func post(_ ticket: UInt64, _ job: Job) {
        locked { jobs.append((ticket, job)) }
        pthread_cond_signal(cond)
    }

    /// An output computed on the loop thread (no worker could start), delivered like the others
    /// so that callers see the same order of events.
    func postResult(_ ticket: UInt64, _ output: Output) {
        locked {
            results.append((ticket, output))
            if let ev, let async { ev_async_send(ev, async) }
        }
    }

    /// Loop thread, from the ev_async callback: the outputs ready so far.
    func takeResults() -> [(UInt64, Output)] {
        locked {
            defer { results.removeAll() }
            return results
        }
    }

    /// Workers exit after their current job; queued jobs are dropped.
    func stop() {
        locked { stopping = true; jobs.removeAll() }
        pthread_cond_broadcast(cond)
    }

    /// One worker thread: take a job, run it unlocked, post its output, wake the loop.
    func runWorker() {
        pthread_mutex_lock(mutex)
        while true {
            idleThreads += 1
            while jobs.isEmpty && !stopping { pthread_cond_wait(cond, mutex) }
            idleThreads -= 1
            if stopping { break }
            let (ticket, job) = jobs.removeFirst()
            pthread_mutex_unlock(mutex)
            let output = perform(job)
            pthread_mutex_lock(mutex)
            if stopping { break }
            results.append((ticket, output))
            if let ev, let async { ev_async_send(ev, async) }
        }
        pthread_mutex_unlock(mutex)
    }
}

/// What a worker thread runs, whatever the channel's types (a C thread entry cannot name them).
protocol WorkerThreadBody: AnyObject {
    func runWorker()
}
