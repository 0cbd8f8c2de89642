# Sourced by setup.sh and matrix.sh: make_venv DIR PYTHON [PYTEST_VERSION]
# A venv with the dev tools (requirements-dev.txt; pytest replaced by PYTEST_VERSION when given)
# and this package installed editable, its C engine built in place with warnings as errors.
# Quick when the venv is current (same interpreter, same requirements, same pytest).

log() { echo "[${LOG_NAME:-venv}] $*" >&2; }

make_venv() {
  local dir=$1 py=$2 pytest_version=${3:-} stamp="$1/.pytest-threadpool-stamp" want reqs
  want="$("$py" -c 'import sys; print(sys.version)')|$pytest_version|$(sha256sum requirements-dev.txt pyproject.toml setup.py | sha256sum)"
  if [ -x "$dir/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    log "$dir is current"
  else
    log "creating $dir from $py${pytest_version:+ with pytest $pytest_version}"
    rm -rf "$dir"
    "$py" -m venv "$dir"
    "$dir/bin/python" -m pip install -q --upgrade pip
    reqs=$(mktemp)
    if [ -n "$pytest_version" ]; then
      sed -E "s/^pytest==.*/pytest==$pytest_version/" requirements-dev.txt > "$reqs"
    else
      cp requirements-dev.txt "$reqs"
    fi
    "$dir/bin/python" -m pip install -q -r "$reqs"
    rm -f "$reqs"
    PYTEST_THREADPOOL_WERROR=1 "$dir/bin/python" -m pip install -q --no-build-isolation --no-deps -e .
    echo "$want" > "$stamp"
  fi
  # Always rebuild the engine in place (cheap when nothing changed) so C edits are picked up.
  # Each interpreter's build has its own file name (ABI tag), so venvs do not overwrite each other's.
  local temp="build/temp-$(basename "$dir")"
  PYTEST_THREADPOOL_WERROR=1 "$dir/bin/python" setup.py -q build_ext --inplace --build-temp "$temp" \
      >/dev/null 2>&1 \
    || { PYTEST_THREADPOOL_WERROR=1 "$dir/bin/python" setup.py build_ext --inplace --build-temp "$temp"; exit 1; }
}
