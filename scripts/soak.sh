#!/usr/bin/env bash
# `make soak`: pgmux under mixed load and injected faults for a few minutes, then checks that it
# recovered. Not part of `make test`.
#
#   scripts/soak.sh [--minutes N] [--quick] [--keep-going]
#
# A throwaway PostgreSQL 15 cluster (scripts/pg-cluster.sh) with a SCRAM user `soak`, `pgbench -i`
# data and a table soak_log; pgmux (as the postgres user) in transaction mode with pool_size 8,
# query_wait_timeout 10, server_login_retry 1, max_client_conn 500. After a warm-up run of the same
# load (15 s; 8 s with --quick) the baseline fds and RSS of pgmux are taken, then for N minutes
# (--minutes, default 5; --quick = 1):
#   load   pgbench -S 30 clients; pgbench TPC-B 8 clients -j 8; pgbench -M prepared -S 10 clients
#          (each run again when it ends or aborts; runs are at most 20 s so aborted clients come
#          back); a loop of psql sessions that BEGIN and INSERT a unique marker into soak_log, then
#          COMMIT (marker recorded once the server says COMMIT), or are killed (SIGKILL) or quit
#          without COMMIT mid-transaction.
#   faults every 10 s (from 5 s on), each of these once per shuffled cycle: pg_terminate_backend of
#          a random pgmux backend; SIGSTOP of a backend for 3 s; pg_ctl restart -m fast; a burst
#          of 200 connections opened and dropped; garbage bytes on the port; a slow reader (huge
#          SELECT, nothing read for 5 s, then drained and checked, or dropped).
# Then the load stops, 5 s pass, and these are checked (PASS/FAIL): pgmux alive and serving a
# query within 5 s; every committed marker in soak_log and no marker of a session that never sent
# COMMIT; no `idle in transaction` backend of soak; pgmux fds <= baseline + pool_size + 5 and
# RSS <= baseline + 20 MB; the fault probes saw sane answers. A table gives transactions served
# (pgmux SHOW STATS) and pgbench aborted clients per phase. Ends with "N passed, N failed";
# exit status 1 on any FAIL. Logs go to results/soak-<timestamp>/. Everything started here is
# stopped and the cluster removed on exit, Ctrl-C included. --keep-going: do not end the soak
# early when pgmux dies.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

MINUTES=5 WARMUP=15 KEEP_GOING=0
POOL=8 FAULT_EVERY=10 SEG=20 SCALE=4
usage() { sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) MINUTES=1 WARMUP=8 ;;
    --minutes) [ $# -ge 2 ] || usage 2 >&2; MINUTES=$2; shift ;;
    --minutes=*) MINUTES=${1#*=} ;;
    --keep-going) KEEP_GOING=1 ;;
    -h|--help) usage 0 ;;
    *) echo "soak.sh: unknown option $1" >&2; usage 2 >&2 ;;
  esac
  shift
done
[[ "$MINUTES" =~ ^[1-9][0-9]*$ ]] || { echo "soak.sh: --minutes takes a positive integer" >&2; exit 2; }
SOAK=$((MINUTES * 60))

PGBIN=/usr/lib/postgresql/15/bin
PY=${PYTHON:-python3}
for need in "$PGBIN/postgres" "$PGBIN/pg_ctl" "$(command -v pgbench || true)" "$(command -v psql || true)" \
            "$(command -v ss || true)"; do
  [ -n "$need" ] && [ -x "$need" ] || { echo "soak.sh: missing ${need:-pgbench/psql/ss} (scripts/deps.sh installs PostgreSQL 15)" >&2; exit 1; }
done
[ -x .build/release/pgmux ] || { echo "soak.sh: .build/release/pgmux missing: run make first" >&2; exit 1; }
command -v "$PY" >/dev/null || { echo "soak.sh: python3 is needed" >&2; exit 1; }

