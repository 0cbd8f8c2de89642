#!/usr/bin/env bash
# Provide a standard (GIL) CPython 3.14 or 3.15 on this Debian bookworm machine from Debian
# *testing*'s binary packages, cached outside the clone.
#
#   scripts/provide-python-testing.sh 3.14      (or 3.15)
#
# Prints the path of the interpreter on its last line of stdout; progress goes to stderr.
# Reuses the cache when a verified, working interpreter is already there (well under a second).
#
# How: a private apt state (its own sources list pointing at testing, its own lists and cache
# under the cache root; the machine's apt sources are never touched) downloads the interpreter's
# packages and the libraries they link (testing's libc6 included), `dpkg-deb -x` unpacks them into
# a fresh root, and patchelf points the interpreter at that root's dynamic loader and, through
# DT_RPATH (which, unlike RUNPATH, also covers the lib-dynload modules' own dependencies), at its
# libraries. Absolute /usr paths that would reach bookworm's files are pointed into the root.
# The root is built in a temporary folder and renamed into place, and it is only used once a
# marker written after every check says it was verified.
set -euo pipefail

log() { echo "[provide-python-testing] $*" >&2; }
die() { log "error: $*"; exit 1; }

usage="usage: $0 3.14|3.15"
[ $# = 1 ] || die "$usage"
VER="$1"
[[ "$VER" =~ ^3\.[0-9]+$ ]] || die "$usage"

CACHE_ROOT="${PYTEST_THREADPOOL_CACHE:-$HOME/.cache/pytest-threadpool}"
mkdir -p "$CACHE_ROOT"
CACHE_ROOT=$(cd "$CACHE_ROOT" && pwd -P)   # the real path: RPATH and the maps check use it
case "$CACHE_ROOT" in
  *:*|*$'\n'*) die "cache root '$CACHE_ROOT' holds ':' or a newline, which an RPATH cannot carry";;
esac

MARKER=.provide-python-testing-verified
PREFIX="python$VER-testing-"

# The check a root must pass before it is used: run as "$py -I -c "$CHECK" ROOT VER".
# shellcheck disable=SC2016
CHECK='
import os, re, sys, sysconfig, importlib
root, want = sys.argv[1], sys.argv[2]
bad = []
got = "%d.%d" % sys.version_info[:2]
if got != want:
    sys.exit("version %s, wanted %s" % (got, want))
if sysconfig.get_config_var("Py_GIL_DISABLED") or not sys._is_gil_enabled():
    bad.append("free-threaded build")
if os.path.realpath(sys.base_prefix) != os.path.join(root, "usr"):
    bad.append("sys.base_prefix %s is not in the root" % sys.base_prefix)
dyn = os.path.join(sysconfig.get_path("platstdlib"), "lib-dynload")
if not os.path.realpath(dyn).startswith(root + "/"):
    bad.append("lib-dynload %s is not in the root" % dyn)
mods = sorted(f.split(".", 1)[0] for f in os.listdir(dyn) if f.endswith(".so"))
if len(mods) < 20:
    bad.append("only %d lib-dynload modules" % len(mods))
for m in mods:
    try:
        importlib.import_module(m)
    except Exception as e:
        bad.append("lib-dynload module %s: %s: %s" % (m, type(e).__name__, e))
import venv, ensurepip
whl = sysconfig.get_config_var("WHEEL_PKG_DIR") or ""
if not os.path.realpath(whl).startswith(root + "/"):
    bad.append("WHEEL_PKG_DIR %r is outside the root" % whl)
elif not any(f.startswith("pip-") and f.endswith(".whl") for f in os.listdir(whl)):
    bad.append("no pip wheel in WHEEL_PKG_DIR %s" % whl)
inc = sysconfig.get_paths()["include"]
if not os.path.isfile(os.path.join(inc, "Python.h")):
    bad.append("no Python.h in %s" % inc)
try:
    with open(os.path.join(inc, "pyconfig.h")) as f:
        if "SIZEOF_VOID_P" not in f.read():
            bad.append("%s/pyconfig.h is only a wrapper" % inc)
except OSError as e:
    bad.append("pyconfig.h: %s" % e)
with open("/proc/self/maps") as f:
    for line in f:
        parts = line.split(None, 5)
        if len(parts) < 6 or not parts[5].startswith("/"):
            continue                        # anonymous, [vdso], [vsyscall], [heap], [stack]
        path = parts[5].rstrip("\n").removesuffix(" (deleted)")
        if re.search(r"\.so(\.|$)", os.path.basename(path)) and \
                not os.path.realpath(path).startswith(root + "/"):
            bad.append("library from outside the root is mapped: %s" % path)
