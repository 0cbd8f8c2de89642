#!/usr/bin/env bash
# make setup: provide the interpreters and a venv for each at the repo root, with the dev tools
# (requirements-dev.txt) and this package installed (editable, C engine built with -Werror):
#   .venv-3.13   standard CPython 3.13 (pyenv's, Debian's, or built from Debian's source)
#   .venv-3.13t  free-threaded 3.13t, built from Debian's python3.13 source package
#   .venv-3.14, .venv-3.15  standard builds from Debian testing's binary packages
# Interpreters are cached under ~/.cache/pytest-threadpool. Idempotent: quick when all is there.
set -euo pipefail
cd "$(dirname "$0")/.."
LOG_NAME=setup
. scripts/venv-lib.sh

# tmux: the terminal tests drive a real terminal.
if ! command -v tmux >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  log "installing tmux"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq tmux >&2 \
    || { $SUDO apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq tmux >&2; }
fi

PY_GIL=$(scripts/find-python-gil.sh | tail -n1)
PY_FT=$(scripts/build-python.sh | tail -n1)
PY_314=$(scripts/provide-python-testing.sh 3.14 | tail -n1)
PY_315=$(scripts/provide-python-testing.sh 3.15 | tail -n1)
make_venv .venv-3.13 "$PY_GIL"
make_venv .venv-3.13t "$PY_FT"
make_venv .venv-3.14 "$PY_314"
make_venv .venv-3.15 "$PY_315"
for v in .venv-3.13 .venv-3.14 .venv-3.15; do
  "$v/bin/python" -c "import pytest_threadpool._engine"
done
.venv-3.13t/bin/python -c "import sys, pytest_threadpool._engine; assert not sys._is_gil_enabled(), 'GIL re-enabled by the engine import'"
log "ready: .venv-3.13 ($PY_GIL), .venv-3.13t ($PY_FT), .venv-3.14 ($PY_314), .venv-3.15 ($PY_315)"