is_root=0; [ "$(id -u)" = 0 ] && is_root=1
as_pg() { if [ $is_root = 1 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

stamp=$(date +%Y%m%d-%H%M%S)
out="$root/results/soak-$stamp"
mkdir -p "$out"
tmp=$(mktemp -d /tmp/pgmux-soak-XXXXXX)
chmod 755 "$tmp"
mkdir -p "$tmp/load" "$tmp/pgmux" "$tmp/bin"

PGMUX_PID= PGMUX_LAUNCHER= STOPPED= child= PROBE=
RUNNERS=()
cleanup() {
  local rc=$? p
  set +e
  trap - INT TERM
  [ -n "$STOPPED" ] && kill -CONT "$STOPPED" 2>/dev/null    # never leave a backend stopped
  touch "$tmp/stop" 2>/dev/null
  for p in ${RUNNERS[@]+"${RUNNERS[@]}"} $child $PROBE; do kill -TERM "$p" 2>/dev/null; done
  for p in ${RUNNERS[@]+"${RUNNERS[@]}"} $child $PROBE; do wait "$p" 2>/dev/null; done
  if [ -n "$PGMUX_PID" ] && kill -0 "$PGMUX_PID" 2>/dev/null; then
    kill -TERM "$PGMUX_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$PGMUX_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PGMUX_PID" 2>/dev/null
  fi
  [ -n "$PGMUX_LAUNCHER" ] && wait "$PGMUX_LAUNCHER" 2>/dev/null
  if [ -d "$tmp" ]; then
    tail -n 2000 "$tmp/pgmux/pgmux.log" > "$out/pgmux.log" 2>/dev/null
    tail -n 300 "$tmp/pg/postgres.log" > "$out/postgres.log" 2>/dev/null
    scripts/pg-cluster.sh stop "$tmp/pg"
    rm -rf "$tmp"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "soak.sh: interrupted, cleaning up" >&2; exit 130' INT TERM

free_port() {
  local p=$1
  while ss -Hltn "sport = :$p" | grep -q .; do p=$((p + 1)); done
  echo "$p"
}
PGPORT=$(free_port 35432)
PORT=$(free_port 36432)
[ "$PORT" != "$PGPORT" ] || PORT=$(free_port $((PGPORT + 1)))

t_start=$(date +%s)
log() { printf '[%4ss] %s\n' $(($(date +%s) - t_start)) "$*" | tee -a "$out/soak.log"; }
nap() { sleep "$1" & child=$!; wait "$child" || true; child=; }   # Ctrl-C is handled at once

# ---- PostgreSQL
log "PostgreSQL 15 on 127.0.0.1:$PGPORT, pgmux on 127.0.0.1:$PORT (temp dir $tmp, logs in ${out#"$root"/})"
scripts/pg-cluster.sh start "$tmp/pg" "$PGPORT"
SU=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" -U postgres)
"${SU[@]}" -d postgres -c "CREATE ROLE soak LOGIN PASSWORD 'soakpw'" -c "CREATE DATABASE soak OWNER soak"
export PGPASSWORD=soakpw PGCONNECT_TIMEOUT=10
pgbench -q -i -s "$SCALE" -h 127.0.0.1 -p "$PGPORT" -U soak soak >"$out/pgbench-init.out" 2>&1 ||
  { cat "$out/pgbench-init.out" >&2; exit 1; }
psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" -U soak -d soak \
  -c "CREATE TABLE soak_log (marker text PRIMARY KEY, mode text NOT NULL, at timestamptz NOT NULL DEFAULT now())"
sq() { "${SU[@]}" -d soak -At -F $'\t' -c "$1"; }   # a query to PostgreSQL directly, as superuser

# ---- pgmux
printf '"soak" "soakpw"\n' > "$tmp/pgmux/userlist.txt"
cat > "$tmp/pgmux/pgmux.ini" <<INI
[databases]
soak = host=127.0.0.1 port=$PGPORT dbname=soak

[pgmux]
listen_addr = 127.0.0.1
listen_port = $PORT
unix_socket_dir = $tmp/pgmux
auth_type = scram-sha-256
auth_file = $tmp/pgmux/userlist.txt
pool_mode = transaction
default_pool_size = $POOL
max_client_conn = 500
query_wait_timeout = 10
server_login_retry = 1
stats_users = soak
so_reuseport = 0
pidfile = $tmp/pgmux/pgmux.pid
logfile = $tmp/pgmux/pgmux.log
INI
chmod 600 "$tmp/pgmux/userlist.txt"
cp "$tmp/pgmux/pgmux.ini" "$out/"
cp .build/release/pgmux "$tmp/bin/pgmux"   # a concurrent rebuild must not change it mid-run
[ $is_root = 1 ] && chown -R postgres: "$tmp/pgmux"
runas=(); [ $is_root = 1 ] && runas=(-u postgres)
"$tmp/bin/pgmux" "${runas[@]}" "$tmp/pgmux/pgmux.ini" >>"$tmp/pgmux/stdout.log" 2>&1 &
PGMUX_LAUNCHER=$!
for _ in $(seq 100); do
  if ss -Hltn "sport = :$PORT" | grep -q .; then
    PGMUX_PID=$(cat "$tmp/pgmux/pgmux.pid" 2>/dev/null || true)
    [ -n "$PGMUX_PID" ] || PGMUX_PID=$PGMUX_LAUNCHER
    break
  fi
  kill -0 "$PGMUX_LAUNCHER" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$PGMUX_PID" ] || ! kill -0 "$PGMUX_PID" 2>/dev/null; then
  echo "soak.sh: pgmux did not start:" >&2
  tail -n 20 "$tmp/pgmux/stdout.log" "$tmp/pgmux/pgmux.log" >&2 2>/dev/null || true
  exit 1
fi
MUX=(psql -X -h 127.0.0.1 -p "$PORT" -U soak)
"${MUX[@]}" -d soak -Atqc "SELECT 1" >/dev/null || { echo "soak.sh: no query through pgmux" >&2; exit 1; }
log "pgmux $("$tmp/bin/pgmux" -V 2>&1 | head -n 1) running, pid $PGMUX_PID"

admin() { PGCONNECT_TIMEOUT=3 timeout 5 "${MUX[@]}" -d pgbouncer -A -F'|' -P footer=off -c "$1" 2>/dev/null; }
xacts() {
  admin 'SHOW STATS' | awk -F'|' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "total_xact_count") c = i; next }
                                  $1 == "soak" && c { print $c; exit }' || true
}
phase() { printf '%s\t%s\t%s\n' "$EPOCHREALTIME" "$1" "$(xacts)" >> "$tmp/phases.tsv"; }
fds_of() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
rss_of() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
pgmux_alive() { kill -0 "$PGMUX_PID" 2>/dev/null; }

# ---- the python side: protocol probes (burst, garbage, slow reader) and the final report
cat > "$tmp/soak_helper.py" <<'PYEOF'
import base64, hashlib, hmac, json, os, re, socket, struct, sys, time

def startup(user, db):
    body = struct.pack('!I', 196608)
    for k, v in (('user', user), ('database', db), ('application_name', 'soak-probe')):
        body += k.encode() + b'\0' + v.encode() + b'\0'
    body += b'\0'
    return struct.pack('!I', len(body) + 4) + body

def msg(t, body):
    return t + struct.pack('!I', len(body) + 4) + body

class Conn:
    def __init__(self, port, rcvbuf=None, timeout=15):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.settimeout(timeout)
        self.s.connect(('127.0.0.1', port))
        self.f = self.s.makefile('rb', buffering=65536)
    def send(self, b):
        self.s.sendall(b)
    def read(self):
        h = self.f.read(5)
        if len(h) < 5:
            raise EOFError('connection closed by pgmux')
        n = struct.unpack('!I', h[1:])[0]
        b = self.f.read(n - 4)
        if len(b) < n - 4:
            raise EOFError('connection closed by pgmux mid-message')
        return h[:1], b
    def drop(self):   # close with RST
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        self.close()
    def close(self):
        try:
            self.f.close()
        finally:
            self.s.close()

def err_text(b):
    f = {}
    for part in b.split(b'\0'):
        if part:
            f[chr(part[0])] = part[1:].decode(errors='replace')
    return '%s %s' % (f.get('C', '?'), f.get('M', ''))

def login(port, user, password, db, rcvbuf=None):
    c = Conn(port, rcvbuf)
    c.send(startup(user, db))
    while True:
        t, b = c.read()
        if t == b'E':
            raise RuntimeError('login refused: ' + err_text(b))
        if t != b'R':
            raise RuntimeError('unexpected %r during login' % t)
        code = struct.unpack('!I', b[:4])[0]
        if code == 0:
            break
        if code == 3:
            c.send(msg(b'p', password.encode() + b'\0'))
        elif code == 5:
            inner = hashlib.md5((password + user).encode()).hexdigest()
            c.send(msg(b'p', b'md5' + hashlib.md5(inner.encode() + b[4:8]).hexdigest().encode() + b'\0'))
        elif code == 10:
            nonce = base64.b64encode(os.urandom(18)).decode()
            first_bare = 'n=,r=' + nonce
            data = ('n,,' + first_bare).encode()
            c.send(msg(b'p', b'SCRAM-SHA-256\0' + struct.pack('!i', len(data)) + data))
            t, b = c.read()
            if t != b'R' or struct.unpack('!I', b[:4])[0] != 11:
                raise RuntimeError('SCRAM: expected SASLContinue, got %r %s' % (t, err_text(b) if t == b'E' else ''))
            server_first = b[4:].decode()
            a = dict(kv.split('=', 1) for kv in server_first.split(','))
            if not a['r'].startswith(nonce):
                raise RuntimeError('SCRAM: server nonce does not extend ours')
            salted = hashlib.pbkdf2_hmac('sha256', password.encode(), base64.b64decode(a['s']), int(a['i']))
            ck = hmac.new(salted, b'Client Key', 'sha256').digest()
            final_wo = 'c=biws,r=' + a['r']
            auth = (first_bare + ',' + server_first + ',' + final_wo).encode()
            sig = hmac.new(hashlib.sha256(ck).digest(), auth, 'sha256').digest()
            proof = base64.b64encode(bytes(x ^ y for x, y in zip(ck, sig))).decode()
            c.send(msg(b'p', (final_wo + ',p=' + proof).encode()))
        elif code in (11, 12):
            continue
        else:
            raise RuntimeError('unsupported auth request %d' % code)
    while True:
        t, b = c.read()
        if t == b'E':
            raise RuntimeError('after login: ' + err_text(b))
        if t == b'Z':
            return c

def simple_query(c, q):
    c.send(msg(b'Q', q.encode() + b'\0'))
    rows, tag, err = [], None, None
    while True:
        t, b = c.read()
        if t == b'D':
            rows.append(b)
        elif t == b'C':
            tag = b.rstrip(b'\0').decode()
        elif t == b'E':
            err = err_text(b)
        elif t == b'Z':
            return rows, tag, err

def out(d):
    print(json.dumps(d), flush=True)

def burst(port, n, user, db):
    t0 = time.time()
    socks, connect_err = [], 0
    for i in range(n):
        try:
            socks.append(Conn(port, timeout=10))
        except OSError:
            connect_err += 1
    sent = 0
    for i, c in enumerate(socks):
        if i % 2 == 0:
            try:
                c.send(startup(user, db)); sent += 1
            except OSError:
                pass
    answered, errors = 0, []
    for i, c in enumerate(socks):
        if i % 2 == 0:
            try:
                t, b = c.read()
                if t == b'R':
                    answered += 1
                else:
                    errors.append(err_text(b) if t == b'E' else repr(t))
            except (OSError, EOFError) as e:
                errors.append(type(e).__name__)
    for i, c in enumerate(socks):
        try:
            c.drop() if i % 3 == 0 else c.close()
        except OSError:
            pass
    ok = connect_err == 0 and answered == sent
    detail = '%d opened (%d connect errors), %d startups, %d auth requests back, dropped in %.1f s' % (
        len(socks), connect_err, sent, answered, time.time() - t0)
    if errors:
        detail += '; first error: ' + errors[0]
    out({'probe': 'burst', 'ok': ok, 'detail': detail})

def garbage(port, user, db):
    cases = [
        ('huge-length', b'\xff' + os.urandom(4095), True),
        ('bad-protocol-code', struct.pack('!II', 8, 0x12345678), True),
        ('http', b'GET / HTTP/1.1\r\nHost: soak\r\n\r\n', True),
        ('short-length', struct.pack('!I', 3) + b'xyz', True),
        ('random-8k', os.urandom(8192), False),
        ('garbage-after-startup', None, True),
        ('bad-sasl-response', None, True),
    ]
    bad = []
    for name, payload, must_close in cases:
        try:
            c = Conn(port, timeout=5)
        except OSError as e:
            bad.append('%s: connect failed (%s)' % (name, e)); continue
        got_error, closed = False, False
        try:
            if payload is None:
                c.send(startup(user, db))
                t, b = c.read()      # the auth request
                if name == 'garbage-after-startup':
                    c.send(b'Z' + struct.pack('!I', 0xfffffff0) + os.urandom(64))
                else:
                    c.send(msg(b'p', os.urandom(100)))
            else:
                c.send(payload)
            deadline = time.time() + 5
            while time.time() < deadline:
                t, b = c.read()
                if t == b'E':
                    got_error = True
        except (EOFError, ConnectionResetError, BrokenPipeError):
            closed = True
        except socket.timeout:
            pass
        except OSError as e:
            closed = True
        finally:
            c.close()
        if must_close and not closed:
            bad.append('%s: still open after 5 s' % name)
    out({'probe': 'garbage', 'ok': not bad,
         'detail': '%d garbage connections, %s' % (len(cases), '; '.join(bad) if bad else 'all closed by pgmux')})

def slowreader(port, user, password, db, rows, stall, mode):
    t0 = time.time()
    try:
        c = login(port, user, password, db, rcvbuf=4096)
        c.send(msg(b'Q', ("SELECT g, repeat('x', 100) FROM generate_series(1, %d) g" % rows).encode() + b'\0'))
        time.sleep(stall)
        if mode == 'drop':
            c.drop()
            out({'probe': 'slowreader', 'ok': True, 'detail': 'not read for %ds, then dropped mid-result' % stall})
            return
        n, tag, err = 0, None, None
        while True:
            t, b = c.read()
            if t == b'D':
                n += 1
            elif t == b'C':
                tag = b.rstrip(b'\0').decode()
            elif t == b'E':
                err = err_text(b)
            elif t == b'Z':
                break
        r2, tag2, err2 = simple_query(c, 'SELECT 42')
        c.send(msg(b'X', b''))
        c.close()
        ok = err is None and n == rows and tag == 'SELECT %d' % rows and err2 is None and len(r2) == 1
        detail = 'not read for %ds, then %d/%d rows, tag %r%s, next query %s, %.1f s' % (
            stall, n, rows, tag, ', error ' + err if err else '',
            'ok' if err2 is None and len(r2) == 1 else 'FAILED (%s)' % err2, time.time() - t0)
        out({'probe': 'slowreader', 'ok': ok, 'detail': detail})
    except Exception as e:
        out({'probe': 'slowreader', 'ok': False, 'detail': '%s: %s' % (type(e).__name__, e)})

# ---------------------------------------------------------------- report
def read_tsv(path):
    try:
        with open(path) as f:
            return [l.rstrip('\n').split('\t') for l in f if l.strip()]
    except FileNotFoundError:
        return []

def report(d):
    facts = {}
    for l in open(os.path.join(d, 'facts.env')):
        k, _, v = l.rstrip('\n').partition('=')
        facts[k] = v
    phases = [(float(r[0]), r[1], int(r[2]) if len(r) > 2 and r[2].isdigit() else None)
              for r in read_tsv(os.path.join(d, 'phases.tsv'))]
    def phase_at(t):
        k = None
        for i, p in enumerate(phases):
            if p[0] <= t:
                k = i
        return k
    rows = {}   # label -> stats
    order = []
    def row(label):
        if label not in rows:
            rows[label] = dict(n=0, secs=0.0, xacts=0, xacts_known=True, aborted=0, restarts=0,
                               committed=0, killed=0, quit=0, failed=0, indoubt=0)
            order.append(label)
        return rows[label]
    for i, (t, label, x) in enumerate(phases):
        if label in ('pause', 'end') or i + 1 >= len(phases):
            continue
        r = row(label)
        r['n'] += 1
        r['secs'] += phases[i + 1][0] - t
        nx = phases[i + 1][2]
        if x is None or nx is None:
            r['xacts_known'] = False
        else:
            r['xacts'] += nx - x
    def attribute(t):
        k = phase_at(t)
        if k is None or phases[k][1] in ('pause', 'end'):
            return None
        return rows.get(phases[k][1])
    # pgbench: aborted clients (stamped stderr lines) and runs that ended with an error
    loaddir = os.path.join(d, 'load')
    abort_re = re.compile(r'client \d+ (?:script \d+ )?aborted|connection to server .*? failed')
    per_runner = {}
    for r in read_tsv(os.path.join(loaddir, 'runs.tsv')):
        t0, t1, name, seg, rc = float(r[0]), float(r[1]), r[2], r[3], int(r[4])
        prefix = os.path.join(loaddir, os.path.basename(r[5]))   # also when re-run on results/soak-*/
        phase_name = os.path.basename(prefix).split('-')[0]
        pr = per_runner.setdefault((phase_name, name), dict(runs=0, bad=0, tx=0, aborted=0))
        pr['runs'] += 1
        try:
            txt = open(prefix + '.out').read()
            m = re.search(r'number of transactions actually processed: (\d+)', txt)
            if m:
                pr['tx'] += int(m.group(1))
        except FileNotFoundError:
            pass
        first_abort = None
        try:
            for l in open(prefix + '.err'):
                ts, _, text = l.partition(' ')
                k = len(abort_re.findall(text))
                if k:
                    pr['aborted'] += k
                    first_abort = first_abort or float(ts)
                    a = attribute(float(ts))
                    if a:
                        a['aborted'] += k
        except (FileNotFoundError, ValueError):
            pass
        if rc != 0:   # a run ended by an error counts in the phase of its first abort
            pr['bad'] += 1
            a = attribute(first_abort or t1)
            if a:
                a['restarts'] += 1
    # psql sessions
    sessions = read_tsv(os.path.join(d, 'sessions.tsv'))
    committed, never_committed, indoubt = set(), set(), set()
    totals = dict(committed=0, killed=0, quit=0, failed=0, indoubt=0)
    for s in sessions:
        t, marker, mode, outcome = float(s[0]), s[1], s[2], s[3]
        totals[outcome] = totals.get(outcome, 0) + 1
        a = attribute(t)
        if a:
            a[outcome] = a.get(outcome, 0) + 1
        if outcome == 'committed':
            committed.add(marker)
        elif outcome == 'indoubt':
            indoubt.add(marker)
        else:
            never_committed.add(marker)
    present = set(l.strip() for l in open(os.path.join(d, 'present.txt')) if l.strip()) \
        if os.path.exists(os.path.join(d, 'present.txt')) else None
    probes = []
    for l in open(os.path.join(d, 'probes.jsonl')) if os.path.exists(os.path.join(d, 'probes.jsonl')) else []:
        try:
            probes.append(json.loads(l))
        except ValueError:
            pass
    faults_bad = [r for r in read_tsv(os.path.join(d, 'faults.tsv')) if len(r) > 3 and r[2] == '0']

    p = print
    p('== pgmux soak: %s min of load and faults, pool_size %s, transaction mode' % (facts.get('MINUTES'), facts.get('POOL')))
    p('%-11s %3s %9s %8s %8s %8s  %s' % ('phase', 'n', 'xacts', 'xacts/s', 'aborted', 'reruns', 'psql commit/kill/quit/failed/in-doubt'))
    tot = dict(n=0, xacts=0, aborted=0, restarts=0, secs=0.0)
    for label in order:
        r = rows[label]
        xs = str(r['xacts']) if r['xacts_known'] else '%d?' % r['xacts']
        rate = '%.0f' % (r['xacts'] / r['secs']) if r['secs'] > 0 else '-'
        p('%-11s %3d %9s %8s %8d %8d  %d/%d/%d/%d/%d' % (label, r['n'], xs, rate, r['aborted'], r['restarts'],
          r['committed'], r['killed'], r['quit'], r['failed'], r['indoubt']))
        if label != 'warm-up':
            for k in ('n', 'xacts', 'aborted', 'restarts', 'secs'):
                tot[k] += r[k]
    p('%-11s %3d %9d %8s %8d %8d  %s' % ('soak total', tot['n'], tot['xacts'],
      '%.0f' % (tot['xacts'] / tot['secs']) if tot['secs'] else '-', tot['aborted'], tot['restarts'], '(all but warm-up)'))
    p('(xacts: served by pgmux, SHOW STATS; aborted: pgbench clients aborted; reruns: pgbench runs ended by an error)')
    for name in ('select', 'tpcb', 'prepared'):
        pr = per_runner.get(('soak', name))
        if pr:
            p('pgbench %-8s %8d tx in %2d runs, %2d ended by an error, %3d clients aborted' % (
                name, pr['tx'], pr['runs'], pr['bad'], pr['aborted']))
    p('psql sessions: %d (%d committed, %d killed and %d quit mid-transaction, %d failed before COMMIT, %d in doubt)' % (
        len(sessions), totals['committed'], totals['killed'], totals['quit'], totals['failed'], totals['indoubt']))
    odd = int(facts.get('NO_TX_WARNINGS', '0') or 0)
    if odd:
        p('NOTE: %d sessions got "there is no transaction in progress" on COMMIT (transaction lost mid-way?)' % odd)
    for f in faults_bad[:3]:
        p('NOTE: fault %s at %s did not go as planned: %s' % (f[1], f[0], f[3]))
    for pr in probes:
        if not pr.get('ok'):
            p('NOTE: %s probe: %s' % (pr['probe'], pr['detail']))

    checks = []
    def check(ok, text):
        checks.append(ok)
        p('%s  %s' % ('PASS' if ok else 'FAIL', text))
    p('-- checks')
    if facts.get('ALIVE') == '1':
        check(facts.get('QUERY_OK') == '1', 'pgmux running (pid %s) and serving a query: %s' % (
            facts.get('PID'), facts.get('QUERY_DETAIL')))
    else:
        check(False, 'pgmux running: %s' % facts.get('DEATH', 'gone'))
    if present is None:
        check(False, 'markers: could not read soak_log (%s)' % facts.get('PRESENT_ERR', '?'))
        check(False, 'uncommitted markers: could not read soak_log')
    else:
        missing = committed - present
        check(not missing, 'committed markers in soak_log: %d/%d%s' % (
            len(committed) - len(missing), len(committed),
            ' (missing e.g. %s)' % ', '.join(sorted(missing)[:3]) if missing else ''))
        ghosts = never_committed & present
        check(not ghosts, 'markers of sessions that never sent COMMIT in soak_log: %d of %d%s (in doubt: %d of %d present)' % (
            len(ghosts), len(never_committed),
            ' (e.g. %s)' % ', '.join(sorted(ghosts)[:3]) if ghosts else '', len(indoubt & present), len(indoubt)))
    idle = facts.get('IDLE_TX', '?')
    check(idle == '0', "backends of soak 'idle in transaction' after the load: %s%s" % (
        idle, (' (' + facts.get('IDLE_TX_DETAIL', '') + ')') if idle not in ('0', '?') else ''))
    try:
        fb, fe, pool = int(facts['FDS_BASE']), int(facts['FDS_END']), int(facts['POOL'])
        check(fe <= fb + pool + 5, 'pgmux fds %d <= baseline %d + pool %d + 5' % (fe, fb, pool))
    except (KeyError, ValueError):
        check(False, 'pgmux fds: not measured')
    try:
        rb, re_ = int(facts['RSS_BASE']), int(facts['RSS_END'])
        check(re_ <= rb + 20 * 1024, 'pgmux RSS %.1f MB <= baseline %.1f MB + 20 MB (peak seen %.1f MB)' % (
            re_ / 1024, rb / 1024, int(facts.get('RSS_PEAK', '0') or 0) / 1024))
    except (KeyError, ValueError):
        check(False, 'pgmux RSS: not measured')
    bad = [pr for pr in probes if not pr.get('ok')]
    kinds = {}
    for pr in probes:
        kinds[pr['probe']] = kinds.get(pr['probe'], 0) + 1
    check(not bad, 'fault probes answered sanely: %s%s' % (
        ', '.join('%s x%d' % kv for kv in sorted(kinds.items())) or 'none ran',
        '; %d not' % len(bad) if bad else ''))
    passed = sum(1 for c in checks if c)
    p('%d passed, %d failed' % (passed, len(checks) - passed))
    return 0 if passed == len(checks) else 1

if __name__ == '__main__':
    cmd, a = sys.argv[1], sys.argv[2:]
    if cmd == 'burst':
        burst(int(a[0]), int(a[1]), a[2], a[3])
    elif cmd == 'garbage':
        garbage(int(a[0]), a[1], a[2])
    elif cmd == 'slowreader':
        slowreader(int(a[0]), a[1], a[2], a[3], int(a[4]), int(a[5]), a[6])
    elif cmd == 'report':
        sys.exit(report(a[0]))
PYEOF
helper() { "$PY" "$tmp/soak_helper.py" "$@"; }

# ---- load
stamp_lines() { local l; while IFS= read -r l; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done; }

pgbench_runner() {   # phase name end-epoch pgbench-args...
  local ph=$1 name=$2 end=$3; shift 3
  set +e
  local seg=0 cpid= rc left t0 f
  trap '[ -n "$cpid" ] && kill "$cpid" 2>/dev/null; exit 0' TERM
  while [ ! -e "$tmp/stop" ]; do
    left=$((end - $(date +%s)))
    [ "$left" -ge 2 ] || break
    [ "$left" -le "$SEG" ] || left=$SEG
    seg=$((seg + 1))
    f="$tmp/load/$ph-$name-$seg"
    t0=$EPOCHREALTIME
    pgbench -n "$@" -T "$left" -h 127.0.0.1 -p "$PORT" -U soak soak >"$f.out" 2> >(stamp_lines >"$f.err") &
    cpid=$!
    wait "$cpid"; rc=$?
    cpid=
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t0" "$EPOCHREALTIME" "$name" "$seg" "$rc" "$f" >> "$tmp/load/runs.tsv"
    [ "$rc" = 0 ] || sleep 0.5
  done
}

# psql sessions: BEGIN; INSERT marker; then COMMIT (55%), SIGKILL of psql (30%) or EOF (15%)
session_runner() {   # phase end-epoch
  local ph=$1 end=$2
  set +e
  trap '' PIPE
  local fifo="$tmp/sess-$ph.fifo" o="$tmp/sess-$ph.out" n=0 m mode acked rc outcome i ppid=
  trap '[ -n "$ppid" ] && kill -KILL "$ppid" 2>/dev/null; exit 0' TERM
  mkfifo "$fifo"
  while [ ! -e "$tmp/stop" ] && [ "$(date +%s)" -lt "$end" ]; do
    n=$((n + 1)); m="$ph-$n-$RANDOM$RANDOM"
    i=$((RANDOM % 100))
    if [ $i -lt 55 ]; then mode=commit; elif [ $i -lt 85 ]; then mode=kill; else mode=quit; fi
    local t0=$EPOCHREALTIME
    psql -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U soak -d soak <"$fifo" >"$o" 2>&1 &
    ppid=$!
    exec 7>"$fifo"
    printf "BEGIN;\nINSERT INTO soak_log (marker, mode) VALUES ('%s', '%s');\n" "$m" "$mode" >&7 2>/dev/null
    acked=0
    for i in $(seq 400); do   # up to 20 s (query_wait_timeout is 10)
      if grep -qx 'INSERT 0 1' "$o"; then acked=1; break; fi
      kill -0 "$ppid" 2>/dev/null || break
      sleep 0.05
    done
    outcome=failed
    if [ $acked = 1 ]; then
      case $mode in
        commit)
          sleep "0.0$((RANDOM % 10))"
          printf 'COMMIT;\n' >&7 2>/dev/null
          exec 7>&-
          for i in $(seq 400); do kill -0 "$ppid" 2>/dev/null || break; sleep 0.05; done
          kill -KILL "$ppid" 2>/dev/null
          if grep -qx COMMIT "$o"; then outcome=committed; else outcome=indoubt; fi
          grep -q 'there is no transaction in progress' "$o" && echo "$m" >> "$tmp/no-tx-warnings.txt"
          ;;
        kill) sleep "0.$((RANDOM % 3))"; kill -KILL "$ppid" 2>/dev/null; outcome=killed ;;
        quit) outcome=quit ;;
      esac
    fi
    exec 7>&-
    kill -0 "$ppid" 2>/dev/null && { sleep 0.5; kill -KILL "$ppid" 2>/dev/null; }
    wait "$ppid"; rc=$?
    ppid=
    [ $outcome = committed ] && echo "$m" >> "$tmp/committed.txt"
    printf '%s\t%s\t%s\t%s\t%s\n' "$t0" "$m" "$mode" "$outcome" "$rc" >> "$tmp/sessions.tsv"
    if [ $outcome = failed ] || [ $outcome = indoubt ]; then
      { echo "== $m $mode $outcome rc=$rc"; tail -n 5 "$o"; } >> "$tmp/sessions-odd.log"
      sleep 0.2
    fi
  done
  rm -f "$fifo"
}

