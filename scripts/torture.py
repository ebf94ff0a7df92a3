#!/usr/bin/env python3
"""Randomized, seeded, differential stress test of pgmux (`make torture`).

    scripts/torture.sh [--minutes N | --seconds N] [--seed S] [--phase I] [--quick]
                       [--pgbench [--case PATTERN]] [--pgmux PATH] [--deadline SECONDS] [--keep] [--no-tls]
                       [--loops 2,1]

A throwaway PostgreSQL 15 cluster (scripts/pg-cluster.sh) gets two SCRAM roles, tort_a and tort_b
(one pgmux pool each), and a database `torture`. The run is a list of phases drawn from the seed
(one round of all 12 mode x prepared x auth combinations up to 12 minutes, more rounds of about a
minute per phase beyond): each phase starts a fresh pgmux with one configuration (pool_mode session / transaction /
statement, default_pool_size 1..5, max_prepared_statements 0 or > 0, auth_type trust or
scram-sha-256, sometimes max_db_connections below the two pools' sum) and runs, for its share of the
time, more client threads (psycopg 3 on libpq, plus a raw wire-protocol client) than the pools have
servers (a quarter of the psycopg connections over TLS, with SCRAM-SHA-256-PLUS channel binding
under scram-sha-256, unless --no-tls). Each worker draws operations from its own seeded generator: simple and extended queries,
protocol-level prepared statements, SQL PREPARE/DEALLOCATE, DISCARD ALL, pipelines with and without
Flush, transactions that commit, roll back or fail midway, COPY in and out, NOTIFY/LISTEN, pg_sleep
with cancels, SET/RESET of tracked parameters, injected syntax errors, SELECT * statements whose table
changes under them (stale plans), and disconnects mid-transaction,
mid-COPY, mid-pipeline and mid-login. A chaos thread meanwhile sends PAUSE/RESUME, RECONNECT and
RELOAD to the console and pg_terminate_backend()s pgmux's servers.

Every answer is compared with what the worker must see (its own rows, keyed by its id, with values
from its generator), and every error with what the operation may legitimately get: a connection
error only when a chaos event that can cause one happened while the connection was in use, 57014
only for a query the worker cancelled itself, 42601 only for its own syntax errors. Checked all the
time: no operation takes longer than --deadline (a hang is reported with the worker's last
operations and SHOW POOLS/CLIENTS/SERVERS), PostgreSQL never sees more backends of a pool than its
size (nor of the database than max_db_connections), no backend stays idle in transaction, SHOW
SERVERS never shows more prepared statements than max_prepared_statements nor, outside session
mode, a server linked to a client while its backend idles outside a transaction (a pinned server),
pgmux never dies. At the
end of each phase: the data equal the workers' models, pgmux answers a fresh client, its fds and RSS
are back near their values at the start of the phase.

--pgbench runs a matrix of pgbench runs instead (-S / -N / TPC-B, -c 1..50, pool 1..5, on a fresh
pgmux and twice again warm, -M prepared and -M extended, -j equal to -c and -j 1), each bounded by a
timeout: a hang or an aborted client is a failure; --case PATTERN picks cases by id.

--pgmux /usr/sbin/pgbouncer runs the same against PgBouncer, to check the tool itself.

A failure prints the seed and the command that replays it. The output ends with operation counts and
"N passed, N failed" (one check per invariant per phase); exit status 1 on any failure.
Logs of failed phases go to results/torture-<timestamp>/. PGMUX_WRAP="strace -f -tt -o FILE" (any
command prefix) runs each phase's pgmux under it, to trace a failure that a replay reproduces.
"""
from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import ctypes
import dataclasses
import fnmatch
import hashlib
import hmac
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
from psycopg import errors as pgerr

ROOT = Path(__file__).resolve().parent.parent
PG_BIN = Path("/usr/lib/postgresql/15/bin")
DB = "torture"
USERS = {"tort_a": "pw-a-7Hq", "tort_b": "pw-b-K2x"}
ADMIN = ("tort_admin", "pw-admin-9Zt")
TRACKED = {  # tracked parameter -> values a worker may SET (as PostgreSQL spells them back)
    "application_name": None,  # generated per worker
    "TimeZone": ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo"],
    "DateStyle": ["ISO, DMY", "SQL, MDY", "Postgres, DMY", "ISO, MDY"],
}
PREPARED_TEXTS = [  # shared by all workers, so that pgmux's statement registry is shared too
    "SELECT %s::int + 1",
    "SELECT %s::int * 3, %s::text",
    "SELECT k, v FROM rows WHERE w = %s ORDER BY k",
    "SELECT count(*) FROM rows WHERE w = %s",
    "SELECT length(%s::text)",
    "SELECT %s::bigint - 5",
    "SELECT md5(%s::text)",
    "SELECT %s::int, %s::int, %s::int",
]
UPSERT = "INSERT INTO rows (w, k, v) VALUES (%s, %s, %s) ON CONFLICT (w, k) DO UPDATE SET v = excluded.v"
QUEUED_NOTICE = "client being queued"  # query_wait_notify: the one notice a waiting client may get
LISTENER_LOST = "the notification connection was lost"  # pgmux(1), LISTEN/NOTIFY: after a terminated listener
CONN_STATES = ("08", "57P01", "57P02", "57P03")  # SQLSTATE classes of a lost server or connection


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# Phases
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Phase:
    """One pgmux configuration and the workload run against it."""
    index: int
    seed: int
    mode: str
    pool: int
    mps: int            # max_prepared_statements
    auth: str           # trust | scram-sha-256
    max_db: int         # max_db_connections (0 = unlimited)
    workers: int
    seconds: float = 0.0

    def describe(self) -> str:
        return (f"phase {self.index}: pool_mode={self.mode} default_pool_size={self.pool} "
                f"max_prepared_statements={self.mps} auth_type={self.auth}"
                f"{f' max_db_connections={self.max_db}' if self.max_db else ''} "
                f"workers={self.workers} for {self.seconds:.0f}s")

    @property
    def protocol_prepare(self) -> bool:
        """Whether protocol-level named statements survive from one transaction to the next."""
        return self.mode == "session" or self.mps > 0


QUICK_COMBOS = [("transaction", 3, 100, "scram-sha-256"), ("session", 2, 0, "trust"),
                ("statement", 1, 4, "trust")]  # where bugs were found first; one of each mode
COMBOS = [(m, mps, a) for m in ("session", "transaction", "statement") for mps in (False, True)
          for a in ("trust", "scram-sha-256")]


def phase_at(seed: int, i: int, quick: bool) -> Phase:
    """Phase i of a seed, whatever the run's length, so that `--phase I` replays it: every block
    of len(COMBOS) phases is one shuffled round of all combinations, with drawn pool sizes."""
    rng = random.Random(f"{seed}/phase{i}")
    if quick:
        mode, pool, mps, auth = QUICK_COMBOS[i]
        max_db = 0
    else:
        combos = list(COMBOS)
        random.Random(f"{seed}/round{i // len(COMBOS)}").shuffle(combos)
        mode, prepared, auth = combos[i % len(COMBOS)]
        pool = rng.randint(1, 5)
        mps = rng.choice([2, 4, 10, 100]) if prepared else 0
        max_db = pool + 1 if pool > 1 and rng.random() < 0.3 else 0
    workers = min(2 * pool * len(USERS) + 2, 14)
    return Phase(i, rng.randrange(1 << 31), mode, pool, mps, auth, max_db, workers)


def plan_phases(seed: int, quick: bool, total: float) -> list[Phase]:
    """One round of all combinations for runs up to 12 minutes, more rounds of ~1 minute phases
    beyond; --quick: the three QUICK_COMBOS."""
    count = len(QUICK_COMBOS) if quick else len(COMBOS) * max(1, round(total / (60 * len(COMBOS))))
    phases = [phase_at(seed, i, quick) for i in range(count)]
    for ph in phases:
        ph.seconds = max(10.0, total / count)
    return phases


# ---------------------------------------------------------------------------------------------
# PostgreSQL and pgmux processes
# ---------------------------------------------------------------------------------------------

