#!/usr/bin/env python3
"""Helper of scripts/bench.sh (`make bench`); standard library only.

  bench_report.py record ...   parse one pgbench run, append it as a JSON line to runs.jsonl
  bench_report.py idle ...     open N idle authenticated clients (raw protocol, SCRAM-SHA-256 / md5 /
                               cleartext) against a pooler, measure its VmRSS at each N, append to
                               runs.jsonl
  bench_report.py report DIR   medians over rounds -> DIR/results.md, DIR/results.json, table on stdout

A run counts as FAIL (never as a number) when pgbench exited non-zero, printed an error, reported
aborted clients or failed transactions, processed no transaction, or the pooler died; for the idle
clients, when a login failed, a connection was dropped or the pooler died. A workload whose runs
failed in any round is shown as FAIL for that target.
"""
import argparse
import asyncio
import base64
import glob
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import statistics
import struct
import sys
import time

# ---------------------------------------------------------------------------------------- record


def parse_pgbench(text):
    r = {}
    m = re.search(r"number of transactions actually processed: (\d+)", text)
    r["txns"] = int(m.group(1)) if m else 0
    m = re.search(r"number of failed transactions: (\d+)", text)
    r["failed_txns"] = int(m.group(1)) if m else 0
    m = re.search(r"latency average = ([\d.]+) ms", text)
    r["latency_ms"] = float(m.group(1)) if m else None
    # -C (churn) reports the average time of its many connections instead of the initial one
    m = re.search(r"(?:initial|average) connection time = ([\d.]+) ms", text)
    r["conn_ms"] = float(m.group(1)) if m else None
    m = re.search(r"^tps = ([\d.]+)", text, re.M)
    r["tps"] = float(m.group(1)) if m else None
    # -T counts connecting: what is left of it is the time over which the transactions ran
    m = re.search(r"^duration: (\d+) s", text, re.M)
    if m and r["conn_ms"] is not None and "initial connection time" in text:
        r["steady_s"] = max(0.0, int(m.group(1)) - r["conn_ms"] / 1000.0)
    return r


def first_error(text):
    for line in text.splitlines():
        low = line.lower()
        if "error" in low or "aborted" in low or "fatal" in low:
            return line.strip()[:200]
    return None


def pgbench_failures(text, r, died_reason, rc):
    """why a pgbench run does not count (empty when it does): a dead pooler, pgbench's exit status,
    an error or abort in its output, failed transactions, or no transactions at all."""
    reasons = []
    if died_reason:
        reasons.append(died_reason)
    if rc:
        reasons.append("pgbench exit %d" % rc)
    err = first_error(text)
    if err:
        reasons.append(err)
    if r["failed_txns"]:
        reasons.append("%d failed transactions" % r["failed_txns"])
    if not r["txns"] or r["tps"] is None:
        if not err and not rc and re.search(r"^duration: \d+ s", text, re.M):
            # pgbench 15 prints no connection time when the -T alarm fired before it was connected
            reasons.append("no transactions (connecting took all of -T? raise --connect-ms)")
        else:
            reasons.append("no transactions")
    return reasons