start_load() {   # phase seconds
  local ph=$1 end=$(($(date +%s) + $2))
  rm -f "$tmp/stop"
  # (their stderr to a file: bash reports every psql killed on purpose)
  pgbench_runner "$ph" select "$end" -S -c 30 -j 2 2>>"$tmp/runners.log" & RUNNERS+=($!)
  pgbench_runner "$ph" tpcb "$end" -c 8 -j 8 2>>"$tmp/runners.log" & RUNNERS+=($!)
  pgbench_runner "$ph" prepared "$end" -S -M prepared -c 10 -j 2 2>>"$tmp/runners.log" & RUNNERS+=($!)
  session_runner "$ph" "$end" 2>>"$tmp/runners.log" & RUNNERS+=($!)
}
stop_load() {   # waits up to 15 s for the runs to end by themselves, then stops them
  local p i
  touch "$tmp/stop"
  for i in $(seq 150); do
    local any=0
    for p in "${RUNNERS[@]}"; do kill -0 "$p" 2>/dev/null && any=1; done
    [ $any = 0 ] && break
    sleep 0.1
  done
  { for p in "${RUNNERS[@]}"; do kill -TERM "$p" || true; done
    for p in "${RUNNERS[@]}"; do wait "$p" || true; done; } 2>/dev/null
  RUNNERS=()
}

