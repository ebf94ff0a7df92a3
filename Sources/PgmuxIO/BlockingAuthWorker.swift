import Glibc
import CLibEV

/// Runs password checks that block (a PAM stack, an LDAP server) on worker threads, so that a
/// slow module or a server that never answers stalls neither the event loop nor, up to
/// `maxThreads` of them at once, other such logins. Jobs cross through `WorkerChannel`, the
/// cross-thread seam; completions run on the loop thread.
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

    private let ev: OpaquePointer
    private let channel = WorkerChannel<Job, Verdict> { $0() }
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
            channel.wake(ev, async)
        }
        if channel.unclaimed >= 0 && threads < maxThreads && channel.startThread() { threads += 1 }
        guard threads > 0 else { return false }
        nextTicket &+= 1
        completions[nextTicket] = done
        channel.post(nextTicket, job)
        return true
    }

    /// Loop thread, from the ev_async callback.
    fileprivate func drain() {
        for (ticket, verdict) in channel.takeResults() { completions.removeValue(forKey: ticket)?(verdict) }
    }

    func stop() {
        guard started else { return }
        channel.stop()
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
