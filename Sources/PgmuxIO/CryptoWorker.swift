import Glibc
import CLibEV
import PgmuxCore

/// The one cross-thread seam of pgmux: PBKDF2 (SCRAM key derivation), whose cost a peer chooses
/// through the iteration count, runs on one worker thread so the event loop never stalls on it.
///
/// * The loop calls `submit` with a `SCRAMDerivation` (Sendable values only cross) and a
///   completion. Completions stay on the loop thread, in `completions`; identical requests in
///   flight share one derivation.
/// * The worker takes jobs from `Channel.jobs`, runs them, appends the results to
///   `Channel.results` and wakes the loop with `ev_async_send` (the one libev call that is safe
///   from another thread).
/// * The loop's `ev_async` callback swaps the results out under the mutex and runs the
///   completions. Both queues are guarded by `Channel.mutex`; the worker sleeps on `Channel.cond`.
/// The thread starts with the first job (after a `-d` fork) and is told to exit when the loop is
/// freed. Nothing else in pgmux is touched by another thread.
final class CryptoWorker {
    /// State shared with the worker thread; everything in it is read and written under `mutex`.
    fileprivate final class Channel: @unchecked Sendable {
        let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
        var jobs: [(UInt64, SCRAMDerivation)] = []
        var results: [(UInt64, SCRAMKeys?)] = []
        var stopping = false
        /// Where the worker signals the loop (set before the thread starts, never changed).
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

        /// The worker thread: take a job, run it unlocked, post its result and wake the loop.
        /// The wake-up is sent under the mutex, so once `stop` has set `stopping` (under the
        /// same mutex) the watcher is never touched again and the loop may free it.
        func run() {
            pthread_mutex_lock(mutex)
            while true {
                while jobs.isEmpty && !stopping { pthread_cond_wait(cond, mutex) }
                if stopping { break }
                let (ticket, request) = jobs.removeFirst()
                pthread_mutex_unlock(mutex)
                let keys = request.run()
                pthread_mutex_lock(mutex)
                if stopping { break }
                results.append((ticket, keys))
                if let ev, let async { ev_async_send(ev, async) }
            }
            pthread_mutex_unlock(mutex)
        }
    }

    private let ev: OpaquePointer
    private let channel = Channel()
    private let async = UnsafeMutablePointer<ev_async>.allocate(capacity: 1)
    private var started = false
    private var nextTicket: UInt64 = 0
    /// Loop thread only: completions per ticket, and the ticket of each request in flight.
    private var completions: [UInt64: [(SCRAMKeys?) -> Void]] = [:]
    private var inFlight: [SCRAMDerivation.Identity: UInt64] = [:]
    private var identities: [UInt64: SCRAMDerivation.Identity] = [:]
    /// Derivations run so far (tests, stats).
    private(set) var completed = 0

    init(ev: OpaquePointer) {
        self.ev = ev
        async.initialize(to: ev_async())
    }

    /// Runs `request` on the worker; `done` is called on the loop thread with its result.
    func submit(_ request: SCRAMDerivation, _ done: @escaping (SCRAMKeys?) -> Void) {
        let identity = request.identity
        if let ticket = inFlight[identity] {
            completions[ticket, default: []].append(done)
            return
        }
        if !started { start() }
        nextTicket &+= 1
        let ticket = nextTicket
        completions[ticket] = [done]
        inFlight[identity] = ticket
        identities[ticket] = identity
        if threadless {
            let keys = request.run()
            channel.locked { channel.results.append((ticket, keys)) }
            ev_async_send(ev, async)
            return
        }
        channel.locked { channel.jobs.append((ticket, request)) }
        pthread_cond_signal(channel.cond)
    }

    private func start() {
        started = true
        pgmux_ev_async_init(async, cryptoResultsReady, Unmanaged.passUnretained(self).toOpaque())
        ev_async_start(ev, async)
        channel.ev = ev
        channel.async = async
        var thread = pthread_t()
        let context = Unmanaged.passRetained(channel).toOpaque()  // released by the thread
        let rc = pthread_create(&thread, nil, { raw in
            guard let raw else { return nil }
            Unmanaged<Channel>.fromOpaque(raw).takeRetainedValue().run()
            return nil
        }, context)
        if rc == 0 {
            pthread_detach(thread)
        } else {
            Unmanaged<Channel>.fromOpaque(context).release()
            threadless = true
        }
    }

    /// pthread_create failed (out of resources): derive on the loop, results still delivered
    /// through the async watcher so callers see the same order of events.
    private var threadless = false

    /// Loop thread, from the ev_async callback: hands finished results to their completions.
    fileprivate func drain() {
        let ready = channel.locked { () -> [(UInt64, SCRAMKeys?)] in
            defer { channel.results.removeAll() }
            return channel.results
        }
        for (ticket, keys) in ready {
            completed += 1
            if let identity = identities.removeValue(forKey: ticket) { inFlight[identity] = nil }
            for done in completions.removeValue(forKey: ticket) ?? [] { done(keys) }
        }
    }

    /// Tells the worker to exit after its current job (the loop is going away).
    func stop() {
        guard started else { return }
        channel.locked { channel.stopping = true; channel.jobs.removeAll() }
        pthread_cond_signal(channel.cond)
        ev_async_stop(ev, async)
    }

    deinit {
        stop()
        async.deinitialize(count: 1)
        async.deallocate()
    }
}

private func cryptoResultsReady(_ l: OpaquePointer?, _ w: UnsafeMutablePointer<ev_async>?, _ revents: Int32) {
    guard let w, let ctx = w.pointee.data else { return }
    Unmanaged<CryptoWorker>.fromOpaque(ctx)._withUnsafeGuaranteedRef { $0.drain() }
}
