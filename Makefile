# pgmux — PostgreSQL connection pooler. `make run` demonstrates it, `make test` runs every test.
PREFIX ?= /usr/local
BINDIR = $(PREFIX)/bin
MANDIR = $(PREFIX)/share/man
SYSCONFDIR ?= $(PREFIX)/etc/pgmux
UNITDIR ?= $(PREFIX)/lib/systemd/system
export PATH := /opt/swift/usr/bin:$(PATH)

.PHONY: all build deps test run bench login-cost loop-cost soak torture tsan fuzz install clean

all: build

deps:
	@scripts/deps.sh

build: deps
	swift build -c release

test: deps
	scripts/test.sh

fuzz: deps
	scripts/fuzz.sh $(FUZZ_SECONDS)

run: build
	scripts/demo.sh

# pgmux vs PgBouncer vs direct on a throwaway cluster; BENCH_ARGS=--quick for a 4-minute run,
# BENCH_ARGS="--pgbouncer /usr/sbin/pgbouncer,.pgbouncer/1.25.2/pgbouncer" compares against each
# binary given (scripts/build-pgbouncer.sh builds one); see scripts/bench.sh for --rounds,
# --duration, --only, --tls-key. Results in results/<timestamp>/.
bench: build
	scripts/deps.sh pgbouncer python3
	scripts/bench.sh $(BENCH_ARGS)

# Instructions per new client connection under callgrind, pgmux against PgBouncer (exact, unlike
# CPU time on a shared machine); LOGIN_COST_ARGS="--pgbouncer PATH[,PATH] --tls --connections N".
login-cost: build
	scripts/deps.sh pgbouncer valgrind
	scripts/login-cost.sh $(LOGIN_COST_ARGS)

# pgmux's work per transaction (callgrind instructions, strace system calls) with workers = 1 and 2
# at a fixed rate: what more loops cost in pgmux's design, apart from the machine;
# LOOP_COST_ARGS="--workers 1,2,4 --rate 300 --clients 50".
loop-cost: build
	scripts/deps.sh valgrind strace
	scripts/loop-cost.sh $(LOOP_COST_ARGS)

# pgmux under mixed load and injected faults on a throwaway cluster, then recovery checks (not part
# of `make test`); SOAK_ARGS=--quick for 1 minute, --minutes N (default 5). Logs in results/soak-*/.
soak: build
	scripts/soak.sh $(SOAK_ARGS)

# Randomized, seeded, differential stress test: psycopg/libpq and raw-protocol clients against
# pgmux in every pool mode, with chaos events; TORTURE_ARGS="--minutes 60 --seed 7", --quick (as
# `make test` runs it), --pgbench (the pgbench matrix), --phase I (replay one phase of a seed).
torture: build
	scripts/torture.sh $(TORTURE_ARGS)

# pgmux built with ThreadSanitizer runs the multi-worker integration tests and a torture run with two
# event loops; any data race fails it. `make test` runs the short form (TSAN_ARGS=--short).
tsan: deps
	scripts/tsan.sh $(TSAN_ARGS)

install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(SYSCONFDIR)
	install -m 755 .build/release/pgmux $(DESTDIR)$(BINDIR)/pgmux
	install -m 644 man/pgmux.1 $(DESTDIR)$(MANDIR)/man1/pgmux.1
	install -m 644 man/pgmux.ini.5 $(DESTDIR)$(MANDIR)/man5/pgmux.ini.5
	install -m 644 etc/pgmux.ini $(DESTDIR)$(SYSCONFDIR)/pgmux.ini.sample
	install -m 644 etc/userlist.txt $(DESTDIR)$(SYSCONFDIR)/userlist.txt.sample
	install -d $(DESTDIR)$(UNITDIR)
	install -m 644 etc/pgmux.service etc/pgmux.socket $(DESTDIR)$(UNITDIR)/

clean:
	rm -rf .build
