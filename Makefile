# pgmux — PostgreSQL connection pooler. `make run` demonstrates it, `make test` runs every test.
PREFIX ?= /usr/local
BINDIR = $(PREFIX)/bin
MANDIR = $(PREFIX)/share/man
SYSCONFDIR ?= $(PREFIX)/etc/pgmux
export PATH := /opt/swift/usr/bin:$(PATH)

.PHONY: all build deps test run install clean

all: build

deps:
	@scripts/deps.sh

build: deps
	swift build -c release

test: deps
	scripts/test.sh

run: build
	scripts/demo.sh

install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(SYSCONFDIR)
	install -m 755 .build/release/pgmux $(DESTDIR)$(BINDIR)/pgmux
	install -m 644 man/pgmux.1 $(DESTDIR)$(MANDIR)/man1/pgmux.1
	install -m 644 man/pgmux.ini.5 $(DESTDIR)$(MANDIR)/man5/pgmux.ini.5
	install -m 644 etc/pgmux.ini $(DESTDIR)$(SYSCONFDIR)/pgmux.ini.sample
	install -m 644 etc/userlist.txt $(DESTDIR)$(SYSCONFDIR)/userlist.txt.sample

clean:
	rm -rf .build