class Cluster:
    """A throwaway PostgreSQL 15 cluster (scripts/pg-cluster.sh) with the torture roles and tables."""

    def __init__(self, tmp: Path):
        self.dir = tmp / "pg"
        self.port = free_port()
        self.defaults: dict[str, str] = {}  # tracked parameters as postgresql.conf sets them

    def start(self) -> None:
        subprocess.run([str(ROOT / "scripts/pg-cluster.sh"), "start", str(self.dir), str(self.port)],
                       check=True, env=dict(os.environ, PG_MAX_CONNECTIONS="300"))
        with self.connect("postgres") as c:
            for user, pw in USERS.items():
                c.execute(f"CREATE ROLE {user} LOGIN PASSWORD '{pw}'")
            c.execute(f"CREATE DATABASE {DB} OWNER tort_a")
        with self.connect() as c:
            c.execute("CREATE TABLE rows (w int, k int, v bigint, PRIMARY KEY (w, k))")
            c.execute("ALTER TABLE rows OWNER TO tort_a")
            c.execute("GRANT ALL ON SCHEMA public TO tort_b")
            c.execute("GRANT ALL ON rows TO tort_b")
            self.defaults = {p: c.execute(f"SELECT current_setting('{p}')").fetchone()[0] for p in TRACKED}
            self.defaults["application_name"] = ""

    def stop(self) -> None:
        subprocess.run([str(ROOT / "scripts/pg-cluster.sh"), "stop", str(self.dir)], check=False)

    def connect(self, db: str = DB) -> psycopg.Connection:
        """A direct superuser connection (trust for postgres on 127.0.0.1)."""
        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=db,
                               autocommit=True, connect_timeout=10)

    def log_tail(self, lines: int = 200) -> str:
        try:
            return "\n".join((self.dir / "postgres.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Pgmux:
    """One pgmux process with a generated ini and userlist; the console through RawClient."""

    def __init__(self, binary: Path, tmp: Path, pg_port: int):
        self.binary = binary
        self.dir = tmp / "pgmux"
        self.dir.mkdir(exist_ok=True)
        self.pg_port = pg_port
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.settings: dict[str, object] = {}
        # Workers connect over TLS now and then (client_tls_sslmode = allow): a throwaway EC key.
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(self.dir / "server.key"), "-out", str(self.dir / "server.crt"),
                        "-days", "2", "-subj", "/CN=localhost"], check=True, capture_output=True)

    def write_config(self, phase_settings: dict[str, object]) -> None:
        self.settings = dict(phase_settings)
        users = dict(USERS, **{ADMIN[0]: ADMIN[1]})
        (self.dir / "userlist.txt").write_text("".join(f'"{u}" "{p}"\n' for u, p in users.items()))
        ini = {
            "listen_addr": "127.0.0.1", "listen_port": self.port, "unix_socket_dir": str(self.dir),
            "auth_file": str(self.dir / "userlist.txt"), "admin_users": ADMIN[0],
            "max_client_conn": 1000, "query_wait_timeout": 120, "server_login_retry": 1,
            "so_reuseport": 0, "pidfile": str(self.dir / "pgmux.pid"),
            "logfile": str(self.dir / "pgmux.log"),
            "client_tls_sslmode": "allow", "client_tls_key_file": str(self.dir / "server.key"),
            "client_tls_cert_file": str(self.dir / "server.crt"),
        }
        ini.update(self.settings)
        # The same file drives PgBouncer (--pgmux /usr/sbin/pgbouncer), to check the tool against it.
        section = "pgbouncer" if self.binary.name.startswith("pgbouncer") else "pgmux"
        if section == "pgbouncer" and not ini.get("max_prepared_statements", 1):
            del ini["max_prepared_statements"]  # unknown before PgBouncer 1.21
        text = (f"[databases]\n{DB} = host=127.0.0.1 port={self.pg_port} dbname={DB}\n\n[{section}]\n"
                + "".join(f"{k} = {v}\n" for k, v in ini.items()))
        (self.dir / "pgmux.ini").write_text(text)
        os.chmod(self.dir / "userlist.txt", 0o600)
        if os.getuid() == 0:
            shutil.chown(self.dir, "postgres")
            for f in self.dir.iterdir():
                shutil.chown(f, "postgres")

    def start(self) -> None:
        args = [str(self.binary)] + (["-u", "postgres"] if os.getuid() == 0 else []) + [str(self.dir / "pgmux.ini")]
        if os.environ.get("PGMUX_WRAP"): args = os.environ["PGMUX_WRAP"].split() + args
        out = open(self.dir / "stdout.log", "ab")
        self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        for _ in range(100):
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgmux exited at start ({self.proc.returncode}): {self.log_tail(10)}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("pgmux did not listen within 10 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        for f in ("pgmux.log", "stdout.log"):
            (self.dir / f).unlink(missing_ok=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def reload(self, changes: dict[str, object]) -> None:
        """Rewrites the ini with `changes` and sends RELOAD through the console."""
        self.write_config(dict(self.settings, **changes))
        self.admin("RELOAD")

    def admin(self, sql: str, timeout: float = 5) -> list[dict[str, str]]:
        with RawClient(self.port, ADMIN[0], ADMIN[1], "pgbouncer", timeout) as c:
            return c.simple_query(sql)

    def show(self, what: str) -> str:
        """SHOW <what> as text for a report; never raises."""
        try:
            rows = self.admin(f"SHOW {what}")
        except Exception as e:  # the report must go on whatever the console does
            return f"SHOW {what}: no answer ({e})"
        if not rows:
            return f"SHOW {what}: (no rows)"
        cols = list(rows[0])
        return "\n".join([f"SHOW {what}:", " | ".join(cols)] + [" | ".join(r[c] or "" for c in cols) for r in rows])

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def log_tail(self, lines: int = 300) -> str:
        """The end of the log file, or of stderr when pgmux died before opening it."""
        for f in ("pgmux.log", "stdout.log"):
            try:
                text = (self.dir / f).read_text(errors="replace")
            except OSError:
                continue
            if text:
                return "\n".join(text.splitlines()[-lines:])
        return ""


# ---------------------------------------------------------------------------------------------
# A raw wire-protocol client: what libpq cannot send (Close, Flush after Sync, half logins)
# ---------------------------------------------------------------------------------------------

def msg(kind: bytes, body: bytes = b"") -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


def cstr(s: str) -> bytes:
    return s.encode() + b"\0"


def startup_packet(user: str, db: str) -> bytes:
    body = struct.pack("!I", 196608) + cstr("user") + cstr(user) + cstr("database") + cstr(db) + b"\0"
    return struct.pack("!I", len(body) + 4) + body


def parse(name: str, sql: str) -> bytes:
    return msg(b"P", cstr(name) + cstr(sql) + struct.pack("!H", 0))


def bind(stmt: str, params: list[str]) -> bytes:
    body = cstr("") + cstr(stmt) + struct.pack("!H", 0) + struct.pack("!H", len(params))
    for p in params:
        body += struct.pack("!i", len(p.encode())) + p.encode()
    return msg(b"B", body + struct.pack("!H", 0))


def execute() -> bytes:
    return msg(b"E", cstr("") + struct.pack("!i", 0))


def close_statement(name: str) -> bytes:
    return msg(b"C", b"S" + cstr(name))


SYNC, FLUSH, TERMINATE = msg(b"S"), msg(b"H"), msg(b"X")


def error_fields(body: bytes) -> dict[str, str]:
    return {chr(p[0]): p[1:].decode(errors="replace") for p in body.split(b"\0") if p}


def kinds(replies: list[tuple[bytes, bytes]]) -> str:
    """Message types as one string, an ErrorResponse with its SQLSTATE and text: "12DC", "E(57014 ...)Z"."""
    out = ""
    for t, body in replies:
        if t == b"E":
            f = error_fields(body)
            out += f"E({f.get('C', '?')} {f.get('M', '')})"
        else:
            out += t.decode()
    return out


class ServerError(Exception):
    def __init__(self, fields: dict[str, str]):
        super().__init__(f"{fields.get('C', '?')} {fields.get('M', '')}")
        self.sqlstate = fields.get("C")


class RawClient:
    """A minimal frontend: login (trust, cleartext, md5, SCRAM-SHA-256), messages, simple queries."""

    def __init__(self, port: int, user: str, password: str, db: str, timeout: float, login: bool = True):
        self.user, self.password, self.db = user, password, db
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.notices: list[str] = []  # NoticeResponses, which may come between any two messages
        self.trace: list[str] = []    # message types sent and received, for a hang report
        if login:
            self.login()

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send(self, *msgs: bytes) -> None:
        self.trace.append(">" + "".join(chr(m[0]) if m[0] else "startup" for m in msgs))
        self.sock.sendall(b"".join(msgs))

    def read(self) -> tuple[bytes, bytes]:
        """The next message, skipping the asynchronous ones (notices are kept in .notices)."""
        while True:
            if len(self.buf) >= 5:
                n = struct.unpack("!I", self.buf[1:5])[0]
                if len(self.buf) >= n + 1:
                    m, self.buf = self.buf[:n + 1], self.buf[n + 1:]
                    self.trace.append("<" + chr(m[0]))
                    if m[:1] == b"N":
                        f = error_fields(m[5:])
                        self.notices.append(f"{f.get('S', '?')} {f.get('C', '?')} {f.get('M', '')}")
                    elif m[:1] == b"E" and error_fields(m[5:]).get("S") == "FATAL":
                        # The connection ends (a server terminated by chaos, pgmux's own FATAL):
                        # judged like psycopg's connection errors, not as a wrong reply.
                        raise ServerError(error_fields(m[5:]))
                    elif m[:1] not in (b"S", b"A"):
                        return m[:1], m[5:]
                    continue
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise TimeoutError(f"no reply within {self.sock.gettimeout():.0f}s; messages: "
                                   + " ".join(self.trace[-12:])) from None
            if not chunk:
                raise ConnectionError("connection closed by pgmux")
            self.buf += chunk

    def login(self, stop_at: str | None = None) -> None:
        """Logs in; `stop_at` ('auth', 'sasl', 'ok') returns early there to test a half login."""
        self.send(startup_packet(self.user, self.db))
        scram: Scram | None = None
        while True:
            t, b = self.read()
            if t == b"E":
                raise ServerError(error_fields(b))
            if t == b"Z":
                return
            if t != b"R":
                continue
            code = struct.unpack("!I", b[:4])[0]
            if stop_at == "auth" or (stop_at == "ok" and code == 0):
                return
            if code == 3:
                self.send(msg(b"p", cstr(self.password)))
            elif code == 5:
                inner = hashlib.md5((self.password + self.user).encode()).hexdigest()
                self.send(msg(b"p", cstr("md5" + hashlib.md5(inner.encode() + b[4:8]).hexdigest())))
            elif code == 10:
                scram = Scram(self.password)
                first = scram.client_first()
                self.send(msg(b"p", cstr("SCRAM-SHA-256") + struct.pack("!i", len(first)) + first))
                if stop_at == "sasl":
                    return
            elif code == 11:
                self.send(msg(b"p", scram.client_final(b[4:])))
            elif code == 12:
                scram.verify(b[4:])

    def until_ready(self) -> list[tuple[bytes, bytes]]:
        """Messages up to and including ReadyForQuery."""
        out = []
        while True:
            t, b = self.read()
            out.append((t, b))
            if t == b"Z":
                return out

    def simple_query(self, sql: str) -> list[dict[str, str]]:
        self.send(msg(b"Q", cstr(sql)))
        cols, rows, err = [], [], None
        for t, b in self.until_ready():
            if t == b"T":
                n, pos = struct.unpack("!H", b[:2])[0], 2
                for _ in range(n):
                    end = b.index(b"\0", pos)
                    cols.append(b[pos:end].decode())
                    pos = end + 1 + 18
            elif t == b"D":
                n, pos, vals = struct.unpack("!H", b[:2])[0], 2, []
                for _ in range(n):
                    ln = struct.unpack("!i", b[pos:pos + 4])[0]
                    pos += 4
                    vals.append(None if ln < 0 else b[pos:pos + ln].decode(errors="replace"))
                    pos += max(ln, 0)
                rows.append(dict(zip(cols, vals)))
            elif t == b"E":
                err = ServerError(error_fields(b))
        if err:
            raise err
        return rows

    def close(self, hard: bool = False) -> None:
        try:
            if hard:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                self.sock.sendall(TERMINATE)
        except OSError:
            pass
        self.sock.close()


class Scram:
    """Client side of SCRAM-SHA-256 without channel binding."""

    def __init__(self, password: str):
        self.password = password.encode()
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.first_bare = f"n=,r={self.nonce}"
        self.server_signature = b""

    def client_first(self) -> bytes:
        return ("n,," + self.first_bare).encode()

    def client_final(self, server_first: bytes) -> bytes:
        attrs = dict(kv.split("=", 1) for kv in server_first.decode().split(","))
        salted = hashlib.pbkdf2_hmac("sha256", self.password, base64.b64decode(attrs["s"]), int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        final_bare = f"c=biws,r={attrs['r']}"
        auth_msg = f"{self.first_bare},{server_first.decode()},{final_bare}".encode()
        sig = hmac.new(hashlib.sha256(client_key).digest(), auth_msg, "sha256").digest()
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        self.server_signature = hmac.new(server_key, auth_msg, "sha256").digest()
        return f"{final_bare},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> None:
        if server_final.decode() != "v=" + base64.b64encode(self.server_signature).decode():
            raise ConnectionError("SCRAM server signature mismatch")


# ---------------------------------------------------------------------------------------------
# Shared state of a phase: chaos events, failures, operation counts
# ---------------------------------------------------------------------------------------------

class Mismatch(Exception):
    """A wrong answer: what the client saw is not what it must see."""


class PhaseState:
    """What the workers, the chaos thread and the monitor of one phase share."""

    def __init__(self, phase: Phase, args, pgmux: Pgmux, cluster: Cluster, tmp: Path):
        self.phase, self.args, self.pgmux, self.cluster, self.tmp = phase, args, pgmux, cluster, tmp
        self.stop = threading.Event()          # workers and chaos: no new operation
        self.monitor_stop = threading.Event()  # the monitor watches until the workers are all back
        self.lock = threading.Lock()
        self.disruptions: list[tuple[float, float, str]] = []  # (start, end, what) of chaos events
        self.failures: list[str] = []
        self.ops: collections.Counter[str] = collections.Counter()
        self.workers: list[Worker] = []
        self.limit_violations: list[str] = []
        self.prepared_violations: list[str] = []
        self.pinned_violations: list[str] = []
        self.idle_tx_violations: list[str] = []
        self.died: str | None = None
        self.hung = False
        self.t0 = time.monotonic()

    def disrupted(self, start: float, end: float, what: str) -> None:
        with self.lock:
            self.disruptions.append((start, end, what))

    def disruption_between(self, since: float, until: float) -> str | None:
        """A chaos event that can break a connection, overlapping [since - 2 s, until]."""
        with self.lock:
            for s, e, what in self.disruptions:
                if e >= since - 2 and s <= until:
                    return what
        return None

    def fail(self, text: str) -> None:
        with self.lock:
            self.failures.append(text)
            if len(self.failures) <= 10:
                print(f"FAIL [{self.phase.index}] {text}", flush=True)
        if len(self.failures) >= 25:
            self.stop.set()

    def count(self, kind: str) -> None:
        with self.lock:
            self.ops[kind] += 1


# ---------------------------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------------------------

def is_connection_error(e: BaseException) -> bool:
    """Errors a client gets when its server or its connection to pgmux goes away."""
    if isinstance(e, (ConnectionError, BrokenPipeError, psycopg.InterfaceError)):
        return True
    if isinstance(e, ServerError):  # the raw client's
        return (e.sqlstate or "").startswith(CONN_STATES)
    if isinstance(e, pgerr.QueryCanceled) or not isinstance(e, psycopg.OperationalError):
        return False
    state = e.sqlstate or ""
    return state == "" or state.startswith(CONN_STATES)


def shutdown_socket(fd: int) -> None:
    """Cuts a connection under its owner's feet (the owner still holds and later closes the fd)."""
    try:
        s = socket.socket(fileno=os.dup(fd))
        s.shutdown(socket.SHUT_RDWR)
        s.close()
    except OSError:
        pass


class WireTrace:
    """libpq's PQtrace of a worker's connections into one file, kept short, for failure reports."""

    LIMIT = 256 * 1024

    def __init__(self, path: Path):
        from psycopg.pq import _pq_ctypes  # the ctypes binding: PQtrace wants a C FILE *
        self.pq = _pq_ctypes
        self.libc = ctypes.CDLL(None)
        self.libc.fopen.restype = _pq_ctypes.FILE_ptr
        self.libc.fopen.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
        for f in ("fflush", "rewind", "fclose", "fileno"):
            getattr(self.libc, f).argtypes = (_pq_ctypes.FILE_ptr,)
        self.path = path
        self.file = self.libc.fopen(str(path).encode(), b"w")

    def attach(self, conn: psycopg.Connection) -> None:
        self.pq.PQtrace(conn.pgconn._pgconn_ptr, self.file)
        self.pq.PQsetTraceFlags(conn.pgconn._pgconn_ptr, 1)  # PQTRACE_SUPPRESS_TIMESTAMPS

    def detach(self, conn: psycopg.Connection) -> None:
        self.pq.PQuntrace(conn.pgconn._pgconn_ptr)

    def trim(self) -> None:
        """Between operations: start the file over once it is long."""
        self.libc.fflush(self.file)
        if self.path.stat().st_size > self.LIMIT:
            os.ftruncate(self.libc.fileno(self.file), 0)
            self.libc.rewind(self.file)

    def tail(self, lines: int = 40) -> str:
        self.libc.fflush(self.file)
        return "\n      ".join(self.path.read_text(errors="replace").splitlines()[-lines:])

    def close(self) -> None:
        self.libc.fclose(self.file)


class Worker(threading.Thread):
    """One client: a seeded stream of operations, each checked against the worker's own model."""

    def __init__(self, wid: int, state: PhaseState):
        super().__init__(name=f"worker-{wid}", daemon=True)
        self.wid, self.st, self.ph = wid, state, state.phase
        self.rng = random.Random(f"{self.ph.seed}/{wid}")
        self.user = list(USERS)[wid % len(USERS)]
        self.conn: psycopg.Connection | None = None
        self.raw_client: RawClient | None = None  # the raw connection of the current operation
        self.conn_ok_since = 0.0      # start of the last operation that went well on this connection
        self.model: dict[int, int] = {}  # k -> v of this worker's committed rows
        self.next_key = 0
        # Tracked parameters as this client must see them; None where it cannot know (a value it
        # never set may be another client's: poolers only restore the values a client gave).
        self.params: dict[str, str | None] = {}
        self.listening = False
        self.notes: list[str] = []     # payloads of notifications received
        self.notices: list[str] = []   # NoticeResponses: none of the operations causes one
        self.last_cancel: tuple[float, object] = (0.0, None)  # when, and on which connection
        self.busy: tuple[str, float] | None = None  # (operation, start) while one runs
        self.history: collections.deque[str] = collections.deque(maxlen=12)
        self.trace = WireTrace(state.tmp / f"wire-{wid}.trace")
        self.ops = self.operations()

    # -- plumbing ---------------------------------------------------------------------------

    def operations(self) -> list[tuple[str, int]]:
        """(operation, weight) allowed in this phase's pool mode."""
        ph = self.ph
        ops = [("simple", 6), ("extended", 6), ("verify", 4), ("copy_out", 2), ("copy_in", 3),
               ("pipeline", 4), ("notify", 2), ("sleep_cancel", 2), ("set_param", 3), ("session_set", 2),
               ("session_pin", 1),
               ("syntax_error", 2), ("discard_all", 1), ("disconnect_copy", 1),
               ("disconnect_pipeline", 1), ("raw_login_drop", 1), ("raw_flush", 3),
               ("reconnect", 8 if ph.mode == "session" else 1)]  # a session holds its server till it leaves
        if ph.mode != "statement":
            ops += [("tx_commit", 6), ("tx_rollback", 2), ("tx_fail", 2), ("disconnect_tx", 1)]
        else:
            ops += [("tx_refused", 1)]
        if ph.protocol_prepare:
            ops += [("prepared", 6), ("deallocate_all", 1), ("raw_named", 3)]
        if ph.mode != "session" and ph.mps > 0:
            ops += [("stale_plan", 1)]
        if ph.protocol_prepare:
            ops += [("sql_prepare", 2)]
        ops += [("listen", 2)]
        return ops

    def connect(self) -> None:
        self.close()
        password = USERS[self.user] if self.ph.auth != "trust" else None
        app = f"tw{self.wid}"
        # Unless --no-tls, a quarter of the connections use TLS, with SCRAM-SHA-256-PLUS channel
        # binding where the login is SCRAM: the TLS relay, the handshake and the bound exchange.
        tls = self.st.args.tls and self.rng.random() < 0.25
        security = ({"sslmode": "require", "channel_binding": "require" if self.ph.auth != "trust" else "disable"}
                    if tls else {"sslmode": "disable"})
        self.conn = psycopg.connect(host="127.0.0.1", port=self.st.pgmux.port, user=self.user, password=password,
                                    dbname=DB, application_name=app, autocommit=True, connect_timeout=15, **security)
        if tls and not self.conn.pgconn.ssl_in_use:
            raise Mismatch("sslmode=require, but the connection is not encrypted")
        # psycopg prepares a query after 5 runs; that only works where named statements survive.
        self.conn.prepare_threshold = 5 if self.ph.protocol_prepare else None
        self.conn.prepared_max = 3  # psycopg evicts by SQL DEALLOCATE name, of a protocol-level statement
        self.trace.attach(self.conn)
        self.conn.add_notify_handler(lambda n: self.notes.append(n.payload))
        self.conn.add_notice_handler(
            lambda d: self.notices.append(f"{d.severity} {d.sqlstate} {d.message_primary}"))
        self.params = {"application_name": app, "TimeZone": None, "DateStyle": None}
        self.owner = None  # torture.owner, a setting PostgreSQL does not report (SET follows the client)
        self.listening = False
        self.conn_ok_since = time.monotonic()

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a connection that died may be half gone
                self.trace.detach(conn)
            with contextlib.suppress(Exception):
                conn.close()

    def abort(self) -> None:
        """Called by the monitor on a hang: breaks the blocked call."""
        for sock in (self.conn, self.raw_client and self.raw_client.sock):
            try:
                shutdown_socket(sock.fileno())
            except Exception:  # already closed, or never opened
                pass

    def run(self) -> None:
        kinds, weights = zip(*self.ops)
        try:
            self.connect()
        except Exception as e:
            self.st.fail(f"worker {self.wid}: first connection failed: {e!r}")
            self.close()
            return
        while not self.st.stop.is_set():
            kind = self.rng.choices(kinds, weights)[0]
            self.step(kind)
        self.close()
        self.trace.close()

    def step(self, kind: str) -> None:
        start = time.monotonic()
        self.trace.trim()
        self.busy = (kind, start)
        self.notices.clear()
        outcome = "ok"
        try:
            if self.conn is None or self.conn.closed:
                self.connect()
            getattr(self, "op_" + kind)()
            self.check_notices(start)
            self.conn_ok_since = start
        except Mismatch as e:
            outcome = f"WRONG: {e}"
            self.report(kind, outcome)
            self.resync()
        except Exception as e:  # every error is judged here: legitimate or a failure
            outcome = self.judge(kind, e, start)
        finally:
            self.busy = None
            self.history.append(f"{start - self.st.t0:7.2f}s +{time.monotonic() - start:.2f}s {kind}: {outcome}")
            self.st.count(kind)

    def check_notices(self, start: float) -> None:
        """No operation asks for a notice. A FATAL that libpq got between queries (it hands those
        to the notice handler) is a lost server: legitimate only after a chaos event."""
        unasked = [n for n in self.notices if QUEUED_NOTICE not in n
                   and not (LISTENER_LOST in n and self.listener_lost_legitimately(start))]
        fatal = [n for n in unasked if n.startswith("FATAL")]
        if fatal and self.st.disruption_between(self.conn_ok_since, time.monotonic()):
            self.close()
            unasked = [n for n in unasked if n not in fatal]
        if unasked:
            raise Mismatch(f"notices nobody asked for: {unasked}")

    def judge(self, kind: str, e: Exception, start: float) -> str:
        """Decides whether error `e` of operation `kind` is one it may legitimately get."""
        text = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        if self.st.stop.is_set() and self.st.hung:
            return f"aborted ({text})"
        why = self.st.disruption_between(self.conn_ok_since, time.monotonic())
        if why and self.connection_lost(e):
            self.close()
            self.resync()
            return f"connection error after {why} ({text})"
        when, conn = self.last_cancel
        if isinstance(e, pgerr.QueryCanceled) and conn is self.conn and time.monotonic() - when < 2:
            self.close()  # a cancel of our own, fired just before, may land on the next query
            return f"late cancel of our own ({text})"
        outcome = f"UNEXPECTED {text}"
        self.report(kind, outcome)
        self.close()
        self.resync()
        return outcome

    def connection_lost(self, e: Exception) -> bool:
        """Whether `e` came from losing the connection. A server that dies sends its FATAL and pgmux
        adds its own; in the middle of COPY or a pipeline psycopg may then raise a ProgrammingError,
        an InternalError (two results) or worse: a connection that no longer answers tells."""
        if is_connection_error(e) or self.conn is None or self.conn.broken:
            return True
        try:
            self.conn.execute("SELECT 1")
        except Exception as probe:
            return is_connection_error(probe) or self.conn.broken
        return False

    def report(self, kind: str, outcome: str) -> None:
        hist = "\n      ".join(list(self.history)[-6:])
        self.st.fail(f"worker {self.wid} ({self.user}) {kind}: {outcome}\n    last operations:\n      {hist}"
                     f"\n    libpq trace (F = sent, B = received):\n      {self.trace.tail()}")

    def resync(self) -> None:
        """After an in-doubt outcome: the model becomes what PostgreSQL holds (read directly)."""
        try:
            with self.st.cluster.connect() as c:
                rows = c.execute("SELECT k, v FROM rows WHERE w = %s", (self.wid,)).fetchall()
            self.model = dict(rows)
        except psycopg.Error as e:
            self.st.fail(f"worker {self.wid}: cannot read its rows directly: {e}")

    def expect(self, what: str, got, want) -> None:
        if got != want:
            raise Mismatch(f"{what}: got {got!r}, expected {want!r}")

    def expect_error(self, e: Exception, sqlstate: str) -> None:
        if getattr(e, "sqlstate", None) != sqlstate:
            raise e

    def new_rows(self, n: int) -> list[tuple[int, int]]:
        rows = [(self.next_key + i, self.rng.randrange(-10**12, 10**12)) for i in range(n)]
        self.next_key += n
        return rows

    def some_changes(self) -> list[tuple[int, int]]:
        """A few upserts: existing keys get new values, or new keys appear."""
        changes = []
        for _ in range(self.rng.randint(1, 4)):
            if self.model and self.rng.random() < 0.5:
                changes.append((self.rng.choice(list(self.model)), self.rng.randrange(10**9)))
            else:
                changes += self.new_rows(1)
        return changes

    def check_rows(self, rows) -> None:
        self.expect(f"rows of worker {self.wid}", dict(rows), self.model)
        if len(self.model) > 200:  # keep the table small: forget the oldest keys
            with self.conn.transaction() if self.ph.mode != "statement" else contextlib.nullcontext():
                old = sorted(self.model)[:100]
                self.conn.execute("DELETE FROM rows WHERE w = %s AND k = ANY(%s)", (self.wid, old))
            for k in old:
                del self.model[k]

    def shut(self) -> None:
        shutdown_socket(self.conn.fileno())

    @contextlib.contextmanager
    def raw(self):
        """A raw-protocol connection for one operation; it must not receive any notice."""
        if self.ph.mode == "session":
            self.close()  # our own session would hold the server the raw connection may need
        with RawClient(self.st.pgmux.port, self.user, USERS[self.user], DB, self.st.args.deadline + 10) as c:
            self.raw_client = c
            yield c
            self.raw_client = None
            self.expect("notices", [n for n in c.notices if QUEUED_NOTICE not in n], [])

    # -- operations -------------------------------------------------------------------------

    def op_simple(self) -> None:
        a, b = self.rng.randrange(10**6), self.rng.randrange(10**6)
        cur = psycopg.ClientCursor(self.conn)
        self.expect("simple query", cur.execute(f"SELECT {a} + {b}, 'w{self.wid}'").fetchone(), (a + b, f"w{self.wid}"))

    def op_extended(self) -> None:
        a, s = self.rng.randrange(10**6), f"x{self.rng.randrange(10**6)}"
        row = self.conn.execute("SELECT %s::int * 2, %s::text || '!'", (a, s), prepare=False).fetchone()
        self.expect("extended query", row, (a * 2, s + "!"))

    def op_prepared(self) -> None:
        """Protocol-level named statements, several times, some inside a transaction block."""
        in_tx = self.ph.mode != "statement" and self.rng.random() < 0.5
        with self.conn.transaction() if in_tx else contextlib.nullcontext():
            for _ in range(self.rng.randint(1, 4)):
                i = self.rng.randrange(len(PREPARED_TEXTS))
                self.run_prepared(i)

    def run_prepared(self, i: int) -> None:
        n = self.rng.randrange(10**6)
        q = PREPARED_TEXTS[i]
        if i == 0:
            self.expect(q, self.conn.execute(q, (n,), prepare=True).fetchone(), (n + 1,))
        elif i == 1:
            self.expect(q, self.conn.execute(q, (n, str(n)), prepare=True).fetchone(), (n * 3, str(n)))
        elif i == 2:
            rows = self.conn.execute(q, (self.wid,), prepare=True).fetchall()
            self.expect("rows via prepared statement", dict(rows), self.model)
        elif i == 3:
            self.expect(q, self.conn.execute(q, (self.wid,), prepare=True).fetchone(), (len(self.model),))
        elif i == 4:
            self.expect(q, self.conn.execute(q, ("z" * (n % 50),), prepare=True).fetchone(), (n % 50,))
        elif i == 5:
            self.expect(q, self.conn.execute(q, (n,), prepare=True).fetchone(), (n - 5,))
        elif i == 6:
            self.expect(q, self.conn.execute(q, (str(n),), prepare=True).fetchone(),
                        (hashlib.md5(str(n).encode()).hexdigest(),))
        else:
            self.expect(q, self.conn.execute(q, (n, n + 1, n + 2), prepare=True).fetchone(), (n, n + 1, n + 2))

    def forgetting(self, command: str) -> str:
        """psycopg forgets its prepared statements on a DEALLOCATE ALL or DISCARD ALL tag, but
        only for a query text it has not seen before on the connection: make each text new."""
        return f"{command} -- {self.rng.randrange(10**9)}"

    def op_deallocate_all(self) -> None:
        self.conn.execute(self.forgetting("DEALLOCATE ALL"))
        self.run_prepared(self.rng.randrange(len(PREPARED_TEXTS)))

    def op_discard_all(self) -> None:
        self.conn.execute(self.forgetting("DISCARD ALL"))
        self.params = {p: self.reset_value(p) for p in TRACKED}
        self.owner = None
        self.listening = False
        self.check_params()

    def op_stale_plan(self) -> None:
        """A statement prepared with SELECT * while its table gains or loses a column: PostgreSQL
        answers "cached plan must not change result type" on servers that hold the old
        statement; pgmux replaces them, so the error comes back at most once per server, never
        for good, and the next execution has the new columns."""
        t = f"stale_w{self.wid}"
        if self.conn.execute("SELECT to_regclass(%s)", (t,)).fetchone()[0] is None:  # no NOTICE, unlike IF NOT EXISTS
            self.conn.execute(f"CREATE TABLE {t} (a int)")
        # Dropped columns keep their numbers, and a table has at most 1,600: start over in time.
        if self.conn.execute("SELECT max(attnum) FROM pg_attribute WHERE attrelid = %s::regclass", (t,)).fetchone()[0] > 1000:
            self.conn.execute(f"DROP TABLE {t}")
            self.conn.execute(f"CREATE TABLE {t} (a int)")
        if self.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] == 0:
            self.conn.execute(f"INSERT INTO {t} VALUES (1)")
        q = f"SELECT * FROM {t} -- stale plan"
        before = self.conn.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                                   "AND NOT attisdropped", (t,)).fetchone()[0]
        self.stale_select(q, before, "before ALTER TABLE")
        self.stale_select(q, before, "before ALTER TABLE")
        change = "DROP COLUMN b" if before == 2 else "ADD COLUMN b int"
        self.conn.execute(f"ALTER TABLE {t} {change}")
        self.stale_select(q, 3 - before, f"after ALTER TABLE {change}")

    def stale_select(self, q: str, columns: int, when: str) -> None:
        """Runs the prepared SELECT * until it answers, allowing the stale plan error once per
        server of the pool (and once more), and checks its column count."""
        for _ in range(self.ph.pool + 2):
            try:
                row = self.conn.execute(q, prepare=True).fetchone()
            except psycopg.Error as e:
                self.expect_error(e, "0A000")
                continue
            self.expect(f"{q} {when}", len(row), columns)
            return
        raise Mismatch(f"{q} {when}: still 'cached plan must not change result type' after {self.ph.pool + 2} tries")

    def op_sql_prepare(self) -> None:
        """SQL PREPARE / EXECUTE / DEALLOCATE, the name prepared again with another text; some
        inside a transaction block. Simple protocol (psycopg sends queries without parameters so)."""
        name = f"sp_{self.wid}"
        n = self.rng.randrange(10**6)
        in_tx = self.ph.mode != "statement" and self.rng.random() < 0.3
        with self.conn.transaction() if in_tx else contextlib.nullcontext():
            self.conn.execute(f"PREPARE {name} (int) AS SELECT $1 + 100")
            self.expect("EXECUTE", self.conn.execute(f"EXECUTE {name} ({n})").fetchone(), (n + 100,))
            self.conn.execute(f"DEALLOCATE {name}")
            self.conn.execute(f'PREPARE "{name}" (int) AS SELECT $1 * 2')
        self.expect("EXECUTE again", self.conn.execute(f"EXECUTE {name}({n})").fetchone(), (n * 2,))
        self.conn.execute(f"DEALLOCATE PREPARE {name}")

    def op_verify(self) -> None:
        rows = self.conn.execute("SELECT k, v FROM rows WHERE w = %s", (self.wid,)).fetchall()
        self.check_rows(rows)
        self.check_params()

    def op_copy_out(self) -> None:
        cur = self.conn.cursor()
        rows = []
        with cur.copy(f"COPY (SELECT k, v FROM rows WHERE w = {self.wid}) TO STDOUT") as cp:
            for row in cp.rows():
                rows.append((int(row[0]), int(row[1])))
        self.check_rows(rows)

    def op_copy_in(self) -> None:
        rows = self.new_rows(self.rng.randint(1, 300))
        before = dict(self.model)
        with self.conn.cursor().copy("COPY rows (w, k, v) FROM STDIN") as cp:
            for k, v in rows:
                cp.write_row((self.wid, k, v))
        self.model = {**before, **dict(rows)}

    def op_pipeline(self) -> None:
        """Queries in one pipeline; half the time results are fetched mid-way (libpq sends a Flush)."""
        flush = self.rng.random() < 0.5
        nums = [self.rng.randrange(10**6) for _ in range(self.rng.randint(2, 8))]
        with self.conn.pipeline() as p:
            curs = []
            for i, n in enumerate(nums):
                cur = self.conn.cursor()
                cur.execute("SELECT %s::int + %s::int", (n, i), prepare=False)
                curs.append(cur)
                if flush and i == len(nums) // 2:
                    self.expect("pipelined result (flushed)", curs[0].fetchone(), (nums[0],))
                    curs[0] = None
            if self.rng.random() < 0.3:
                p.sync()
        for i, (cur, n) in enumerate(zip(curs, nums)):
            if cur is not None:
                self.expect("pipelined result", cur.fetchone(), (n + i,))

    def op_notify(self) -> None:
        self.conn.execute("SELECT pg_notify(%s, %s)", ("tch_other", f"n{self.wid}"))

    def op_listen(self) -> None:
        """A notification to ourselves comes back on the same connection: in session mode with
        the NOTIFY's reply, in transaction and statement mode through pgmux's listener connection
        between two of our transactions (a few polls later). A listener lost to a chaos
        pg_terminate_backend() may miss it, and says so with its notice."""
        if not self.listening:
            self.conn.execute(f"LISTEN tch_{self.wid}")
            self.listening = True
        payload = f"p{self.rng.randrange(10**9)}"
        self.notes.clear()
        start = time.monotonic()
        self.conn.execute(f"NOTIFY tch_{self.wid}, '{payload}'")
        deadline = start + (0 if self.ph.mode == "session" else 5)
        while payload not in self.notes:
            self.conn.execute("SELECT 1")
            if time.monotonic() >= deadline or any(LISTENER_LOST in n for n in self.notices):
                break
            time.sleep(0.01)
        if payload not in self.notes and self.listener_lost_legitimately(start):
            return
        self.expect("own notification", payload in self.notes, True)

    def listener_lost_legitimately(self, start: float) -> bool:
        """pgmux told us its listener connection was lost, after a chaos event that can cause it."""
        return (any(LISTENER_LOST in n for n in self.notices)
                and bool(self.st.disruption_between(start - 5, time.monotonic())))

    def op_sleep_cancel(self) -> None:
        """pg_sleep(2) with 1..4 cancels fired at it; the query ends canceled, or finished."""
        delays = sorted(self.rng.uniform(0.05, 0.8) for _ in range(self.rng.randint(1, 4)))
        conn = self.conn

        def fire() -> None:
            t0 = time.monotonic()
            for d in delays:
                time.sleep(max(0.0, t0 + d - time.monotonic()))
                try:
                    conn.cancel()
                except psycopg.Error:
                    pass
        t = threading.Thread(target=fire, daemon=True)
        t.start()
        try:
            conn.execute("SELECT pg_sleep(2)")
        except pgerr.QueryCanceled:
            pass
        finally:
            t.join()
            self.last_cancel = (time.monotonic(), conn)

    def reset_value(self, name: str) -> str | None:
        """After RESET: postgresql.conf's value; unknown for an empty one (a server's startup value)."""
        return self.st.cluster.defaults[name] or None

    def check_params(self) -> None:
        """The server's values (SHOW) and the client's (ParameterStatus) are the ones it set."""
        got = self.conn.execute("SELECT current_setting('application_name'), current_setting('TimeZone'), "
                                "current_setting('DateStyle'), current_setting('torture.owner', true)").fetchone()
        for (p, want), server in zip(self.params.items(), got):
            if want is not None:
                self.expect(f"{p} (SHOW)", server, want)
                self.expect(f"{p} (ParameterStatus)", self.conn.info.parameter_status(p), want)
        self.expect("torture.owner (SHOW)", got[3] or None, self.owner)

    def op_session_set(self) -> None:
        """SET/RESET of a setting PostgreSQL does not report, sometimes in a transaction block that
        commits or rolls back: it must follow this client, and no other client may see it."""
        in_tx = self.ph.mode != "statement" and self.rng.random() < 0.3
        value = None if self.rng.random() < 0.2 else f"tw{self.wid}-{self.rng.randrange(999)}"
        command = "RESET torture.owner" if value is None else f"SET torture.owner = '{value}'"
        # Simple protocol, or an unnamed Parse (a named statement's SET is not followed).
        run = (lambda: self.conn.execute(command, prepare=False)) if self.rng.random() < 0.5 else \
            (lambda: self.conn.cursor().execute(command, prepare=False, binary=True))
        if not in_tx:
            run()
            self.owner = value
        elif self.rng.random() < 0.5:
            with self.conn.transaction():
                run()
            self.owner = value
        else:
            with self.conn.transaction():
                run()
                raise psycopg.Rollback()  # leaves the block, rolled back
        self.check_params()

    def op_set_param(self) -> None:
        name = self.rng.choice(list(TRACKED))
        if self.rng.random() < 0.3:
            self.conn.execute(f"RESET {name}")
            self.params[name] = self.reset_value(name)
        else:
            value = self.rng.choice(TRACKED[name]) if TRACKED[name] else f"tw{self.wid}-{self.rng.randrange(999)}"
            self.conn.execute(f"SET {name} = '{value}'")
            self.params[name] = value
        self.check_params()

    def op_syntax_error(self) -> None:
        try:
            self.conn.execute("SELEC 1", prepare=False)
        except psycopg.Error as e:
            self.expect_error(e, "42601")
        else:
            raise Mismatch("a syntax error was accepted")
        self.expect("query after an error", self.conn.execute("SELECT 5").fetchone(), (5,))

    def op_tx_commit(self) -> None:
        changes = self.some_changes()
        before, after = dict(self.model), {**self.model, **dict(changes)}
        self.model = after  # assumed; a connection error makes it in doubt (resync)
        try:
            with self.conn.transaction():
                for k, v in changes:
                    self.conn.execute(UPSERT, (self.wid, k, v), prepare=self.rng.random() < 0.5 and self.ph.protocol_prepare)
                if self.rng.random() < 0.3:
                    self.conn.execute("DELETE FROM rows WHERE w = %s AND k = %s", (self.wid, changes[0][0]))
                    del after[changes[0][0]]
                got = self.conn.execute("SELECT count(*) FROM rows WHERE w = %s", (self.wid,)).fetchone()
                self.expect("row count inside the transaction", got, (len(after),))
        except Mismatch:
            raise
        except Exception:
            self.model = before
            raise

    def op_tx_rollback(self) -> None:
        with self.conn.transaction(force_rollback=True):
            for k, v in self.some_changes():
                self.conn.execute(UPSERT, (self.wid, k, v))
        self.expect("rows after a rollback", dict(self.conn.execute(
            "SELECT k, v FROM rows WHERE w = %s", (self.wid,)).fetchall()), self.model)

    def op_tx_fail(self) -> None:
        try:
            with self.conn.transaction():
                for k, v in self.some_changes():
                    self.conn.execute(UPSERT, (self.wid, k, v), prepare=self.ph.protocol_prepare and self.rng.random() < 0.5)
                self.conn.execute("SELEC 'midway'", prepare=False)
        except psycopg.Error as e:
            self.expect_error(e, "42601")
        else:
            raise Mismatch("a transaction with a syntax error committed")

    def op_session_pin(self) -> None:
        """A session advisory lock or a temporary table keeps the client on its backend until it is
        released (transaction pooling); statement pooling refuses it, ending the connection."""
        key = 700_000 + self.wid
        if self.ph.mode == "statement":
            try:
                self.conn.execute("SELECT pg_advisory_lock(%s)", (key,), prepare=False)
            except psycopg.Error as e:
                if "not allowed in statement pooling mode" not in str(e):
                    raise
            else:
                raise Mismatch("statement mode accepted a session advisory lock")
            self.close()
            return
        pid = self.conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        if self.rng.random() < 0.5:
            self.conn.execute("SELECT pg_advisory_lock(%s)", (key,), prepare=False)
            held = self.conn.execute("SELECT pg_backend_pid(), count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                     "AND pid = pg_backend_pid() AND objid = %s", (key,)).fetchone()
            self.expect("the lock's backend", held[1], 1)
            for _ in range(self.rng.randint(1, 3)):
                self.expect("pinned backend", self.conn.execute("SELECT pg_backend_pid()").fetchone()[0], held[0])
            self.expect("unlocked", self.conn.execute("SELECT pg_advisory_unlock(%s)", (key,)).fetchone()[0], True)
        else:
            table = f"pin_{self.wid}"
            self.conn.execute(f"CREATE TEMP TABLE {table} (x int)")
            self.conn.execute(f"INSERT INTO {table} VALUES (%s)", (pid,))
            for _ in range(self.rng.randint(1, 3)):
                self.expect("temporary table", self.conn.execute(f"SELECT x FROM {table}").fetchone(), (pid,))
            self.conn.execute(f"DROP TABLE {table}")

    def op_tx_refused(self) -> None:
        """Statement mode: a transaction block ends the connection with pgmux's FATAL."""
        try:
            self.conn.execute("BEGIN")
            self.conn.execute("SELECT 1")
        except psycopg.Error as e:
            if "transaction blocks not allowed" not in str(e):
                raise
        else:
            raise Mismatch("statement mode accepted a transaction block")
        self.close()

    def op_disconnect_tx(self) -> None:
        """Mid-transaction disconnect: the uncommitted values must never be seen."""
        self.conn.execute("BEGIN")
        for k, _ in self.some_changes():
            self.conn.execute(UPSERT, (self.wid, k, -1))
        self.shut()
        self.close()

    def op_disconnect_copy(self) -> None:
        try:
            with self.conn.cursor().copy("COPY rows (w, k, v) FROM STDIN") as cp:
                # psycopg sends in 32 kB chunks: a few thousand rows are partly on their way
                for k, _ in self.new_rows(self.rng.randint(10, 4000)):
                    cp.write_row((self.wid, k, -2))
                self.shut()
        except psycopg.Error:
            pass
        self.close()

    def op_disconnect_pipeline(self) -> None:
        try:
            with self.conn.pipeline():
                for i in range(self.rng.randint(1, 6)):
                    self.conn.execute("SELECT %s::int", (i,), prepare=False)
                self.shut()
        except psycopg.Error:
            pass
        self.close()

    def op_reconnect(self) -> None:
        self.connect()

    def op_raw_flush(self) -> None:
        """Unnamed statements with Flush before Sync, or after it, or a lone Sync + Flush once the
        exchange is over (libpq's pipeline exit after an explicit sync sends that)."""
        n = self.rng.randrange(10**6)
        variant = self.rng.choice(["flush-then-sync", "sync-flush", "sync-then-sync-flush"])
        with self.raw() as c:
            ext = [parse("", "SELECT $1::int + 1"), bind("", [str(n)]), execute()]
            if variant == "flush-then-sync":
                c.send(*ext, FLUSH)
                got = [c.read()]
                while got[-1][0] not in (b"C", b"E"):  # a Flush gets everything up to here
                    got.append(c.read())
                self.expect("replies to a Flush", kinds(got), "12DC")
                c.send(SYNC)
                self.expect("reply to Sync", kinds(c.until_ready()), "Z")
            else:
                c.send(*ext, SYNC, FLUSH)
                self.expect("replies", kinds(c.until_ready()), "12DCZ")
            if variant == "sync-then-sync-flush":
                c.send(SYNC, FLUSH)
                self.expect("reply to a lone Sync", kinds(c.until_ready()), "Z")
            self.expect(f"query after {variant}", c.simple_query(f"SELECT {n} AS x"), [{"x": str(n)}])

    def op_raw_named(self) -> None:
        """Protocol-level Parse/Bind/Close of a named statement, then the same name again."""
        name = f"rs_{self.wid}"
        with self.raw() as c:
            for round_ in range(2):
                n = self.rng.randrange(10**6)
                c.send(parse(name, "SELECT $1::int - 1"), bind(name, [str(n)]), execute(), SYNC)
                replies = c.until_ready()
                self.expect(f"named statement round {round_}", kinds(replies), "12DCZ")
                self.expect("named statement value", replies[2][1][6:].decode(), str(n - 1))
                c.send(close_statement(name), SYNC)
                self.expect("Close statement", kinds(c.until_ready()), "3Z")

    def op_raw_login_drop(self) -> None:
        """A client that goes away mid-login: before its startup packet ends, or mid-authentication."""
        stop = self.rng.choice(["half-startup", "auth", "sasl", "ok"])
        c = RawClient(self.st.pgmux.port, self.user, USERS[self.user], DB, self.st.args.deadline + 10, login=False)
        try:
            if stop == "half-startup":
                c.send(startup_packet(self.user, DB)[:7])
            elif stop != "sasl" or self.ph.auth != "trust":
                c.login(stop_at=stop)
        finally:
            c.close(hard=self.rng.random() < 0.5)


# ---------------------------------------------------------------------------------------------
# Chaos and monitoring
# ---------------------------------------------------------------------------------------------

class Chaos(threading.Thread):
    """Pooler-side events every 1..4 s: PAUSE/RESUME, RECONNECT, RELOAD, pg_terminate_backend."""

    def __init__(self, state: PhaseState):
        super().__init__(name="chaos", daemon=True)
        self.st = state
        self.rng = random.Random(f"{state.phase.seed}/chaos")
        self.events: collections.Counter[str] = collections.Counter()

    def run(self) -> None:
        # In session mode PAUSE would wait for every client to leave.
        events = [("pause", 0 if self.st.phase.mode == "session" else 2),
                  ("reconnect", 2), ("reload", 2), ("terminate", 3)]
        kinds, weights = zip(*events)
        while not self.st.stop.wait(self.rng.uniform(1, 4)):
            kind = self.rng.choices(kinds, weights)[0]
            disrupts = kind in ("reconnect", "terminate")
            start = time.monotonic()
            # Recorded before it happens (a client may see the effect at once), with 5 s of
            # after-effects (server_login_retry, a FATAL read later).
            if disrupts:
                self.st.disrupted(start, start + 5, kind)
            try:
                getattr(self, "do_" + kind)()
            except Exception as e:  # a console that does not answer is the monitor's business
                if not self.st.stop.is_set():
                    self.st.fail(f"chaos {kind}: {e!r}")
            if disrupts:
                self.st.disrupted(start, time.monotonic() + 5, kind)
            self.events[kind] += 1
            self.st.count("chaos_" + kind)

    def do_pause(self) -> None:
        try:
            self.st.pgmux.admin("PAUSE", timeout=self.st.args.deadline)
            self.st.stop.wait(self.rng.uniform(0.2, 1.5))
        finally:
            self.st.pgmux.admin("RESUME")

    def do_reconnect(self) -> None:
        self.st.pgmux.admin("RECONNECT")

    def do_reload(self) -> None:
        self.st.pgmux.reload({})

    def do_terminate(self) -> None:
        with self.st.cluster.connect() as c:
            c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY(%s) "
                      "AND backend_type = 'client backend' ORDER BY random() LIMIT 1", (list(USERS),))


class Monitor(threading.Thread):
    """Every 0.5 s: pgmux alive, no operation past the deadline, backends within the limits, no
    stale idle-in-transaction backend; every 2 s the servers (check_servers)."""

    def __init__(self, state: PhaseState):
        super().__init__(name="monitor", daemon=True)
        self.st = state
        self.over_limit_polls = 0
        self.peak_backends = 0
        self.pinned: set[int] = set()  # backends already reported as pinned

    def run(self) -> None:
        polls = 0
        try:
            conn = self.st.cluster.connect()
        except psycopg.Error as e:
            self.st.fail(f"monitor: no direct connection to PostgreSQL: {e}")
            return
        with conn:
            while not self.st.monitor_stop.wait(0.5):
                polls += 1
                if not self.st.pgmux.alive():
                    self.st.died = f"pgmux died (exit status {self.st.pgmux.proc.returncode})"
                    self.st.fail(self.st.died + "\n" + self.st.pgmux.log_tail(15))
                    self.st.stop.set()
                    return
                if self.st.hung:
                    continue
                self.check_deadline()
                self.check_backends(conn)
                if polls % 4 == 0:
                    self.check_servers(conn)

    def check_deadline(self) -> None:
        now = time.monotonic()
        for w in self.st.workers:
            busy = w.busy
            if busy and now - busy[1] > self.st.args.deadline:
                self.st.hung = True
                hist = "\n      ".join(w.history)
                shows = "\n".join(self.st.pgmux.show(s) for s in ("POOLS", "CLIENTS", "SERVERS"))
                raw = f"\n    raw messages: {' '.join(w.raw_client.trace[-12:])}" if w.raw_client else ""
                self.st.fail(f"HANG: worker {w.wid} ({w.user}) {busy[0]} waited more than "
                             f"{self.st.args.deadline:.0f}s\n    last operations:\n      {hist}{raw}"
                             f"\n    libpq trace (F = sent, B = received):\n      {w.trace.tail(20)}\n{shows}"
                             f"\n    the other workers (application_name tw<worker>[-n] in SHOW CLIENTS):"
                             f"\n{self.others(w, now)}")
                self.st.stop.set()
                for other in self.st.workers:
                    other.abort()
                return

    def others(self, hung: Worker, now: float) -> str:
        """What every other worker is doing, with its last operations and raw messages."""
        lines = []
        for w in self.st.workers:
            if w is hung:
                continue
            busy = w.busy
            doing = f"in {busy[0]} for {now - busy[1]:.1f}s" if busy else "between operations"
            raw = f"; raw messages: {' '.join(w.raw_client.trace[-12:])}" if w.raw_client else ""
            last = " | ".join(h.split(None, 2)[-1] for h in list(w.history)[-4:])
            lines.append(f"      worker {w.wid} ({w.user}) {doing}{raw}; before: {last}")
        return "\n".join(lines)

    def check_backends(self, conn: psycopg.Connection) -> None:
        ph = self.st.phase
        rows = conn.execute(
            "SELECT usename, count(*), count(*) FILTER (WHERE state LIKE 'idle in transaction%%' "
            "AND now() - state_change > interval '10 s') FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND usename = ANY(%s) GROUP BY usename",
            (list(USERS),)).fetchall()
        counts = {u: n for u, n, _ in rows}
        total = sum(counts.values())
        self.peak_backends = max(self.peak_backends, total)
        # In transaction and statement mode a pool whose clients LISTEN has one listener
        # connection beyond pool_size on each event loop holding such clients (pgmux(1),
        # LISTEN/NOTIFY and WORKERS).
        allowed = ph.pool + (phase_loops(ph) if ph.mode != "session" else 0)
        over = [f"{u}: {n} > pool {ph.pool}" for u, n in counts.items() if n > allowed]
        if ph.max_db and total > ph.max_db:
            over.append(f"database: {total} > max_db_connections {ph.max_db}")
        # A closed server's backend takes a moment to exit: only a lasting excess counts.
        self.over_limit_polls = self.over_limit_polls + 1 if over else 0
        if self.over_limit_polls == 3:
            self.st.limit_violations.append(", ".join(over))
        stale = sum(n for _, _, n in rows)
        if stale:
            self.st.idle_tx_violations.append(f"{stale} backend(s) idle in transaction for over 10 s")

    def check_servers(self, conn: psycopg.Connection) -> None:
        """Transaction and statement mode: no server holds more prepared statements than
        max_prepared_statements, and none stays linked to a client while its backend sits idle
        outside a transaction (nothing runs, nothing is owed: it should be back in the pool)."""
        ph = self.st.phase
        if ph.mode == "session":
            return
        try:
            servers = self.st.pgmux.admin("SHOW SERVERS")
        except Exception:
            return  # PAUSE may hold the console briefly; the deadline check covers real hangs
        for s in servers:
            n = int(s.get("prepared_statements") or 0)
            if n > ph.mps:
                self.st.prepared_violations.append(f"server {s.get('remote_pid')} holds {n} > {ph.mps}")
        linked = [int(s["remote_pid"]) for s in servers  # pinned ones hold a lock or a temporary table
                  if s.get("state") == "active" and s.get("remote_pid") and s.get("pinned") != "1"]
        idle = conn.execute("SELECT pid, round(extract(epoch FROM now() - state_change)) FROM pg_stat_activity "
                            "WHERE pid = ANY(%s) AND state = 'idle' AND now() - state_change > interval '5 s'",
                            (linked,)).fetchall()
        for pid, secs in idle:
            if pid not in self.pinned:
                self.pinned.add(pid)
                self.st.pinned_violations.append(f"backend {pid} idle for {secs:.0f}s while its server is linked")


# ---------------------------------------------------------------------------------------------
# Running a phase
# ---------------------------------------------------------------------------------------------

class Checks:
    """PASS/FAIL lines; the tally ends the output."""

    def __init__(self):
        self.passed = self.failed = 0
        self.failed_phases: list[Phase] = []

    def check(self, ok: bool, text: str, phase: Phase | None = None) -> bool:
        print(f"{'PASS' if ok else 'FAIL'}  {text}", flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            if phase is not None and phase not in self.failed_phases:
                self.failed_phases.append(phase)
        return ok


# pgmux's `workers` per phase, cycled by phase index (--loops): event loops of one process.
LOOPS = [2, 1]


def phase_loops(ph: Phase) -> int:
    return LOOPS[ph.index % len(LOOPS)]


def phase_settings(ph: Phase) -> dict[str, object]:
    s: dict[str, object] = {"pool_mode": ph.mode, "default_pool_size": ph.pool,
                            "max_prepared_statements": ph.mps, "auth_type": ph.auth,
                            "workers": phase_loops(ph)}
    if phase_loops(ph) > 1:
        # Every loop takes clients, and as clients come and go loop 0 levels them: clients move
        # between loops under the chaos too (the default, load, would gather this light load on one).
        s["worker_placement"] = "even"
    if ph.max_db:
        s["max_db_connections"] = ph.max_db
    return s


def run_phase(ph: Phase, args, cluster: Cluster, binary: Path, tmp: Path,
              checks: Checks, totals: collections.Counter, outdir: Path) -> None:
    log(f"{ph.describe()} pgmux workers={phase_loops(ph)}")
    pgmux = Pgmux(binary, tmp, cluster.port)
    pgmux.write_config(phase_settings(ph))
    try:
        pgmux.start()
    except RuntimeError as e:
        checks.check(False, f"[{ph.index}] pgmux starts: {e}", ph)
        pgmux.stop()
        return
    st = PhaseState(ph, args, pgmux, cluster, tmp)
    try:
        base_fds, base_rss = pgmux.fds(), pgmux.rss_kb()
        st.workers = [Worker(i + 100 * ph.index, st) for i in range(ph.workers)]
        clear_rows(cluster, st.workers)
        monitor, chaos = Monitor(st), Chaos(st)
        for t in st.workers + [monitor, chaos]:
            t.start()
        st.stop.wait(ph.seconds)
        st.stop.set()
        for t in st.workers + [chaos]:
            t.join(args.deadline + 5)
        st.monitor_stop.set()
        monitor.join(5)
        stuck = [w.wid for w in st.workers if w.is_alive()]
        time.sleep(2)  # servers go back to the pool, backends of closed servers exit
        end_checks(st, checks, base_fds, base_rss, stuck, monitor.peak_backends)
    finally:
        totals.update(st.ops)
        if ph in checks.failed_phases:
            save_logs(outdir, f"phase{ph.index}", pgmux, cluster)
        pgmux.stop()
    if ph in checks.failed_phases:
        print(f"    replay: make torture TORTURE_ARGS=\"{replay_args(args, ph)}\"", flush=True)


def replay_args(args, ph: Phase) -> str:
    return (f"--seed {args.seed} --phase {ph.index} --seconds {ph.seconds:.0f}"
            f"{' --quick' if args.quick else ''}{'' if args.tls else ' --no-tls'}")


def clear_rows(cluster: Cluster, workers: list[Worker]) -> None:
    with cluster.connect() as c:
        c.execute("DELETE FROM rows WHERE w = ANY(%s)", ([w.wid for w in workers],))


def end_checks(st: PhaseState, checks: Checks, base_fds: int, base_rss: int,
               stuck: list[int], peak: int) -> None:
    ph, pgmux, tag = st.phase, st.pgmux, f"[{st.phase.index}]"
    nops = sum(v for k, v in st.ops.items() if not k.startswith("chaos_"))
    checks.check(not st.failures and not stuck,
                 f"{tag} workload: {nops} operations, {len(st.failures)} failures"
                 f"{f', workers still blocked: {stuck}' if stuck else ''}", ph)
    checks.check(st.died is None and pgmux.alive(), f"{tag} pgmux alive{f': {st.died}' if st.died else ''}", ph)
    limit = f"pool {ph.pool} per user" + (f", {ph.max_db} per database" if ph.max_db else "")
    checks.check(not st.limit_violations, f"{tag} backends within limits ({limit}; peak {peak} in all)"
                 + (f": {st.limit_violations[0]}" if st.limit_violations else ""), ph)
    if ph.mode != "session":
        checks.check(not st.prepared_violations, f"{tag} prepared statements per server <= {ph.mps}"
                     + (f": {st.prepared_violations[0]}" if st.prepared_violations else ""), ph)
        checks.check(not st.pinned_violations, f"{tag} no server kept by a client with nothing running"
                     + (f": {len(st.pinned_violations)}, e.g. {st.pinned_violations[0]}"
                        if st.pinned_violations else ""), ph)
    if not pgmux.alive():
        return
    with st.cluster.connect() as c:
        idle = c.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = ANY(%s) "
                         "AND state LIKE 'idle in transaction%%'", (list(USERS),)).fetchone()[0]
        rows = c.execute("SELECT w, k, v FROM rows WHERE w = ANY(%s)", ([w.wid for w in st.workers],)).fetchall()
    checks.check(idle == 0 and not st.idle_tx_violations,
                 f"{tag} no backend left idle in transaction (now {idle})"
                 + (f"; during the phase: {st.idle_tx_violations[0]}" if st.idle_tx_violations else ""), ph)
    held: dict[int, dict[int, int]] = collections.defaultdict(dict)
    for w, k, v in rows:
        held[w][k] = v
    wrong = [w.wid for w in st.workers if held.get(w.wid, {}) != w.model]
    checks.check(not wrong, f"{tag} table contents equal the workers' models"
                 + (f" (not for workers {wrong[:5]})" if wrong else ""), ph)
    checks.check(*fresh_client_check(st), ph)
    if phase_loops(ph) > 1:
        # Clients moved between the loops by worker_placement's leveling, under the chaos above.
        try:
            moved = sum(int(r.get("clients_moved_in") or 0) for r in pgmux.admin("SHOW THREADS"))
            log(f"{tag} clients moved between loops: {moved}")
        except Exception as e:
            log(f"{tag} SHOW THREADS: no answer ({e!r})")
    fds, rss = pgmux.fds(), pgmux.rss_kb()
    fd_limit = base_fds + ph.pool * len(USERS) + 4
    checks.check(fds <= fd_limit and rss <= base_rss + 40 * 1024,
                 f"{tag} pgmux fds {fds} <= {fd_limit} (start {base_fds}), RSS {rss // 1024} MB <= start "
                 f"{base_rss // 1024} MB + 40 MB", ph)


def fresh_client_check(st: PhaseState) -> tuple[bool, str]:
    tag = f"[{st.phase.index}]"
    t0 = time.monotonic()
    try:
        user = list(USERS)[0]
        with RawClient(st.pgmux.port, user, USERS[user], DB, 5) as c:
            ok = c.simple_query("SELECT 'fresh' AS x") == [{"x": "fresh"}]
        waiting = sum(int(p.get("cl_waiting") or 0) for p in st.pgmux.admin("SHOW POOLS"))
        return ok and waiting == 0, (f"{tag} a fresh client is served in {time.monotonic() - t0:.2f}s, "
                                     f"{waiting} client(s) waiting")
    except Exception as e:
        return False, f"{tag} a fresh client is served: {e!r}"


def save_logs(outdir: Path, name: str, pgmux: Pgmux, cluster: Cluster) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / f"{name}-pgmux.log").write_text(pgmux.log_tail(3000))
    (outdir / f"{name}-postgres.log").write_text(cluster.log_tail(500))
    shutil.copy(pgmux.dir / "pgmux.ini", outdir / f"{name}-pgmux.ini")
    print(f"    logs: {outdir.relative_to(ROOT) if outdir.is_relative_to(ROOT) else outdir}", flush=True)