# ---- faults
fault_log() { printf '%s\t%s\t%s\t%s\n' "$(($(date +%s) - t_start))s" "$1" "$2" "${3//$'\t'/ }" >> "$tmp/faults.tsv"; }
random_backend() {
  sq "SELECT pid, state FROM pg_stat_activity WHERE usename = 'soak' AND backend_type = 'client backend'
      ORDER BY state = 'active' DESC, random() LIMIT 1" 2>/dev/null || true
}
fault_terminate() {
  local r
  r=$(sq "SELECT pid, state, pg_terminate_backend(pid) FROM (SELECT pid, state FROM pg_stat_activity
          WHERE usename = 'soak' AND backend_type = 'client backend' ORDER BY random() LIMIT 1) b" 2>&1 || true)
  if [[ "$r" == *$'\tt' ]]; then
    echo "terminated backend ${r%%$'\t'*} ($(cut -f2 <<< "$r"))"; return 0
  fi
  echo "no backend terminated (${r:-no backend of soak})"; return 1
}
fault_sigstop() {
  local r pid
  r=$(random_backend); pid=${r%%$'\t'*}
  [[ "$pid" =~ ^[0-9]+$ ]] || { echo "no backend to stop"; return 1; }
  STOPPED=$pid
  kill -STOP "$pid" 2>/dev/null || { STOPPED=; echo "could not stop $pid"; return 1; }
  nap 3
  kill -CONT "$pid" 2>/dev/null || true
  STOPPED=
  echo "SIGSTOP backend $pid ($(cut -f2 <<< "$r")) for 3 s"
}
fault_restart() {
  local t0=$EPOCHREALTIME
  if as_pg "$PGBIN/pg_ctl" -D "$tmp/pg/data" -l "$tmp/pg/postgres.log" -m fast -w -t 60 restart >/dev/null 2>&1; then
    echo "pg_ctl restart -m fast took $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}') s"
  else
    echo "pg_ctl restart failed: $(tail -n 1 "$tmp/pg/postgres.log")"; return 1
  fi
}
probe() {   # runs a python probe in the background (Ctrl-C stays prompt); its JSON line to probes.jsonl
  local r
  timeout -k 5 90 "$PY" "$tmp/soak_helper.py" "$@" > "$tmp/probe.out" 2>&1 &
  PROBE=$!
  wait "$PROBE" || true
  PROBE=
  r=$(tail -n 1 "$tmp/probe.out")
  if [[ "$r" == '{'* ]]; then
    echo "$r" >> "$tmp/probes.jsonl"
    "$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["detail"])' "$r"
    [[ "$r" == *'"ok": true'* ]]
  else
    echo "{\"probe\": \"$1\", \"ok\": false, \"detail\": \"helper failed: $(tail -n 1 "$tmp/probe.out" | tr -d '"\\' | cut -c1-150)\"}" >> "$tmp/probes.jsonl"
    echo "helper failed: $(tail -n 3 "$tmp/probe.out")"; return 1
  fi
}
fault_burst() { probe burst "$PORT" 200 soak soak; }
fault_garbage() { probe garbage "$PORT" soak soak; }
SLOW_N=0 RSS_PEAK=0
fault_slowreader() {
  local mode=drain r peak=0 i
  SLOW_N=$((SLOW_N + 1)); [ $((SLOW_N % 2)) = 0 ] && mode=drop
  timeout -k 5 90 "$PY" "$tmp/soak_helper.py" slowreader "$PORT" soak soakpw soak 300000 5 "$mode" > "$tmp/probe.out" 2>&1 &
  PROBE=$!
  for i in $(seq 14); do   # pgmux's RSS while the reader stalls
    kill -0 "$PROBE" 2>/dev/null || break
    r=$(rss_of "$PGMUX_PID"); [ "${r:-0}" -gt "$peak" ] && peak=$r
    nap 0.5
  done
  wait "$PROBE" || true
  PROBE=
  [ "$peak" -gt "$RSS_PEAK" ] && RSS_PEAK=$peak
  r=$(tail -n 1 "$tmp/probe.out")
  if [[ "$r" == '{'* ]]; then
    echo "$r" >> "$tmp/probes.jsonl"
    echo "$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["detail"])' "$r"); pgmux RSS peak $((peak / 1024)) MB"
    [[ "$r" == *'"ok": true'* ]]
  else
    echo "{\"probe\": \"slowreader\", \"ok\": false, \"detail\": \"helper failed: $(tail -n 1 "$tmp/probe.out" | tr -d '"\\' | cut -c1-150)\"}" >> "$tmp/probes.jsonl"
    echo "helper failed: $(tail -n 3 "$tmp/probe.out")"; return 1
  fi
}

