"""Shared helpers for the plugin's integration tests."""

from __future__ import annotations

import sysconfig

# On the GIL build every --threadpool run carries one notice that CPU-bound tests won't speed up.
GIL_NOTICES = 0 if sysconfig.get_config_var("Py_GIL_DISABLED") else 1