# ---------------------------------------------------------------------------------------------
# pgbench matrix
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class BenchCase:
    """One pgbench configuration, run on a fresh pgmux and then twice again on its warm pool."""
    pool: int
    script: str    # -S | -N | tpcb
    clients: int
    proto: str     # -M prepared | extended
    jobs: int

    @property
    def id(self) -> str:
        return f"p{self.pool}:{self.script}:{self.proto}:c{self.clients}:j{self.jobs}"


def pgbench_cases(quick: bool) -> list[BenchCase]:
    """-S/-N/TPC-B x -c 1..50 x pool 1..5 x -M prepared/extended x -j = -c and -j 1.
    --quick keeps bug 1's reproduction: pool 3, -N -M prepared, -c 12 -j 1 (with the fix reverted
    it hung on every run measured; -c 4 -j 1 only on some) and -c 4 -j 4."""
    if quick:
        return [BenchCase(3, "-N", 12, "prepared", 1), BenchCase(3, "-N", 4, "prepared", 4)]
    cases = []
    for pool in range(1, 6):
        for clients in sorted({1, pool, pool + 1, 2 * pool + 1, 12, 30, 50}):
            for script in ("-S", "-N", "tpcb"):
                for proto in ("prepared", "extended"):
                    for jobs in sorted({clients, 1}, reverse=True):
                        cases.append(BenchCase(pool, script, clients, proto, jobs))
    return cases


