#!/usr/bin/env bash
# Run the engine tests under valgrind on the GIL build (valgrind cannot run the free-threaded
# build: it requires mimalloc). Fails on any definite leak or memory error (invalid read/write,
# use of uninitialised memory, bad free) whose stack involves the engine's C sources. CPython's
# own immortal objects ("definitely lost" at exit) are not attributed to us.
# Usage: bash scripts/memcheck.sh [pytest args]   (default: all of tests/engine)
# MEMCHECK_LOG=path keeps valgrind's full log there (default: a temporary file, removed).
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

if [ -n "${MEMCHECK_LOG:-}" ]; then
  log="$MEMCHECK_LOG"
else
  log="$(mktemp)"
  trap 'rm -f "$log"' EXIT
fi
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
# A test's forked child (os.fork without exec) writes its own report into the same log: split
# the log by pid, and take the summary from the pytest process (the first pid).
blocks, cur, main_pid = [], {}, None
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"==(\d+)== ?(.*)", line.rstrip("\n"))
    if not m:
        continue
    pid, body = m.groups()
    main_pid = main_pid or pid
    if body:
        cur.setdefault(pid, []).append(body)
    elif cur.get(pid):
        blocks.append((pid, cur.pop(pid)))
blocks += list(cur.items())

kinds = ("definitely lost", "Invalid read", "Invalid write", "Invalid free", "uninitialised",
         "Mismatched free", "overlap", "Syscall param")
bad = [b for _, b in blocks if any(k in b[0] for k in kinds) and any(ours in l for l in b[1:])]
for b in bad:
    print("\n".join(b[:30]))
    print("-" * 60)
summary = next(
    (l for pid, b in blocks if pid == main_pid for l in b if "ERROR SUMMARY" in l), "no summary"
)
print(f"memcheck: {len(bad)} error(s) attributed to the engine; valgrind total: {summary}")
sys.exit(1 if bad else 0)
PY
verdict=$?
[ "$rc" -eq 0 ] && [ "$verdict" -eq 0 ]
