import Glibc
import CLibEV
import PgmuxCore

/// PBKDF2 (SCRAM key derivation), whose cost a peer chooses through the iteration count, runs on
/// one worker thread (through `WorkerChannel`, the cross-thread seam) so the event loop never
/// stalls on it. Completions stay on the loop thread, in `completions`; identical requests in
/// flight share one derivation. The thread starts with the first job (after a `-d` fork) and is
/// told to exit when the loop is freed.
final class CryptoWorker {
    private let ev: OpaquePointer
    private let channel = WorkerChannel<SCRAMDerivation, SCRAMKeys?> { $0.run() }
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
            channel.postResult(ticket, request.run())
            return
        }
        channel.post(ticket, request)
    }

    private func start() {
        started = true
        pgmux_ev_async_init(async, cryptoResultsReady, Unmanaged.passUnretained(self).toOpaque())
        ev_async_start(ev, async)
        channel.wake(ev, async)
        threadless = !channel.startThread()
    }

    /// pthread_create failed (out of resources): derive on the loop, results still delivered
    /// through the async watcher so callers see the same order of events.
    private var threadless = false

    /// Loop thread, from the ev_async callback: hands finished results to their completions.
    fileprivate func drain() {
        for (ticket, keys) in channel.takeResults() {
            completed += 1
            if let identity = identities.removeValue(forKey: ticket) { inFlight[identity] = nil }
            for done in completions.removeValue(forKey: ticket) ?? [] { done(keys) }
        }
    }

    /// Tells the worker to exit after its current job (the loop is going away).
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

private func cryptoResultsReady(_ l: OpaquePointer?, _ w: UnsafeMutablePointer<ev_async>?, _ revents: Int32) {
    guard let w, let ctx = w.pointee.data else { return }
    Unmanaged<CryptoWorker>.fromOpaque(ctx)._withUnsafeGuaranteedRef { $0.drain() }
}