if bad:
    sys.exit("\n".join(sorted(set(bad))))
'

# check_root ROOT: quiet unless it fails; then the reasons go to stderr.
check_root() {
  local root="$1" py="$1/usr/bin/python$VER" out
  [ -x "$py" ] || { log "$root: no $py"; return 1; }
  out=$("$py" -I -c "$CHECK" "$root" "$VER" 2>&1 >/dev/null) || {
    printf '%s\n' "$out" | sed 's/^/  /' >&2; return 1; }
}

use_cached() {
  local root
  while IFS= read -r root; do        # newest Debian version first
    [ -f "$root/$MARKER" ] || continue
    if check_root "$root"; then
      log "using cached $root/usr/bin/python$VER"
      echo "$root/usr/bin/python$VER"
      exit 0
    fi
    log "cached $root fails its check; it will be rebuilt"
  done < <(for d in "$CACHE_ROOT/$PREFIX"*; do [ -d "$d" ] && echo "$d"; done | sort -V -r)
}

use_cached

# One build at a time (the private apt state is shared by every version).
exec 9>"$CACHE_ROOT/.provide-python-testing.lock"
flock 9
use_cached   # another run may have built it while this one waited

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

if ! command -v patchelf >/dev/null 2>&1; then
  log "installing patchelf (bookworm)"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends patchelf >&2 \
    || { $SUDO apt-get update -qq >&2 &&
         DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends patchelf >&2; }
fi
command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb is missing"