def run_pgbench_matrix(args, cluster: Cluster, binary: Path, tmp: Path, checks: Checks, outdir: Path) -> None:
    env = dict(os.environ, PGPASSWORD=USERS["tort_a"], PGCONNECT_TIMEOUT="10")
    subprocess.run(["pgbench", "-q", "-i", "-s", "1", "-h", "127.0.0.1", "-p", str(cluster.port),
                    "-U", "tort_a", DB], env=env, check=True, capture_output=True)
    cases = [c for c in pgbench_cases(args.quick and not args.case)
             if not args.case or fnmatch.fnmatchcase(c.id, args.case)]
    if not cases:
        sys.exit(f"torture: no pgbench case {args.case} (ids look like p3:-N:prepared:c4:j1)")
    log(f"pgbench: {len(cases)} cases, each on a fresh pgmux (transaction mode, "
        f"max_prepared_statements 100, SCRAM) and twice again warm, -T {args.bench_seconds}")
    for case in cases:
        ph = Phase(0, args.seed, "transaction", case.pool, 100, "scram-sha-256", 0, case.clients)
        pgmux = Pgmux(binary, tmp, cluster.port)
        pgmux.write_config(phase_settings(ph))
        pgmux.start()
        try:
            for temp in ("fresh", "warm", "warm again"):
                cmd = (["pgbench", "-n", "-M", case.proto, "-c", str(case.clients), "-j", str(case.jobs),
                        "-T", str(args.bench_seconds)] + ([case.script] if case.script != "tpcb" else [])
                       + ["-h", "127.0.0.1", "-p", str(pgmux.port), "-U", "tort_a", DB])
                ok, detail = run_pgbench(cmd, env, args.bench_seconds + 15, pgmux)
                if not checks.check(ok, f"pgbench {case.id} ({temp}): {detail}"):
                    save_logs(outdir, f"pgbench-{case.id.replace(':', '_')}", pgmux, cluster)
                    print(f"    replay: make torture TORTURE_ARGS=\"--pgbench --case {case.id}\"", flush=True)
                    break
        finally:
            pgmux.stop()