def percentile(ordered, p):
    """nearest rank: the smallest value with at least p of the values at or below it"""
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def txlog_latencies(prefix):
    """latency percentiles (ms) from pgbench's per-transaction logs PREFIX.PID[.TID], one per
    pgbench thread: lines "client_id transaction_no time_us script_no time_epoch time_us".
    Each client's first transaction (its lowest transaction_no) is left out: pgbench 15 connects
    every client first and then sends all their first queries at the same instant, so that round
    measures the start, not the steady state; nothing before it is in the log (connecting is not a
    transaction)."""
    files = [f for f in glob.glob(glob.escape(prefix) + ".*") if not f.endswith(".gz")]
    rows, first_no, failed = [], {}, 0
    for path in files:
        with open(path, errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 3 or not fields[0].isdigit() or not fields[1].isdigit():
                    continue
                if not fields[2].isdigit():   # "failed", "skipped", ...: not a latency
                    failed += 1
                    continue
                client, no = int(fields[0]), int(fields[1])
                rows.append((client, no, int(fields[2])))
                if no < first_no.get(client, no + 1):
                    first_no[client] = no
    lat = [us for client, no, us in rows if no != first_no[client]]
    r = {"lat_files": len(files), "lat_txns": len(lat), "lat_first_dropped": len(rows) - len(lat),
         "lat_clients": len(first_no), "lat_failed": failed}
    if lat:
        lat.sort()
        for key, p in (("p50_ms", 0.5), ("p99_ms", 0.99), ("p999_ms", 0.999)):
            r[key] = percentile(lat, p) / 1000.0
        r["max_ms"] = lat[-1] / 1000.0
    return r


def cmd_record(a):
    text = open(a.out, errors="replace").read() if os.path.exists(a.out) else ""
    r = parse_pgbench(text)
    rec = {"workload": a.workload, "target": a.target, "round": a.round, "rc": a.rc, **r}
    reasons = pgbench_failures(text, r, None if a.alive else a.died_reason or "pooler died", a.rc)
    if a.txlog_prefix:
        lr = txlog_latencies(a.txlog_prefix)
        rec.update(lr)
        if not lr["lat_files"]:
            reasons.append("no per-transaction log")
        elif not lr["lat_txns"]:
            reasons.append("no transaction after each client's first in the per-transaction log")
        if lr["lat_failed"]:
            reasons.append("%d failed transactions in the per-transaction log" % lr["lat_failed"])
    if a.workers:
        rec["workers"] = int(a.workers) if a.workers.isdigit() else a.workers
    if a.wall_ms:
        rec["wall_s"] = a.wall_ms / 1000.0
        if a.machine_ticks is not None:
            rec["machine_cores"] = a.machine_ticks / a.clk_tck / rec["wall_s"]
        if a.cpu_ticks is not None:
            # the pooler's cores in use: its CPU seconds (the logins' included) per second of the
            # transactions (pgbench's -T less its connecting), or of the whole run
            rec["cores"] = a.cpu_ticks / a.clk_tck / (r.get("steady_s") or rec["wall_s"])
    rec["ok"] = not reasons
    rec["reason"] = "; ".join(dict.fromkeys(reasons)) or None
    if a.machine_ticks is not None and r["txns"]:
        rec["machine_us_per_txn"] = a.machine_ticks * 1e6 / a.clk_tck / r["txns"]
    if a.cpu_ticks is not None and r["txns"]:
        rec["cpu_us_per_txn"] = a.cpu_ticks * 1e6 / a.clk_tck / r["txns"]
        rec["cpu_s"] = a.cpu_ticks / a.clk_tck
        if a.sys_ticks is not None:
            rec["sys_us_per_txn"] = a.sys_ticks * 1e6 / a.clk_tck / r["txns"]
            rec["user_us_per_txn"] = rec["cpu_us_per_txn"] - rec["sys_us_per_txn"]
    with open(a.runs, "a") as f:
        f.write(json.dumps(rec) + "\n")
    if rec["ok"]:
        cpu = " cpu %.1f us/txn" % rec["cpu_us_per_txn"] if "cpu_us_per_txn" in rec else ""
        if rec.get("cores") is not None and a.workload == "scaling":
            cpu += ", %.2f cores" % rec["cores"]
        if rec.get("p99_ms") is not None:
            cpu += ", p50 %.1f p99 %.1f p99.9 %.1f ms" % (rec["p50_ms"], rec["p99_ms"], rec["p999_ms"])
        print("  %-10s %-16s round %d: %10.0f tps%s" % (a.workload, a.target, a.round, r["tps"], cpu))
    else:
        print("  %-10s %-16s round %d: FAIL (%s)" % (a.workload, a.target, a.round, rec["reason"]))


# ------------------------------------------------------------------------------------------ idle


def vmrss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


class LoginError(Exception):
    pass


_pbkdf2_cache = {}


def msg(t, body):
    return t + struct.pack("!I", len(body) + 4) + body


async def read_msg(reader):
    hdr = await reader.readexactly(5)
    n = struct.unpack("!I", hdr[1:])[0]
    return hdr[:1], await reader.readexactly(n - 4)


def error_text(body):
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[part[:1]] = part[1:].decode(errors="replace")
    return "%s %s" % (fields.get(b"C", ""), fields.get(b"M", ""))


async def login(host, port, user, password, db):
    reader, writer = await asyncio.open_connection(host, port)
    params = b"user\0" + user.encode() + b"\0database\0" + db.encode() + b"\0\0"
    writer.write(struct.pack("!II", len(params) + 8, 196608) + params)
    nonce = cfirst_bare = None
    while True:
        t, body = await read_msg(reader)
        if t == b"E":
            raise LoginError(error_text(body))
        if t == b"Z":
            return reader, writer
        if t != b"R":
            continue  # ParameterStatus, BackendKeyData, NoticeResponse
        code = struct.unpack("!I", body[:4])[0]
        if code == 0:
            continue
        if code == 3:
            writer.write(msg(b"p", password.encode() + b"\0"))
        elif code == 5:
            inner = hashlib.md5(password.encode() + user.encode()).hexdigest().encode()
            writer.write(msg(b"p", b"md5" + hashlib.md5(inner + body[4:8]).hexdigest().encode() + b"\0"))
        elif code == 10:
            if b"SCRAM-SHA-256\0" not in body[4:]:
                raise LoginError("no SCRAM-SHA-256 offered")
            nonce = base64.b64encode(secrets.token_bytes(18)).decode()
            cfirst_bare = "n=,r=" + nonce
            cfirst = ("n,," + cfirst_bare).encode()
            writer.write(msg(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(cfirst)) + cfirst))
        elif code == 11:
            sfirst = body[4:].decode()
            attrs = dict(kv.split("=", 1) for kv in sfirst.split(","))
            if not attrs["r"].startswith(nonce):
                raise LoginError("bad server nonce")
            key = (attrs["s"], attrs["i"])
            salted = _pbkdf2_cache.get(key)
            if salted is None:
                salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]),
                                             int(attrs["i"]))
                _pbkdf2_cache[key] = salted
            client_key = hmac.digest(salted, b"Client Key", "sha256")
            stored = hashlib.sha256(client_key).digest()
            cfinal_wo = "c=biws,r=" + attrs["r"]
            auth_msg = ",".join([cfirst_bare, sfirst, cfinal_wo]).encode()
            sig = hmac.digest(stored, auth_msg, "sha256")
            proof = bytes(x ^ y for x, y in zip(client_key, sig))
            writer.write(msg(b"p", (cfinal_wo + ",p=" + base64.b64encode(proof).decode()).encode()))
        elif code == 12:
            continue
        else:
            raise LoginError("unsupported auth request %d" % code)


