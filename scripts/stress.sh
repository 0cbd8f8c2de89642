#!/usr/bin/env bash
# Repeat the concurrency-heavy tests (engine, and the plugin's threaded-run suites) N times on
# the free-threaded build.
# Usage: bash scripts/stress.sh [N]   (default 20). Exits non-zero if any run failed.
set -u
cd "$(dirname "$0")/.."

runs="${1:-20}"
py=".venv-3.13t/bin/python"
tests=(
  tests/engine
  tests/plugin/test_parity.py
  tests/plugin/test_fixtures.py
  tests/plugin/test_isolation.py
  tests/plugin/test_logging.py
  tests/plugin/test_reporting_output.py
  tests/plugin/test_control_flow.py
  tests/plugin/test_hostile.py
  tests/plugin/test_reporting_lane.py
  tests/plugin/test_subtests.py
  tests/plugin/test_redirects.py
  tests/plugin/test_grouping.py
  tests/plugin/test_anyio.py
)
[ -x "$py" ] || { echo "stress: $py not found (run make setup)" >&2; exit 2; }

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
failures=0
start=$(date +%s)
for i in $(seq 1 "$runs"); do
  # the tests' autouse fixture also fails a run if the GIL got re-enabled
  if ! timeout 300 "$py" -m pytest -q -x -p no:cacheprovider "${tests[@]}" >"$log" 2>&1; then
    failures=$((failures + 1))
    echo "stress: run $i FAILED:"
    tail -n 40 "$log"
  fi
done
echo "stress: $runs runs, $failures failed ($(( $(date +%s) - start ))s)"
[ "$failures" -eq 0 ]