def run_pgbench(cmd: list[str], env: dict, timeout: float, pgmux: Pgmux) -> tuple[bool, str]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        shows = "\n".join(pgmux.show(s) for s in ("POOLS", "SERVERS"))
        proc.kill()
        proc.communicate()
        return False, f"HANG: no end within {timeout:.0f}s\n{shows}"
    tps = re.search(r"tps = ([0-9.]+)", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    if proc.returncode != 0 or not tps or (failed and failed.group(1) != "0"):
        tail = (err.strip().splitlines() or ["?"])[-1]
        return False, f"exit {proc.returncode}: {tail}"
    return True, f"{float(tps.group(1)):.0f} tps"


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

def find_binary(arg: str | None) -> Path:
    if arg:
        return Path(arg).resolve()
    built = [p for p in (ROOT / ".build/release/pgmux", ROOT / ".build/debug/pgmux") if p.exists()]
    if not built:
        sys.exit("torture: no pgmux binary: run `swift build -c release` (or give --pgmux PATH)")
    return max(built, key=lambda p: p.stat().st_mtime)  # the newer build when both exist


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Randomized, seeded, differential stress test of pgmux.")
    ap.add_argument("--minutes", type=float, help="total run time (default 5)")
    ap.add_argument("--seconds", type=float, help="total run time in seconds")
    ap.add_argument("--seed", type=int, default=None, help="seed (default: random, always printed)")
    ap.add_argument("--phase", type=int, default=None, help="run only this phase (replay)")
    ap.add_argument("--quick", action="store_true", help="3 phases of ~16 s plus the pgbench repro of bug 1 (make test)")
    ap.add_argument("--pgbench", action="store_true", help="the pgbench matrix instead of the workload")
    ap.add_argument("--case", help="only the pgbench cases matching this id pattern (p3:-N:prepared:c4:j1, 'p3:*')")
    ap.add_argument("--pgmux", help="pgmux binary (default: the newer of .build/{release,debug}/pgmux); "
                    "a PgBouncer binary works too, to check the tool itself")
    ap.add_argument("--deadline", type=float, default=20, help="an operation slower than this is a hang")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--loops", default="2,1",
                    help="pgmux's workers setting per phase, cycled (default 2,1: phases alternate two event loops and one)")
    ap.add_argument("--no-tls", dest="tls", action="store_false",
                    help="every psycopg connection in plaintext (by default a quarter use TLS)")
    args = ap.parse_args()
    try:
        LOOPS[:] = [int(x) for x in args.loops.split(",") if x.strip()]
    except ValueError:
        sys.exit("torture: --loops takes a comma list of integers")
    if not LOOPS or min(LOOPS) < 1:
        sys.exit("torture: --loops takes a comma list of integers")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 10**6)
    total = args.seconds if args.seconds else (args.minutes or (0.8 if args.quick else 5.0)) * 60
    args.total = total
    args.bench_seconds = 1
    args.pgbench = args.pgbench or args.case is not None
    return args