async def idle_main(a):
    counts = [int(c) for c in a.counts.split(",") if c]
    conns, dropped, errors = [], [0], []
    sem = asyncio.Semaphore(a.concurrency)

    async def watch(reader):
        try:
            while await reader.read(65536):
                pass
        except Exception:
            pass
        dropped[0] += 1

    async def one():
        async with sem:
            for attempt in range(3):
                try:
                    r, w = await asyncio.wait_for(login(a.host, a.port, a.user, a.password, a.db), 60)
                    conns.append((w, asyncio.ensure_future(watch(r))))
                    return
                except (ConnectionRefusedError, ConnectionResetError) as e:
                    # a full listen backlog: retry, like a client would
                    last = e
                    await asyncio.sleep(0.2)
                except Exception as e:
                    errors.append("%s: %s" % (type(e).__name__, e))
                    return
            errors.append("%s: %s" % (type(last).__name__, last))

    # one login and logout first, so the pool has its server connection before the baseline
    r, w = await login(a.host, a.port, a.user, a.password, a.db)
    w.write(msg(b"X", b""))
    w.close()
    await asyncio.sleep(a.settle)
    base = vmrss_kb(a.pid)
    points = []
    for n in counts:
        t0 = time.time()
        await asyncio.gather(*(one() for _ in range(n - len(conns))))
        took = time.time() - t0
        await asyncio.sleep(a.settle)
        ok = alive(a.pid) and not errors and dropped[0] == 0 and len(conns) == n
        rss = vmrss_kb(a.pid) if alive(a.pid) else None
        reason = None
        if not alive(a.pid):
            reason = "pooler died"
        elif errors:
            reason = "%d logins failed: %s" % (len(errors), errors[0])
        elif dropped[0]:
            reason = "%d connections dropped" % dropped[0]
        points.append({"clients": n, "rss_kb": rss, "base_kb": base, "ok": ok, "reason": reason,
                       "login_s": took})
        if not ok:
            break
    if a.active and points and points[-1]["ok"]:
        points.append(await busy_phase(a, len(conns), dropped, errors))
    for w, task in conns:
        task.cancel()
        try:
            w.close()
        except Exception:
            pass
    await asyncio.sleep(0.2)
    return points


async def busy_phase(a, idle_count, dropped, errors):
    """pgbench with a.active clients while idle_count idle clients stay connected: both must be
    served at once, with no pgbench error and no idle connection dropped."""
    cmd = ["pgbench", "-n", "-S", "-M", "simple", "-c", str(a.active), "-j", "2", "-T", str(a.active_seconds),
           "-h", a.host, "-p", str(a.port), "-U", a.user, a.db]
    env = dict(os.environ, PGPASSWORD=a.password)
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    text = (await proc.communicate())[0].decode(errors="replace")
    if a.pgbench_out:
        open(a.pgbench_out, "w").write(text)
    await asyncio.sleep(a.settle)
    r = parse_pgbench(text)
    reasons = pgbench_failures(text, r, None if alive(a.pid) else "pooler died", proc.returncode)
    if dropped[0]:
        reasons.append("%d idle connections dropped" % dropped[0])
    return {"busy": True, "clients": idle_count, "active": a.active, "tps": r["tps"], "ok": not reasons,
            "reason": "; ".join(reasons) or None}