# --- private apt state pointing at testing -------------------------------------------------
APT_DIR="$CACHE_ROOT/apt-testing"
mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial" "$APT_DIR/empty.d"
: >"$APT_DIR/status"          # an empty dpkg status: the host's installed packages stay out of it
: >"$APT_DIR/preferences"     # and so do the host's pins
mirror=$( { sed -nE 's/^URIs:[[:space:]]*([^[:space:]]+).*/\1/p' /etc/apt/sources.list.d/*.sources;
            sed -nE 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/p' \
              /etc/apt/sources.list /etc/apt/sources.list.d/*.list; } 2>/dev/null \
          | grep -E '/debian/?$' | head -n1 || true)
mirror="${mirror:-http://deb.debian.org/debian}"
ARCH=$(dpkg --print-architecture)
echo "deb [arch=$ARCH] $mirror testing main" >"$APT_DIR/sources.list"
APT_OPTS=(-o "Dir::Etc::sourcelist=$APT_DIR/sources.list" -o "Dir::Etc::sourceparts=$APT_DIR/empty.d"
          -o "Dir::State::Lists=$APT_DIR/lists" -o "Dir::Cache=$APT_DIR/cache"
          -o "Dir::State::status=$APT_DIR/status"
          -o "Dir::Etc::preferences=$APT_DIR/preferences" -o "Dir::Etc::preferencesparts=$APT_DIR/empty.d"
          -o Acquire::Languages=none)
[ "$(id -u)" = 0 ] && APT_OPTS+=(-o APT::Sandbox::User=root)   # _apt cannot reach a private $HOME

log "apt-get update of the private testing state ($mirror)"
apt-get "${APT_OPTS[@]}" -qq update >&2 || die "apt-get update for testing ($mirror) failed"

# Names that testing knows (real packages with a candidate), from those given.
known() { apt-cache "${APT_OPTS[@]}" show --no-all-versions "$@" 2>/dev/null | sed -n 's/^Package: //p' | sort -u; }

# The interpreter's own packages; a name testing lacks is retried with/without a t64 suffix.
want=("python$VER-minimal" "libpython$VER-minimal" "libpython$VER-stdlib" "python$VER"
      "libpython$VER" "libpython$VER-dev" "python$VER-dev" "python$VER-venv"
      python3-pip-whl python3-setuptools-whl)
have=$(known "${want[@]}" "${want[@]/%/t64}")
seeds=(); missing=()
for p in "${want[@]}"; do
  if grep -qxF "$p" <<<"$have"; then seeds+=("$p")
  elif grep -qxF "${p}t64" <<<"$have"; then seeds+=("${p}t64")
  else missing+=("$p"); fi
done
[ ${#missing[@]} = 0 ] || die "Debian testing ($mirror) has no package named: ${missing[*]} (nor with a t64 suffix); is $VER still in testing?"

# The libraries: the closure of their Depends/Pre-Depends over lib*/zlib* packages (testing's own
# names, t64 suffixes included; first alternative of a group; a virtual name's first provider).
# -dev packages and glibc's extra gconv modules (looked up under the host's path) are left out.
deps_of() {
  apt-cache "${APT_OPTS[@]}" depends --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances "$@" 2>/dev/null | awk '
    /^[^ ]/ { grp = 0; prov = 0; next }
    /^ [ |](Pre)?Depends: / {
      first = !grp; grp = (substr($0, 2, 1) == "|"); name = $2
      prov = first && name ~ /^</
      if (first && !prov) print name
      next }
    /^    [^ ]/ { if (prov) { print $1; prov = 0 } next }
    { prov = 0 }'
}
declare -A seen=()
for p in "${seeds[@]}"; do seen[$p]=1; done
libs=(); frontier=("${seeds[@]}")
while [ ${#frontier[@]} -gt 0 ]; do
  next=()
  for d in $(deps_of "${frontier[@]}" | grep -E '^(lib|zlib)' | grep -vE -- '-dev$|^libc-gconv-modules' | sort -u); do
    [ -n "${seen[$d]:-}" ] && continue
    seen[$d]=1; libs+=("$d"); next+=("$d")
  done
  frontier=("${next[@]+"${next[@]}"}")
done
for l in libc6 libgcc-s1; do   # the loader and libc must come from testing too
  [ -n "${seen[$l]:-}" ] || { libs+=("$l"); seen[$l]=1; }
done

# Temporary folders of killed runs (none runs now: this one holds the lock).
for stale in "$CACHE_ROOT"/.tmp-python*; do [ -d "$stale" ] && rm -rf "$stale"; done
WORK=$(mktemp -d "$CACHE_ROOT/.tmp-python$VER.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM HUP
mkdir "$WORK/debs" "$WORK/root"
log "downloading ${#seeds[@]} python and ${#libs[@]} library packages from testing: ${libs[*]}"
if ! (cd "$WORK/debs" && apt-get "${APT_OPTS[@]}" -qq download "${libs[@]}" "${seeds[@]}" >&2); then
  die "apt-get download from testing failed for one of: ${libs[*]} ${seeds[*]} (a renamed package, e.g. a t64 transition, or the archive is unreachable)"
fi

pyver=$(dpkg-deb -f "$WORK/debs/python${VER}_"*.deb Version)
ROOT="$CACHE_ROOT/$PREFIX${pyver//:/_}"
TMPROOT="$WORK/root"
log "unpacking python$VER $pyver into $ROOT (built in $TMPROOT)"
for p in "${libs[@]}" "${seeds[@]}"; do        # libraries first, python$VER-venv last
  f=$(ls "$WORK/debs/${p}_"*.deb 2>/dev/null | head -n1)
  [ -n "$f" ] || die "apt-get download did not leave a .deb for $p"
  dpkg-deb -x "$f" "$TMPROOT"
done

# --- make it run from the root --------------------------------------------------------------
PY_T="$TMPROOT/usr/bin/python$VER"
[ -x "$PY_T" ] || die "the packages hold no usr/bin/python$VER"
libc=$(ls "$TMPROOT"/usr/lib/*/libc.so.6 2>/dev/null | head -n1)
[ -n "$libc" ] || die "testing's libc6 left no usr/lib/<multiarch>/libc.so.6"
MULTIARCH=$(basename "$(dirname "$libc")")
LIBDIR="$ROOT/usr/lib/$MULTIARCH"
loader=$(basename "$(patchelf --print-interpreter "$PY_T")")
[ -e "$TMPROOT/usr/lib/$MULTIARCH/$loader" ] || die "no $loader in testing's libc6"
patchelf --set-interpreter "$LIBDIR/$loader" --force-rpath --set-rpath "$LIBDIR" "$PY_T"

# Every shared library the interpreter, lib-dynload and the root's libraries need must be in
# the root (a name missing here would silently come from the host through ld.so.cache).
missing=()
for so in $( { for f in "$PY_T" "$TMPROOT/usr/lib/python$VER"/lib-dynload/*.so \
                        "$TMPROOT/usr/lib/$MULTIARCH"/*.so*; do
                 [ -f "$f" ] && [ ! -L "$f" ] && patchelf --print-needed "$f" 2>/dev/null
               done; } | sort -u); do
  [ -e "$TMPROOT/usr/lib/$MULTIARCH/$so" ] || [ "$so" = "$loader" ] || missing+=("$so")
done
[ ${#missing[@]} = 0 ] || die "libraries needed but not provided by the downloaded packages: ${missing[*]} (add the testing package that ships them)"

# Absolute symlinks (e.g. sitecustomize.py -> /etc/python$VER/...) would reach the host.
while IFS= read -r -d '' link; do
  target=$(readlink "$link")
  case "$target" in /*) ln -sfn "$ROOT$target" "$link";; esac
done < <(find "$TMPROOT" -type l -print0)

# _sysconfigdata: WHEEL_PKG_DIR points at bookworm's /usr/share/python-wheels (pip 23.0.1, which
# fails on 3.14), and the include/library folders at the host's /usr; point them into the root.
root_sed=$(printf '%s' "$ROOT" | sed 's/[\\&#]/\\&/g')
for f in "$TMPROOT/usr/lib/python$VER"/_sysconfigdata_*.py; do
  [ -e "$f" ] || die "no _sysconfigdata in usr/lib/python$VER"
  sed -i -E "s#^( *'(WHEEL_PKG_DIR|INCLUDEPY|CONFINCLUDEPY|INCLUDEDIR|CONFINCLUDEDIR|LIBDIR|LIBPL|LIBDEST|BINLIBDEST|BINDIR|DESTSHARED)': ')/usr([/'])#\1$root_sed/usr\3#" "$f"
  grep -q "'WHEEL_PKG_DIR': '$ROOT/" "$f" || die "could not repoint WHEEL_PKG_DIR in $f"
done

# pyconfig.h: Debian's is a wrapper that includes <MULTIARCH/pythonX.Y/pyconfig.h>, which the
# compiler would look for under the host's /usr/include. Put the real one in its place.
inc="$TMPROOT/usr/include/python$VER"
real_cfg="$TMPROOT/usr/include/$MULTIARCH/python$VER/pyconfig.h"
[ -f "$real_cfg" ] || die "no $MULTIARCH/python$VER/pyconfig.h in the -dev packages"
cp "$real_cfg" "$inc/pyconfig.h"

# --- into place, then verify ----------------------------------------------------------------
# Leftovers of this version without the marker are from interrupted runs; no build runs now.
for old in "$CACHE_ROOT/$PREFIX"*; do
  [ -d "$old" ] && [ ! -f "$old/$MARKER" ] && { log "removing unverified $old"; rm -rf "$old"; }
done
if [ -e "$ROOT" ]; then             # verified once but fails its check now: replace it
  mv -T "$ROOT" "$WORK/old-root"
fi
mv -T "$TMPROOT" "$ROOT"
PY="$ROOT/usr/bin/python$VER"
discard() { log "$1; removing $ROOT"; rm -rf "$ROOT"; exit 1; }

# Byte-compile the standard library now (Debian does that in postinst), so later starts are quick.
"$PY" -I -m compileall -q -j0 -x '/(test|tests|idlelib|lib2to3)/' "$ROOT/usr/lib/python$VER" >/dev/null 2>&1 \
  || log "note: compileall reported errors (not fatal)"

check_root "$ROOT" || discard "the new root fails its check"

T="$WORK/probe"
mkdir -p "$T"
"$PY" -m venv "$T/venv" >&2 || discard "python$VER -m venv failed"
pipv=$("$T/venv/bin/python" -m pip --version 2>&1) || discard "pip in a fresh venv fails: $pipv"
log "venv ok: $pipv"
"$T/venv/bin/python" -I -c 'import sys; assert sys.prefix != sys.base_prefix' || discard "venv is not a venv"

cat >"$T/_ptt_probe.c" <<'EOF'
#define PY_SSIZE_T_CLEAN
#include <Python.h>
static PyObject *answer(PyObject *self, PyObject *args) { return PyLong_FromLong(42); }
static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_ptt_probe", NULL, -1, methods};
PyMODINIT_FUNC PyInit__ptt_probe(void) { return PyModule_Create(&mod); }
EOF
CC_BIN="${CC:-cc}"
if command -v "${CC_BIN%% *}" >/dev/null 2>&1; then
  pyinc=$("$T/venv/bin/python" -I -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  extsuffix=$("$T/venv/bin/python" -I -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
  $CC_BIN -shared -fPIC -O1 -Wall -Werror -I"$pyinc" -o "$T/_ptt_probe$extsuffix" "$T/_ptt_probe.c" >&2 \
    || discard "compiling a tiny C extension against $pyinc failed"
  (cd "$T" && "$T/venv/bin/python" -I -c 'import sys; sys.path.insert(0, "."); import _ptt_probe; assert _ptt_probe.answer() == 42') \
    || discard "the tiny C extension does not import"
  log "C extension ok ($CC_BIN, $pyinc)"
else
  log "note: no C compiler ($CC_BIN); only the headers were checked"
fi

printf 'python%s %s from Debian testing (%s), verified %s\npackages: %s\n' \
  "$VER" "$pyver" "$mirror" "$(date -u +%FT%TZ)" "${seeds[*]} ${libs[*]}" >"$ROOT/$MARKER"
log "provided $PY"
echo "$PY"
