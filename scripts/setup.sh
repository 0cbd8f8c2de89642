#!/usr/bin/env bash
# make setup: provide both interpreters and a venv for each at the repo root, with the dev tools
# (requirements-dev.txt) and this package installed (editable, C engine built with -Werror).
# Idempotent: quick when the interpreters are cached and the venvs are current.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "[setup] $*" >&2; }

make_venv() {  # make_venv DIR PYTHON
  local dir=$1 py=$2 stamp="$1/.pytest-threadpool-stamp" want
  want="$("$py" -c 'import sys; print(sys.version)')|$(sha256sum requirements-dev.txt pyproject.toml setup.py | sha256sum)"
  if [ -x "$dir/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    log "$dir is current"
  else
    log "creating $dir from $py"
    rm -rf "$dir"
    "$py" -m venv "$dir"
    "$dir/bin/python" -m pip install -q --upgrade pip
    "$dir/bin/python" -m pip install -q -r requirements-dev.txt
    PYTEST_THREADPOOL_WERROR=1 "$dir/bin/python" -m pip install -q --no-build-isolation -e .
    echo "$want" > "$stamp"
  fi
  # Always rebuild the engine in place (cheap when nothing changed) so C edits are picked up.
  PYTEST_THREADPOOL_WERROR=1 "$dir/bin/python" setup.py -q build_ext --inplace \
      --build-temp "build/temp-$(basename "$dir")" >/dev/null 2>&1 || { PYTEST_THREADPOOL_WERROR=1 "$dir/bin/python" setup.py build_ext --inplace --build-temp "build/temp-$(basename "$dir")"; exit 1; }
}

PY_GIL=$(scripts/find-python-gil.sh | tail -n1)
PY_FT=$(scripts/build-python.sh | tail -n1)
make_venv .venv-3.13 "$PY_GIL"
make_venv .venv-3.13t "$PY_FT"
.venv-3.13/bin/python -c "import pytest_threadpool._engine"
.venv-3.13t/bin/python -c "import sys, pytest_threadpool._engine; assert not sys._is_gil_enabled(), 'GIL re-enabled by the engine import'"
log "ready: .venv-3.13 ($PY_GIL), .venv-3.13t ($PY_FT)"