def cmd_idle(a):
    try:
        points = asyncio.run(idle_main(a))
    except Exception as e:
        points = [{"clients": int(a.counts.split(",")[0]), "ok": False,
                   "reason": "%s: %s" % (type(e).__name__, e)}]
    wanted = [int(c) for c in a.counts.split(",") if c]
    busy = [p for p in points if p.get("busy")]
    points = [p for p in points if not p.get("busy")]
    with open(a.runs, "a") as f:
        if a.active:
            p = busy[0] if busy else {"ok": False, "reason": "idle clients not reached"}
            rec = {"workload": "busy", "target": a.target, "round": a.round, "idle_clients": max(wanted),
                   "active_clients": a.active, "tps": p.get("tps"), "ok": p["ok"], "reason": p["reason"]}
            f.write(json.dumps(rec) + "\n")
            if p["ok"]:
                print("  %-10s %-16s round %d: %d idle + %d active clients, %.0f tps, no idle client dropped"
                      % ("busy", a.target, a.round, max(wanted), a.active, p["tps"]))
            else:
                print("  %-10s %-16s round %d: FAIL (%s)" % ("busy", a.target, a.round, p["reason"]))
        for n in wanted:
            p = next((p for p in points if p["clients"] == n), None)
            if p is None:
                p = {"clients": n, "ok": False, "reason": "not reached (%s)" % points[-1]["reason"]}
            rec = {"workload": "idle%d" % n, "target": a.target, "round": a.round, **p}
            if p["ok"]:
                rec["bytes_per_client"] = (p["rss_kb"] - p["base_kb"]) * 1024 / n
            f.write(json.dumps(rec) + "\n")
            if p["ok"]:
                print("  %-10s %-16s round %d: RSS %.1f MB (base %.1f MB), %.0f bytes/client, logins %.1f s"
                      % (rec["workload"], a.target, a.round, p["rss_kb"] / 1024, p["base_kb"] / 1024,
                         rec["bytes_per_client"], p["login_s"]))
            else:
                print("  %-10s %-16s round %d: FAIL (%s)" % (rec["workload"], a.target, a.round, p["reason"]))


# ---------------------------------------------------------------------------------------- report

WORKLOADS = {
    "select": "select-only, simple (-S, 50 clients)",
    "extended": "select-only, -M extended (50 clients)",
    "prepared": "select-only, -M prepared (50 clients)",
    "tpcb": "TPC-B-like (50 clients)",
    "many": "1,000 clients, pool of 20 (-S)",
    "latency-1k": "latency, 1,000 clients, pool of 20 (-S)",
    "latency-10k": "latency, 10,000 clients, pool of 20 (-S)",
    "scaling": "scaling, SELECT 1, 200 clients, pool of 20",
    "select-tls": "select-only over TLS (-S, 50 clients, sslmode=require)",
    "churn": "connection churn (-C -S, 20 clients)",
    "churn-tls": "churn over TLS (-C -S, 20 clients, sslmode=require)",
}
# pgbench -C opens a new connection for every transaction: there, per transaction = per connection
CHURN = ("churn", "churn-tls")
LATENCY = ("latency-1k", "latency-10k")
# results from before --pgbouncer had one PgBouncer target called "pgbouncer"
OLD_TARGETS = ["pgmux", "pgbouncer", "direct"]


def label(t):
    """short column name of a target: pgbouncer-1.25.2 -> PgB 1.25.2"""
    if t == "pgbouncer":
        return "PgB"
    if t.startswith("pgbouncer-"):
        return "PgB " + t[len("pgbouncer-"):]
    return {"relay": "floor"}.get(t, t)


def short(t):
    """name of a target in a ratio's header: pgmux-w2 -> w2, pgbouncer-1.25.2 -> PgB 1.25.2"""
    if t.startswith("pgmux-"):
        return t[len("pgmux-"):]
    return label(t)


def fmt(v, digits=0):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    return "{:,.{d}f}".format(v, d=digits)