def main() -> int:
    args = parse_args()
    binary = find_binary(args.pgmux)
    if args.phase is not None:
        if args.phase < 0 or (args.quick and args.phase >= len(QUICK_COMBOS)):
            sys.exit("torture: no such phase")
        phases = [phase_at(args.seed, args.phase, args.quick)]
        phases[0].seconds = args.total
    else:
        phases = plan_phases(args.seed, args.quick, args.total)
    log(f"seed {args.seed}; pgmux {binary.relative_to(ROOT) if binary.is_relative_to(ROOT) else binary}")
    tmp = Path(tempfile.mkdtemp(prefix="pgmux-torture-"))
    os.chmod(tmp, 0o755)
    outdir = ROOT / "results" / f"torture-{time.strftime('%Y%m%d-%H%M%S')}"
    cluster = Cluster(tmp)
    checks = Checks()
    totals: collections.Counter[str] = collections.Counter()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t0 = time.monotonic()
    try:
        cluster.start()
        if args.pgbench:
            run_pgbench_matrix(args, cluster, binary, tmp, checks, outdir)
        else:
            for ph in phases:
                run_phase(ph, args, cluster, binary, tmp, checks, totals, outdir)
            if args.quick and args.phase is None:
                run_pgbench_matrix(args, cluster, binary, tmp, checks, outdir)
    except KeyboardInterrupt:
        print("torture: interrupted", flush=True)
        checks.failed += 1
    finally:
        cluster.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    if totals:
        print("operations: " + ", ".join(f"{k} {v}" for k, v in sorted(totals.items())))
    log(f"done in {time.monotonic() - t0:.0f}s, seed {args.seed}")
    if checks.failed:
        case = f" --case '{args.case}'" if args.case else ""
        again = (f"--pgbench{case}" if args.pgbench else
                 f"--seed {args.seed}{' --quick' if args.quick else f' --seconds {args.total:.0f}'}")
        print(f"FAILED with seed {args.seed}; replay all: make torture TORTURE_ARGS=\"{again}\"")
    print(f"{checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