FAULTS=(terminate sigstop restart burst garbage slowreader)
cycle=()
next_fault() {   # each fault once per cycle, in a random order
  if [ ${#cycle[@]} = 0 ]; then
    cycle=("${FAULTS[@]}")
    local i j t
    for ((i = ${#cycle[@]} - 1; i > 0; i--)); do
      j=$((RANDOM % (i + 1))); t=${cycle[i]}; cycle[i]=${cycle[j]}; cycle[j]=$t
    done
  fi
  FAULT=${cycle[0]}
  cycle=("${cycle[@]:1}")
}

DIED=
death_reason() {   # sets DIED
  local st= last
  if [ -n "$PGMUX_LAUNCHER" ]; then
    wait "$PGMUX_LAUNCHER" 2>/dev/null && st=0 || st=$?
    PGMUX_LAUNCHER=
  fi
  last=$(cat "$tmp/pgmux/pgmux.log" "$tmp/pgmux/stdout.log" 2>/dev/null |
    grep -iE "got sig|fatal|error|panic|signal|crash|assert" | tail -n 1 | cut -c1-160 || true)
  DIED="pgmux died${st:+ (exit status $st)}${last:+; its log: $last}"
}

# ---- warm-up and baseline
log "warm-up: ${WARMUP}s of the load without faults"
phase warm-up
start_load warm-up "$WARMUP"
nap "$WARMUP"
stop_load
phase pause
nap 5
pgmux_alive || { death_reason; echo "soak.sh: $DIED during warm-up" >&2; exit 1; }
FDS_BASE=$(fds_of "$PGMUX_PID") RSS_BASE=$(rss_of "$PGMUX_PID")
RSS_PEAK=$RSS_BASE
log "baseline after warm-up: $FDS_BASE fds, RSS $((RSS_BASE / 1024)) MB, $(xacts) transactions served so far"

# ---- the soak
soak_t0=$(date +%s); soak_end=$((soak_t0 + SOAK))
log "soak: ${MINUTES} min of load, a fault every ${FAULT_EVERY}s"
phase none
start_load soak "$SOAK"
next_at=$((soak_t0 + 5)) nfault=0
while :; do
  now=$(date +%s)
  [ "$now" -lt "$soak_end" ] || break
  if ! pgmux_alive; then
    [ -n "$DIED" ] || { death_reason; log "FAIL: $DIED"; }
    [ $KEEP_GOING = 1 ] || break
  fi
  r=$(rss_of "$PGMUX_PID"); [ "${r:-0}" -gt "$RSS_PEAK" ] && RSS_PEAK=$r
  if [ "$now" -ge "$next_at" ] && [ "$now" -le $((soak_end - 5)) ]; then
    next_fault
    nfault=$((nfault + 1))
    phase "$FAULT"
    ok=1
    "fault_$FAULT" > "$tmp/fault.out" 2>&1 || ok=0   # in this shell: STOPPED, PROBE stay visible to cleanup
    detail=$(tr '\n' ' ' < "$tmp/fault.out" | sed 's/ *$//')
    fault_log "$FAULT" "$ok" "$detail"
    log "fault $nfault $FAULT: $detail$([ $ok = 1 ] || echo ' [did not go as planned]')"
    next_at=$((next_at + FAULT_EVERY))
    continue
  fi
  nap 1
done
log "stopping the load"
stop_load
phase end
log "load stopped, $(xacts) transactions served in all; waiting 5 s"
nap 5

# ---- checks (the report turns these facts into PASS/FAIL)
facts="$tmp/facts.env"
{
  echo "MINUTES=$MINUTES"; echo "POOL=$POOL"; echo "PID=$PGMUX_PID"
  echo "FDS_BASE=$FDS_BASE"; echo "RSS_BASE=$RSS_BASE"
} > "$facts"
if pgmux_alive; then
  fds_end=$(fds_of "$PGMUX_PID") rss_end=$(rss_of "$PGMUX_PID")
  [ "$rss_end" -gt "$RSS_PEAK" ] && RSS_PEAK=$rss_end
  { echo "ALIVE=1"; echo "FDS_END=$fds_end"; echo "RSS_END=$rss_end"; echo "RSS_PEAK=$RSS_PEAK"; } >> "$facts"
  admin 'SHOW POOLS' > "$out/show-pools.txt" || true
  admin 'SHOW SERVERS' > "$out/show-servers.txt" || true
  t0=$EPOCHREALTIME
  if r=$(PGCONNECT_TIMEOUT=5 timeout 5 "${MUX[@]}" -d soak -Atc "SELECT 'soak-ok', count(*) FROM soak_log" 2>&1) &&
     [[ "$r" == soak-ok* ]]; then
    echo "QUERY_OK=1"; echo "QUERY_DETAIL=SELECT answered in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.2f", b - a}') s"
  else
    echo "QUERY_OK=0"; echo "QUERY_DETAIL=no answer within 5 s: $(echo "$r" | tr '\n' ' ' | cut -c1-150)"
  fi >> "$facts"
else
  [ -n "$DIED" ] || death_reason
  echo "ALIVE=0"; echo "DEATH=$DIED"
fi >> "$facts"
r=$(sq "SELECT count(*), coalesce(string_agg(pid || ' ' || state || ' ' || left(query, 40), '; '), '')
        FROM pg_stat_activity WHERE usename = 'soak' AND state LIKE 'idle in transaction%'" 2>&1 || echo "?")
{ echo "IDLE_TX=$(cut -f1 <<< "$r" | head -n 1)"; echo "IDLE_TX_DETAIL=$(cut -f2 <<< "$r" | tr '\n' ' ' | cut -c1-200)"; } >> "$facts"
if ! sq "SELECT marker FROM soak_log" > "$tmp/present.txt" 2>"$tmp/present.err"; then
  rm -f "$tmp/present.txt"; echo "PRESENT_ERR=$(head -n 1 "$tmp/present.err")" >> "$facts"
fi
echo "NO_TX_WARNINGS=$(if [ -f "$tmp/no-tx-warnings.txt" ]; then wc -l < "$tmp/no-tx-warnings.txt"; else echo 0; fi)" >> "$facts"
touch "$tmp/sessions.tsv" "$tmp/committed.txt"

for f in facts.env phases.tsv faults.tsv sessions.tsv committed.txt present.txt sessions-odd.log probes.jsonl; do
  [ -f "$tmp/$f" ] && cp "$tmp/$f" "$out/"
done
mkdir -p "$out/load" && cp "$tmp"/load/* "$out/load/" 2>/dev/null || true
log "done in $(( ($(date +%s) - t_start) / 60 )) min $(( ($(date +%s) - t_start) % 60 )) s; logs in ${out#"$root"/}"
echo
set +e
helper report "$tmp" | tee "$out/summary.txt"
rc=${PIPESTATUS[0]}
exit "$rc"
