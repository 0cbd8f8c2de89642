#!/usr/bin/env bash
# Print the path of a standard (GIL) CPython 3.13: pyenv's when present, else Debian's python3.13,
# else one built from Debian's source package (scripts/build-python.sh --gil).
set -euo pipefail
ok() { "$1" -c 'import sys, sysconfig; assert sys.version_info[:2] == (3, 13) and not sysconfig.get_config_var("Py_GIL_DISABLED"); import venv, ensurepip' 2>/dev/null; }
if command -v pyenv >/dev/null 2>&1; then
  for py in $(ls -d "$(pyenv root)"/versions/3.13.*/bin/python3.13 2>/dev/null | sort -V -r); do
    if ok "$py"; then echo "$py"; exit 0; fi
  done
fi
for py in /usr/bin/python3.13 /usr/local/bin/python3.13; do
  if [ -x "$py" ] && ok "$py"; then echo "$py"; exit 0; fi
done
exec "$(dirname "$0")/build-python.sh" --gil
