#!/usr/bin/env bash
# Builds a PgBouncer release from source into .pgbouncer/<version>/pgbouncer (gitignored, never
# committed), as a reference for `make bench BENCH_ARGS="--pgbouncer .pgbouncer/<version>/pgbouncer"`.
#
#   scripts/build-pgbouncer.sh [VERSION] [SOURCE]
#
# VERSION defaults to 1.25.2. SOURCE is one of
#   (nothing)        https://www.pgbouncer.org/downloads/files/VERSION/pgbouncer-VERSION.tar.gz
#   a URL            a release tarball to download (curl or wget)
#   a file           a release tarball already here (pgbouncer-VERSION.tar.gz)
#   a directory      a git repository of PgBouncer (bare or not): its tag pgbouncer_<VERSION with
#                    dots as underscores> is exported with `git archive` and ./autogen.sh is run,
#                    which needs autoconf, automake and libtool
# Missing Debian build dependencies (libevent-dev libc-ares-dev libssl-dev pkg-config
# build-essential, plus autoconf automake libtool for a git source) are installed with apt-get when
# run as root. Configured with --with-cares --with-openssl; only the binary is built (`make
# pgbouncer`: the manual pages would need pandoc). The build tree is left in
# .pgbouncer/VERSION/src for reference; running the script again rebuilds from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

case "${1:-}" in -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
version=${1:-1.25.2}
source=${2:-https://www.pgbouncer.org/downloads/files/$version/pgbouncer-$version.tar.gz}
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] ||
  { echo "build-pgbouncer.sh: VERSION must look like 1.25.2, not '$version'" >&2; exit 2; }

kind=tarball
if [ -d "$source" ]; then
  git -C "$source" rev-parse --git-dir >/dev/null 2>&1 ||
    { echo "build-pgbouncer.sh: $source is a directory but not a git repository" >&2; exit 2; }
  kind=git
fi

want=(libevent-dev libc-ares-dev libssl-dev pkg-config build-essential)
[ $kind = git ] && want+=(autoconf automake libtool)
"$root/scripts/deps.sh" "${want[@]}"   # installs only what is missing (as root)

dest="$root/.pgbouncer/$version"
src="$dest/src"
tmp=$(mktemp -d /tmp/pgbouncer-build-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src"

case $kind in
git)
  tag="pgbouncer_${version//./_}"
  git -C "$source" rev-parse -q --verify "refs/tags/$tag" >/dev/null ||
    { echo "build-pgbouncer.sh: $source has no tag $tag" >&2; exit 1; }
  echo "exporting $tag from $source"
  git -C "$source" archive --format=tar "$tag" | tar -x -C "$tmp/src"
  ;;
tarball)
  tarball=$source
  if [[ "$source" =~ ^(https?|ftp):// ]]; then
    tarball="$tmp/pgbouncer-$version.tar.gz"
    echo "downloading $source"
    if command -v curl >/dev/null; then curl -fsSL -o "$tarball" "$source"
    elif command -v wget >/dev/null; then wget -q -O "$tarball" "$source"
    else echo "build-pgbouncer.sh: curl or wget is needed to download $source" >&2; exit 1
    fi
  fi
  [ -f "$tarball" ] || { echo "build-pgbouncer.sh: no such file: $tarball" >&2; exit 1; }
  tar -x -f "$tarball" -C "$tmp/src" --strip-components=1
  ;;
esac
# the previous build (if any) is replaced only once the new source is here
rm -rf "$src"
mkdir -p "$dest"
mv "$tmp/src" "$src"

cd "$src"
jobs=$(nproc 2>/dev/null || echo 2)
log="$dest/build.log"
: > "$log"
step() {   # runs one build step with its output in build.log, shown when it fails
  echo "  $*"
  "$@" >>"$log" 2>&1 || { tail -n 40 "$log" >&2; echo "build-pgbouncer.sh: '$*' failed (log: $log)" >&2; exit 1; }
}
echo "building PgBouncer $version in $src"
if [ ! -x configure ]; then
  [ -x autogen.sh ] || { echo "build-pgbouncer.sh: neither configure nor autogen.sh in the source" >&2; exit 1; }
  step ./autogen.sh
fi
step ./configure --with-cares --with-openssl
step make -j "$jobs" pgbouncer
install -m 755 pgbouncer "$dest/pgbouncer"
got=$("$dest/pgbouncer" --version | head -n 1)
[ "$got" = "PgBouncer $version" ] ||
  { echo "build-pgbouncer.sh: built binary says '$got', not 'PgBouncer $version'" >&2; exit 1; }
echo "built $dest/pgbouncer:"
"$dest/pgbouncer" --version | sed 's/^/  /'
