#!/usr/bin/env bash
# Build a free-threaded CPython 3.13 (3.13t) from Debian's python3.13 source package and cache it
# outside the clone. Prints the path of the python3.13t binary on its last line of stdout.
# Reuses the cache when a working interpreter is already there.
# With --gil it builds a standard (GIL) 3.13 instead: the fallback for machines without one.
set -euo pipefail

GIL_BUILD=0
[ "${1:-}" = "--gil" ] && GIL_BUILD=1

CACHE_ROOT="${PYTEST_THREADPOOL_CACHE:-$HOME/.cache/pytest-threadpool}"
mkdir -p "$CACHE_ROOT"

log() { echo "[build-python] $*" >&2; }

# Reuse any cached build that works and really has the GIL disabled.
if [ "$GIL_BUILD" = 1 ]; then
  SUFFIX="" ; CONFIGURE_FLAG="" ; EXPECT_FT=0
else
  SUFFIX="t"; CONFIGURE_FLAG="--disable-gil"; EXPECT_FT=1
fi
CHECK="import sys, sysconfig, ssl, zlib, ctypes, sqlite3, bz2, lzma, venv, ensurepip; assert bool(sysconfig.get_config_var('Py_GIL_DISABLED')) == bool($EXPECT_FT)"
for py in "$CACHE_ROOT"/cpython-3.13.*"$SUFFIX"/bin/python3.13"$SUFFIX"; do
  [ -x "$py" ] || continue
  if "$py" -c "$CHECK" 2>/dev/null; then
    log "using cached $py"
    echo "$py"
    exit 0
  fi
done

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

SRC_LIST=/etc/apt/sources.list.d/pytest-threadpool-deb-src.list
if ! grep -qs '^deb-src' "$SRC_LIST"; then
  # Use the same archive the machine's Debian sources already use; never touch debian.sources.
  mirror=$( { sed -nE 's/^URIs:[[:space:]]*([^[:space:]]+).*/\1/p' /etc/apt/sources.list.d/debian.sources;
              sed -nE 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/p' /etc/apt/sources.list; } 2>/dev/null \
           | grep -v security | head -n1 || true)
  mirror="${mirror:-http://deb.debian.org/debian}"
  log "adding deb-src for $mirror (stable, testing) in $SRC_LIST"
  printf 'deb-src %s stable main\ndeb-src %s testing main\n' "$mirror" "$mirror" | $SUDO tee "$SRC_LIST" >/dev/null
fi

log "apt-get update and build dependencies"
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
  build-essential dpkg-dev xz-utils libssl-dev zlib1g-dev libffi-dev libsqlite3-dev libbz2-dev \
  liblzma-dev libreadline-dev libncurses-dev libgdbm-dev uuid-dev >&2

WORK=$(mktemp -d "$CACHE_ROOT/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
log "downloading python3.13 source package"
apt-get source --download-only python3.13 >&2
orig=$(ls python3.13_*.orig.tar.* | head -n1)
version=$(echo "$orig" | sed -E 's/^python3\.13_([0-9]+(\.[0-9]+)*).*/\1/')
tar -xf "$orig"
srcdir=$(find . -maxdepth 1 -type d -name 'Python-3.13*' | head -n1)
prefix="$CACHE_ROOT/cpython-${version}${SUFFIX}"
log "building CPython $version ${CONFIGURE_FLAG:-(GIL)} into $prefix"
cd "$srcdir"
./configure $CONFIGURE_FLAG --prefix="$prefix" --with-ensurepip=install >"$WORK/configure.log" 2>&1 \
  || { tail -n 50 "$WORK/configure.log" >&2; exit 1; }
make -j"$(nproc)" >"$WORK/make.log" 2>&1 || { tail -n 50 "$WORK/make.log" >&2; exit 1; }
make install >"$WORK/install.log" 2>&1 || { tail -n 50 "$WORK/install.log" >&2; exit 1; }
py="$prefix/bin/python3.13${SUFFIX}"
"$py" -c "$CHECK"
log "built $py"
echo "$py"
