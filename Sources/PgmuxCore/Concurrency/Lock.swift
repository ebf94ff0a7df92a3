import Glibc

/// A pthread mutex, for the few structures the event loops of one process share (see
/// `LoopGroup`). pthread rather than a futex of our own, so that ThreadSanitizer understands it.
public final class Lock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    public init() { pthread_mutex_init(mutex, nil) }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    @inline(__always)
    public func withLock<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    public func lock() { pthread_mutex_lock(mutex) }

    /// Takes the lock if it is free; the caller unlocks.
    public func tryLock() -> Bool { pthread_mutex_trylock(mutex) == 0 }
    public func unlock() { pthread_mutex_unlock(mutex) }
}
