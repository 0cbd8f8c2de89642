#!/usr/bin/env bash
# Run the engine tests under valgrind on the GIL build (valgrind cannot run the free-threaded
# build: it requires mimalloc). Fails on any definite leak or memory error (invalid read/write,
# use of uninitialised memory, bad free) whose stack involves the engine's C sources. CPython's
# own immortal objects ("definitely lost" at exit) are not attributed to us.
# Usage: bash scripts/memcheck.sh [pytest args]   (default: all of tests/engine)
# --fair-sched=yes: valgrind runs one thread at a time, and its default lock let a thread that
# spins holding the GIL keep running for seconds while the main thread or the watchdog waited
# (a 0.3 s timeout delivered after 12-14 s, interrupt() finding its task done); with the fair
# (ticket) scheduler the whole engine suite passes under valgrind, no test deselected.
set -u
cd "$(dirname "$0")/.."

py=".venv-3.13/bin/python"
command -v valgrind >/dev/null || { echo "memcheck: valgrind not installed" >&2; exit 2; }
[ -x "$py" ] || { echo "memcheck: $py not found (run make setup)" >&2; exit 2; }
if [ "$#" -eq 0 ]; then
  set -- tests/engine
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
start=$(date +%s)
PYTHONMALLOC=malloc timeout 1200 valgrind --tool=memcheck --fair-sched=yes --leak-check=full \
  --show-leak-kinds=definite --errors-for-leak-kinds=definite --num-callers=40 \
  --fullpath-after= --suppressions=scripts/valgrind-engine.supp --log-file="$log" \
  "$py" -m pytest -q -p no:cacheprovider "$@"
rc=$?
echo "memcheck: pytest under valgrind exited $rc ($(( $(date +%s) - start ))s)"

"$py" - "$log" <<'PY'
import re
import sys

ours = "pytest_threadpool/_engine/"
blocks, cur = [], []
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"==\d+== ?(.*)", line.rstrip("\n"))
    if not m:
        continue
    body = m.group(1)
    if body:
        cur.append(body)
    elif cur:
        blocks.append(cur)
        cur = []
if cur:
    blocks.append(cur)

kinds = ("definitely lost", "Invalid read", "Invalid write", "Invalid free", "uninitialised",
         "Mismatched free", "overlap", "Syscall param")
bad = [b for b in blocks if any(k in b[0] for k in kinds) and any(ours in l for l in b[1:])]
for b in bad:
    print("\n".join(b[:30]))
    print("-" * 60)
summary = next((l for b in blocks for l in b if "ERROR SUMMARY" in l), "no summary")
print(f"memcheck: {len(bad)} error(s) attributed to the engine; valgrind total: {summary}")
sys.exit(1 if bad else 0)
PY
verdict=$?
[ "$rc" -eq 0 ] && [ "$verdict" -eq 0 ]