def cell(runs, key):
    """median of key over the runs, or 'FAIL k/n' when any run failed."""
    if not runs:
        return None
    bad = [r for r in runs if not r.get("ok")]
    if bad:
        return "FAIL %d/%d" % (len(bad), len(runs))
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def cell_json(runs, keys):
    """machine-readable: medians as numbers (null when any run failed) and the failure count."""
    runs = runs or []
    bad = [r for r in runs if not r.get("ok")]
    d = {"ok": bool(runs) and not bad, "runs": len(runs), "failed_runs": len(bad)}
    for k in keys:
        vals = [r[k] for r in runs if r.get(k) is not None]
        d[k] = statistics.median(vals) if vals and not bad else None
    if bad:
        d["reasons"] = sorted({r.get("reason") or "?" for r in bad})
    return d


def num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def ratio(a, b):
    if num(a) and num(b) and b:
        return "%.2f" % (a / b)
    return "–"


def ratio_num(a, b):
    return a / b if num(a) and num(b) and b else None


def paired_ratio(xs, ys, key):
    """x/y of `key` as the median over rounds of the two targets' ratio within one round, falling
    back to the ratio of the medians when no round has both. Targets run back to back within a
    round, so a shared machine's drift between rounds (direct tps moving by ±15 % or more) cancels
    out of the ratio instead of landing on whichever target had the slow round's median."""
    def by_round(runs):
        return {r["round"]: r[key] for r in runs or [] if r.get("ok") and num(r.get(key)) and "round" in r}
    if any(not r.get("ok") for r in (xs or []) + (ys or [])):
        return None
    a, b = by_round(xs), by_round(ys)
    both = [a[k] / b[k] for k in a if k in b and b[k]]
    if both:
        return statistics.median(both)
    return ratio_num(cell(xs, key), cell(ys, key))


def row(cells):
    return "| " + " | ".join(cells) + " |"


def header(cells, left=1):
    """a Markdown table header: the first `left` columns are text, the others numbers"""
    return [row(cells), "|" + "---|" * left + "---:|" * (len(cells) - left)]


