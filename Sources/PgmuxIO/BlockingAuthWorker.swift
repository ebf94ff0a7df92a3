import Glibc
import CLibEV

/// Runs password checks that block (a PAM stack, an LDAP server) on worker threads, so that a
/// slow module or a server that never answers stalls neither the event loop nor, up to
/// `maxThreads` of them at once, other such logins. The seam is CryptoWorker's: Sendable jobs
/// cross under a mutex, results come back through an `ev_async` watcher, completions run on the
/// loop thread.
///
/// The queue is bounded: past `capacity` checks waiting or running, `submit` refuses at once
/// (PgBouncer, whose queue holds 20, blocks its whole process until a slot frees up).
/// Threads start with the first jobs (after a `-d` fork), one more whenever every running one is
/// busy, and are told to exit when the loop is freed; a job still running then finishes first.
final class BlockingAuthWorker {
    /// A check's outcome; a refusal carries the reason to log (a worker thread does not log).
    enum Verdict: Sendable, Equatable {
        case accepted
        case refused(String)
    }

    /// A password check. Runs on a worker thread.
    typealias Job = @Sendable () -> Verdict

    /// State shared with the worker threads; read and written under `mutex` only.
    fileprivate final class Channel: @unchecked Sendable {
        let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
        var jobs: [(UInt64, Job)] = []
        var results: [(UInt64, Verdict)] = []
        var idleThreads = 0
        var stopping = false
        var ev: OpaquePointer?
        var async: UnsafeMutablePointer<ev_async>?

        init() {
            pthread_mutex_init(mutex, nil)
            pthread_cond_init(cond, nil)
        }

        deinit {
            pthread_cond_destroy(cond)
            pthread_mutex_destroy(mutex)
            cond.deallocate()
            mutex.deallocate()
        }

        func locked<R>(_ body: () -> R) -> R {
            pthread_mutex_lock(mutex)
            defer { pthread_mutex_unlock(mutex) }
            return body()
        }

        /// One worker thread: take a job, run it unlocked, post the verdict, wake the loop (under
        /// the mutex, so that after `stop` the watcher is never touched again).
        func run() {
            pthread_mutex_lock(mutex)
            while true {
                idleThreads += 1
                while jobs.isEmpty && !stopping { pthread_cond_wait(cond, mutex) }
                idleThreads -= 1
                if stopping { break }
                let (ticket, job) = jobs.removeFirst()
                pthread_mutex_unlock(mutex)
                let verdict = job()
                pthread_mutex_lock(mutex)
                if stopping { break }
                results.append((ticket, verdict))
                if let ev, let async { ev_async_send(ev, async) }
            }
            pthread_mutex_unlock(mutex)
        }
    }

    private let ev: OpaquePointer
    private let channel = Channel()
    private let async = UnsafeMutablePointer<ev_async>.allocate(capacity: 1)
    private let maxThreads: Int
    private let capacity: Int
    private var threads = 0
    private var started = false
    private var nextTicket: UInt64 = 0
    /// Loop thread only: the completion of each job waiting or running.
    private var completions: [UInt64: (Verdict) -> Void] = [:]

    init(ev: OpaquePointer, maxThreads: Int = 4, capacity: Int = 64) {
        self.ev = ev
        self.maxThreads = maxThreads
        self.capacity = capacity
        async.initialize(to: ev_async())
    }

    /// Queues `job`; `done` gets its verdict on the loop thread. False (and `done` never called)
    /// when the queue is full or no thread can be started.
    func submit(_ job: @escaping Job, _ done: @escaping (Verdict) -> Void) -> Bool {
        guard completions.count < capacity else { return false }
        if !started {
            started = true
            pgmux_ev_async_init(async, authResultsReady, Unmanaged.passUnretained(self).toOpaque())
            ev_async_start(ev, async)
            channel.ev = ev
            channel.async = async
        }
        let idle = channel.locked { channel.idleThreads - channel.jobs.count }
        if idle <= 0 && threads < maxThreads { startThread() }
        guard threads > 0 else { return false }
        nextTicket &+= 1
        completions[nextTicket] = done
        let ticket = nextTicket
        channel.locked { channel.jobs.append((ticket, job)) }
        pthread_cond_signal(channel.cond)
        return true
    }

    private func startThread() {
        var thread = pthread_t()
        let context = Unmanaged.passRetained(channel).toOpaque()  // released by the thread
        let rc = pthread_create(&thread, nil, { raw in
            guard let raw else { return nil }
            Unmanaged<Channel>.fromOpaque(raw).takeRetainedValue().run()
            return nil
        }, context)
        if rc == 0 {
            pthread_detach(thread)
            threads += 1
        } else {
            Unmanaged<Channel>.fromOpaque(context).release()
        }
    }

    /// Loop thread, from the ev_async callback.
    fileprivate func drain() {
        let ready = channel.locked { () -> [(UInt64, Verdict)] in
            defer { channel.results.removeAll() }
            return channel.results
        }
        for (ticket, verdict) in ready { completions.removeValue(forKey: ticket)?(verdict) }
    }

    func stop() {
        guard started else { return }
        channel.locked { channel.stopping = true; channel.jobs.removeAll() }
        pthread_cond_broadcast(channel.cond)
        ev_async_stop(ev, async)
    }

    deinit {
        stop()
        async.deinitialize(count: 1)
        async.deallocate()
    }
}

private func authResultsReady(_ l: OpaquePointer?, _ w: UnsafeMutablePointer<ev_async>?, _ revents: Int32) {
    guard let w, let ctx = w.pointee.data else { return }
    Unmanaged<BlockingAuthWorker>.fromOpaque(ctx)._withUnsafeGuaranteedRef { $0.drain() }
}
