#!/usr/bin/env bash
# make matrix: the plugin's suite (tests/plugin, tests/engine, the examples sequentially and in
# the pool) on each supported pytest on 3.13t, and on the newest pytest on 3.13, 3.14 and 3.15,
# each cell in its own venv. Prints a table of each cell's result and time; fails if any failed.
# Usage: bash scripts/matrix.sh [--rest | CELL ...]   (a cell: INTERPRETER/PYTEST, e.g. 3.13t/8.4.2;
# --rest: all cells but the newest pytest on 3.13 and 3.13t, which `make test` runs)
set -uo pipefail
cd "$(dirname "$0")/.."
LOG_NAME=matrix
. scripts/venv-lib.sh

NEWEST=$(sed -nE 's/^pytest==(.*)/\1/p' requirements-dev.txt)
OLDER=(3.13t/8.4.2 3.13t/9.0.3 3.13t/9.1.1)  # the newest of each supported minor release
if [ "${1:-}" = --rest ]; then
  cells=("${OLDER[@]}" "3.14/$NEWEST" "3.15/$NEWEST")
elif [ $# -gt 0 ]; then
  cells=("$@")
else
  cells=("${OLDER[@]}" "3.13t/$NEWEST" "3.13/$NEWEST" "3.14/$NEWEST" "3.15/$NEWEST")
fi

interpreter() {  # the venv that `make setup` made for this interpreter holds its path
  local base=".venv-$1"
  [ -x "$base/bin/python" ] || { log "$base missing: run make setup"; exit 2; }
  "$base/bin/python" -c 'import sys; print(sys._base_executable)'
}

results=()
failed=0
for cell in "${cells[@]}"; do
  py_name=${cell%/*}; pytest_version=${cell#*/}
  if [ "$pytest_version" = "$NEWEST" ]; then
    venv=".venv-$py_name"  # make setup's venv, brought up to date if requirements changed
    make_venv "$venv" "$(interpreter "$py_name")"
  else
    venv=".venv-matrix/$py_name-pytest$pytest_version"
    mkdir -p .venv-matrix
    make_venv "$venv" "$(interpreter "$py_name")" "$pytest_version"
  fi
  py="$venv/bin/python"
  start=$(date +%s)
  log "cell $cell: $py"
  status=ok
  "$py" -m pytest -q -p no:cacheprovider tests/plugin tests/engine || status=FAILED
  "$py" -m pytest examples -q -p no:cacheprovider || status=FAILED
  "$py" -m pytest examples -q -p no:cacheprovider --threadpool auto || status=FAILED
  seconds=$(( $(date +%s) - start ))
  [ "$status" = ok ] || failed=1
  results+=("$(printf '%-8s pytest %-7s %-7s %4d s' "$py_name" "$("$py" -c 'import pytest; print(pytest.__version__)')" "$status" "$seconds")")
done
echo
echo "matrix:"
printf '  %s\n' "${results[@]}"
exit $failed