def cmd_report(a):
    runs = [json.loads(l) for l in open(os.path.join(a.dir, "runs.jsonl")) if l.strip()]
    meta = json.load(open(os.path.join(a.dir, "meta.json")))
    by = {}
    for r in runs:
        by.setdefault((r["workload"], r["target"]), []).append(r)
    targets = list(meta.get("targets") or OLD_TARGETS)
    targets += sorted({t for _, t in by if t not in targets})
    pgbs = meta.get("pgbouncers") or [t for t in targets if t == "pgbouncer" or t.startswith("pgbouncer-")]
    pgmuxes = meta.get("pgmuxes") or ["pgmux"]
    workers = meta.get("workers") or {}
    poolers = pgmuxes + pgbs
    # the ratios shown: each pgmux against each PgBouncer, then each further pgmux against the first
    # (pgmux-w2/pgmux-w1 with --workers 1,2)
    pairs = [(m, b) for m in pgmuxes for b in pgbs] + [(m, pgmuxes[0]) for m in pgmuxes[1:]]
    skipped = meta.get("skipped") or {}
    shown = [t for t in targets if t != "relay"]   # the floor relay shows in the CPU split only

    def get(w, t, key):
        if (w, t) not in by and t in skipped.get(w, []):
            return "skipped"
        return cell(by.get((w, t)), key)

    out = {"meta": meta, "targets": targets, "pgbouncers": pgbs, "pgmuxes": pgmuxes, "workloads": {},
           "results": {}, "ratios": {}, "runs": runs}
    lines = ["# pgmux benchmark, %s" % meta.get("started", ""), "",
             "%s; %s round(s) x %s s per run, medians; pool_mode=transaction, default_pool_size=20, "
             "auth scram-sha-256; pgbench scale %s; %s." % (meta.get("host", ""), meta.get("rounds"),
                                                           meta.get("duration"), meta.get("scale"),
                                                           meta.get("versions", "")),
             ""]
    placements = meta.get("placements") or {}
    if len(pgmuxes) > 1 or workers.get(pgmuxes[0]):
        lines += ["pgmux targets: %s (the same binary, `workers = N` in each one's ini; worker_placement "
                  "is the default, load, unless given)." % ", ".join(
            "%s (workers = %s%s)" % (m, workers.get(m) or "default",
                                     ", worker_placement = %s" % placements[m] if m in placements else "")
            for m in pgmuxes), ""]
    if meta.get("tls_key"):
        lines += ["TLS: a self-signed %s certificate; client_tls_sslmode = allow with only the key and "
                  "certificate set (each pooler's other TLS defaults), PostgreSQL ssl = on with the same "
                  "certificate, pooler-to-server links plain (server_tls_sslmode = disable); *-tls "
                  "workloads run with sslmode=require, all others with sslmode=disable." % meta["tls_key"], ""]
    tp = [w for w in WORKLOADS if any(k[0] == w for k in by)]
    for w in tp:
        churn = w in CHURN
        out["workloads"][w] = {"title": WORKLOADS[w], "sslmode": "require" if w.endswith("-tls") else "disable",
                               "cpu_per": "connection" if churn else "transaction"}
        keys = ["tps", "latency_ms", "cpu_us_per_txn", "conn_ms"]
        if w in LATENCY:
            keys += ["p50_ms", "p99_ms", "p999_ms", "lat_txns", "steady_s"]
        if w == "scaling":
            keys += ["cores", "machine_cores"]
        out["results"][w] = {t: cell_json(by.get((w, t)), keys) for t in targets if (w, t) in by}
        for t in skipped.get(w, []):
            if (w, t) not in by:
                out["results"][w][t] = {"ok": False, "skipped": True, "runs": 0, "failed_runs": 0}
        if churn:
            for d in out["results"][w].values():
                d["cpu_us_per_conn"] = d.get("cpu_us_per_txn")
        res = out["results"][w]
        out["ratios"][w] = {"%s/%s" % (x, y): {
            "tps": paired_ratio(by.get((w, x)), by.get((w, y)), "tps"),
            "cpu_per_txn": paired_ratio(by.get((w, x)), by.get((w, y)), "cpu_us_per_txn")}
            for x, y in pairs}
        if w in LATENCY:
            for x, y in pairs:
                for k in ("p50_ms", "p99_ms", "p999_ms"):
                    out["ratios"][w]["%s/%s" % (x, y)][k] = ratio_num(res.get(x, {}).get(k), res.get(y, {}).get(k))

    def throughput_tables(ws, unit):
        res = header(["workload"] + ["%s tps" % label(t) for t in shown]
                     + ["%s/%s tps" % (short(x), short(y)) for x, y in pairs])
        for w in ws:
            c = {t: get(w, t, "tps") for t in shown}
            res.append(row([WORKLOADS[w]] + [fmt(c[t]) for t in shown]
                           + [fmt(paired_ratio(by.get((w, x)), by.get((w, y)), "tps"), 2) for x, y in pairs]))
        res += [""] + header(["workload"] + ["%s µs CPU/%s" % (label(t), unit) for t in poolers]
                             + ["%s/%s CPU" % (short(x), short(y)) for x, y in pairs])
        for w in ws:
            u = {t: get(w, t, "cpu_us_per_txn") for t in poolers}
            res.append(row([WORKLOADS[w]] + [fmt(u[t], 1) for t in poolers]
                           + [fmt(paired_ratio(by.get((w, x)), by.get((w, y)), "cpu_us_per_txn"), 2) for x, y in pairs]))
        return res + [""]

    steady = [w for w in tp if w not in CHURN]
    churned = [w for w in tp if w in CHURN]
    if steady:
        lines += throughput_tables(steady, "txn")
    if churned:
        lines += ["Connection churn: pgbench -C opens a new connection for every transaction (TCP and a "
                  "SCRAM login; with sslmode=require a TLS handshake first), so tps is connections per "
                  "second and the pooler's CPU is per connection:", ""]
        lines += throughput_tables(churned, "conn")
    lat = [w for w in tp if w in LATENCY]
    if lat:
        lines += ["Latency under many clients (pgbench -S -M simple over the pool of 20): percentiles of "
                  "pgbench's per-transaction log (-l), leaving out each client's first transaction (pgbench "
                  "connects every client first, then all of them send at once); measured s = pgbench's -T "
                  "less its connecting time, the time the transactions ran in; medians over rounds:", ""]
        lines += header(["workload", "target", "tps", "p50 ms", "p99 ms", "p99.9 ms", "transactions",
                         "measured s"] + ["p99 / %s p99" % label(b) for b in pgbs], left=2)
        for w in lat:
            for t in shown:
                if (w, t) not in by and t not in skipped.get(w, []):
                    continue
                v = {k: get(w, t, k) for k in ("tps", "p50_ms", "p99_ms", "p999_ms", "lat_txns", "steady_s")}
                lines.append(row([WORKLOADS[w], label(t), fmt(v["tps"]), fmt(v["p50_ms"], 1), fmt(v["p99_ms"], 1),
                                  fmt(v["p999_ms"], 1), fmt(v["lat_txns"]), fmt(v["steady_s"], 1)]
                                 + [ratio(v["p99_ms"], get(w, b, "p99_ms")) if t != b else "–" for b in pgbs]))
        lines.append("")
    if "scaling" in tp:
        base = pgmuxes[0]
        lines += ["Scaling (pgbench %s, a query PostgreSQL answers without a table, so the pooler is the "
                  "bottleneck): pooler cores = its CPU seconds (the 200 logins' included) per second that the "
                  "transactions ran; machine cores = busy CPUs of the whole machine over the whole run "
                  "(pgbench and PostgreSQL included, %s CPUs):" % (
                      meta.get("scaling_args") or "-M simple -f select1.sql -c 200", meta.get("cpus", "?")), ""]
        lines += header(["target", "workers", "tps", "pooler cores", "tps per worker", "µs CPU/txn",
                         "machine cores", "tps / %s tps" % label(base)])
        for t in poolers:
            if ("scaling", t) not in by:
                continue
            n = workers.get(t) if t in pgmuxes else 1   # PgBouncer: one thread
            tps = get("scaling", t, "tps")
            lines.append(row([label(t), str(n or "default"), fmt(tps), fmt(get("scaling", t, "cores"), 2),
                              fmt(tps / n, 0) if num(tps) and isinstance(n, int) else "–",
                              fmt(get("scaling", t, "cpu_us_per_txn"), 1), fmt(get("scaling", t, "machine_cores"), 2),
                              ratio(tps, get("scaling", base, "tps"))]))
        lines.append("")
    split = [w for w in tp if any(r.get("sys_us_per_txn") is not None
                                  for t in poolers for r in by.get((w, t), []))]
    if split:
        floor = any((w, "relay") in by for w in split)
        lines += ["Where the CPU goes, µs per transaction (per connection for churn): each pooler's user space "
                  "and kernel time; machine = busy time of all CPUs (when they are saturated, tps ≈ CPUs × 10⁶ "
                  "/ machine µs)%s:" % (
                      "; floor = scripts/floor-relay.c, a 1:1 relay doing one recv and one send per message "
                      "and nothing else (--floor): the least any pooler pays here, floor/CPU = the floor's CPU "
                      "over that pooler's" if floor else ""), "",
                  row(["workload", "target", "user", "kernel", "user+kernel", "machine"]
                      + (["floor/CPU"] if floor else [])),
                  "|---|---|" + "---:|" * (4 + floor)]
        for w in split:
            v = {(t, k): cell(by.get((w, t)), k + "_us_per_txn")
                 for t in targets for k in ("user", "sys", "cpu", "machine")}
            if (w, "relay") in by:
                out["results"][w]["relay"] = cell_json(by.get((w, "relay")), ["tps", "cpu_us_per_txn"])
            for t in targets:
                if out["results"][w].get(t) and (w, t) in by:
                    for k in ("user", "sys", "machine"):
                        out["results"][w][t][k + "_us_per_txn"] = cell_json(by.get((w, t)),
                                                                            [k + "_us_per_txn"])[k + "_us_per_txn"]
            for t in poolers + ["relay", "direct"]:
                if (w, t) not in by:
                    continue
                res = [WORKLOADS[w], label(t), fmt(v[t, "user"], 1), fmt(v[t, "sys"], 1), fmt(v[t, "cpu"], 1),
                       fmt(v[t, "machine"], 1)]
                if floor:
                    res.append(ratio(v["relay", "cpu"], v[t, "cpu"]) if t in poolers else "–")
                lines.append(row(res))
        lines.append("")
    idle = sorted({k[0] for k in by if k[0].startswith("idle")}, key=lambda s: int(s[4:]))
    if idle:
        lines += header(["idle authenticated clients"] + ["%s RSS MB" % label(t) for t in poolers]
                        + ["%s bytes/client" % label(t) for t in poolers]
                        + ["%s/%s bytes/client" % (short(x), short(y)) for x, y in pairs])
        for w in idle:
            rss = {}
            bpc = {}
            for t in poolers:
                rs = by.get((w, t))
                r = cell(rs, "rss_kb")
                rss[t] = r / 1024 if num(r) else r
                bpc[t] = cell(rs, "bytes_per_client")
            out["results"][w] = {t: cell_json(by.get((w, t)), ["rss_kb", "base_kb", "bytes_per_client"])
                                 for t in poolers}
            out["ratios"][w] = {"%s/%s" % (x, y): {"bytes_per_client": ratio_num(bpc[x], bpc[y])} for x, y in pairs}
            lines.append(row(["{:,}".format(int(w[4:]))] + [fmt(rss[t], 1) for t in poolers]
                             + [fmt(bpc[t]) for t in poolers] + [ratio(bpc[x], bpc[y]) for x, y in pairs]))
        lines.append("")
    if any(k[0] == "busy" for k in by):
        rs = {t: by.get(("busy", t)) or [] for t in poolers}
        first = next(r for t in poolers for r in rs[t])
        c = {t: cell(rs[t], "tps") for t in poolers}
        out["results"]["busy"] = {t: cell_json(rs[t], ["tps"]) for t in poolers}
        lines += header(["served at once"] + ["%s tps" % label(t) for t in poolers]
                        + ["%s/%s tps" % (short(x), short(y)) for x, y in pairs])
        lines += [row(["%s idle + %s active clients (-S), no idle client dropped" % (
                      "{:,}".format(first.get("idle_clients", 0)), "{:,}".format(first.get("active_clients", 0)))]
                      + [fmt(c[t]) for t in poolers] + [ratio(c[x], c[y]) for x, y in pairs]), ""]
    notes = []
    for (w, t), rs in sorted(by.items()):
        reasons = {}
        for r in rs:
            if not r.get("ok"):
                reasons.setdefault(r.get("reason") or "?", []).append(str(r["round"]))
        for reason, rounds in reasons.items():
            notes.append("- FAIL %s / %s (round %s): %s" % (w, t, ",".join(rounds), reason))
    if notes:
        lines += ["Failures:", ""] + notes + [""]
    skips = [(w, t) for w in tp for t in skipped.get(w, []) if (w, t) not in by]
    if skips:
        lines += ["Not run:", ""]
        for w, t in skips:
            if w == "scaling":
                why = "scaling measures the poolers only"
            else:
                why = ("PostgreSQL's max_connections (%s) has room for the pools and %s direct clients, not "
                       "for this workload's clients" % (meta.get("pg_max_connections", "?"),
                                                        "{:,}".format(meta.get("direct_max", 1000))))
            lines.append("- %s / %s: %s" % (w, label(t), why))
        lines.append("")
    lines.append("CPU/txn: the pooler's utime+stime (all its threads) during the run over pgbench's transactions "
                 "(includes logins for 1,000 clients or more; for churn every transaction is a login, hence "
                 "CPU/conn). Ratios < 1 on tps mean the first is slower; < 1 on CPU or bytes mean it uses less. "
                 "The tps and CPU ratios are medians over rounds of each round's ratio (the two targets "
                 "ran back to back), so drift between rounds cancels; the columns are medians per target.")
    md = "\n".join(lines) + "\n"
    open(os.path.join(a.dir, "results.md"), "w").write(md)
    with open(os.path.join(a.dir, "results.json"), "w") as f:
        json.dump(out, f, indent=1)
    sys.stdout.write(md)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("--runs", required=True)
    r.add_argument("--workload", required=True)
    r.add_argument("--target", required=True)
    r.add_argument("--round", type=int, required=True)
    r.add_argument("--rc", type=int, required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--alive", type=int, default=1)
    r.add_argument("--died-reason")
    r.add_argument("--cpu-ticks", type=int)
    r.add_argument("--sys-ticks", type=int, help="the kernel-mode part of --cpu-ticks")
    r.add_argument("--machine-ticks", type=int, help="busy time of all CPUs during the run")
    r.add_argument("--clk-tck", type=int, default=100)
    r.add_argument("--wall-ms", type=int, help="wall-clock time of the pgbench run")
    r.add_argument("--txlog-prefix", help="pgbench --log-prefix of the run: latency percentiles from its logs")
    r.add_argument("--workers", help="the workers setting of a pgmux target")
    i = sub.add_parser("idle")
    i.add_argument("--runs", required=True)
    i.add_argument("--target", required=True)
    i.add_argument("--round", type=int, required=True)
    i.add_argument("--pid", type=int, required=True)
    i.add_argument("--host", default="127.0.0.1")
    i.add_argument("--port", type=int, required=True)
    i.add_argument("--user", required=True)
    i.add_argument("--password", required=True)
    i.add_argument("--db", required=True)
    i.add_argument("--counts", default="1000,5000,10000")
    i.add_argument("--concurrency", type=int, default=32)
    i.add_argument("--active", type=int, default=0,
                   help="then run pgbench -S with this many clients while all idle ones stay connected")
    i.add_argument("--active-seconds", type=int, default=10)
    i.add_argument("--pgbench-out")
    i.add_argument("--settle", type=float, default=2.0)
    rep = sub.add_parser("report")
    rep.add_argument("dir")
    a = p.parse_args()
    {"record": cmd_record, "idle": cmd_idle, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
