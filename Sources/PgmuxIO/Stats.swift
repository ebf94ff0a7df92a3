import PgmuxCore

/// Statistics bookkeeping: each pool keeps PgBouncer's counters (SHOW STATS, SHOW POOLS, the
/// `stats:` log line); these helpers update them from the relay without allocating.
enum Stats {
    @inline(__always)
    static func queryDone(pool: Pool, client: ClientConnection, now: Double) {
        pool.counters.queryCount &+= 1
        if client.queryStart > 0 {
            pool.counters.queryTime &+= micros(now - client.queryStart)
            pool.queryHistogram.observe(now - client.queryStart)
            client.queryStart = 0
        }
    }

    /// A ReadyForQuery 'I' ended a transaction that began at `began` (its first query; 0 if unknown).
    @inline(__always)
    static func transactionDone(pool: Pool, began: Double, now: Double) {
        pool.counters.xactCount &+= 1
        if began > 0 {
            pool.counters.xactTime &+= micros(now - began)
            pool.transactionHistogram.observe(now - began)
        }
    }

    @inline(__always)
    static func assigned(pool: Pool, waited seconds: Double) {
        pool.counters.serverAssignmentCount &+= 1
        pool.counters.waitTime &+= micros(seconds)
        pool.waitHistogram.observe(seconds)
    }

    @inline(__always)
    static func micros(_ seconds: Double) -> UInt64 { seconds > 0 ? UInt64(seconds * 1_000_000) : 0 }

    /// The `stats:` line PgBouncer logs every stats_period (totals over all pools, per second).
    static func logLine(pools: [Pool], window: Double) -> String {
        var cur = AdminStatCounters(), old = AdminStatCounters()
        for p in pools {
            cur = add(cur, p.counters)
            old = add(old, p.periodCounters)
        }
        let a = AdminStatCounters.average(current: cur, older: old, windowUs: micros(window))
        return "stats: \(a.xactCount) xacts/s, \(a.queryCount) queries/s, \(a.psClientParseCount) client parses/s, "
            + "\(a.psServerParseCount) server parses/s, \(a.psBindCount) binds/s, in \(a.clientBytes) B/s, "
            + "out \(a.serverBytes) B/s, xact \(a.xactTime) us, query \(a.queryTime) us, wait \(a.waitTime) us"
    }

    static func add(_ a: AdminStatCounters, _ b: AdminStatCounters) -> AdminStatCounters {
        var r = a
        r.serverAssignmentCount &+= b.serverAssignmentCount; r.xactCount &+= b.xactCount
        r.queryCount &+= b.queryCount; r.clientBytes &+= b.clientBytes; r.serverBytes &+= b.serverBytes
        r.xactTime &+= b.xactTime; r.queryTime &+= b.queryTime; r.waitTime &+= b.waitTime
        r.psClientParseCount &+= b.psClientParseCount; r.psServerParseCount &+= b.psServerParseCount
        r.psBindCount &+= b.psBindCount
        return r
    }
}
