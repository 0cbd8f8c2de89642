"""pyfakefs: the runner keeps the real file system while a test fakes it.

pyfakefs's ``fs`` fixtures (and ``Patcher``) replace ``os``, ``open``, ``io`` and ``pathlib`` in
every loaded module, including functions a module bound by name at import, except in the
modules on its skip list (pytest's own capture and pathlib are there). A threaded run moves
captures, fds and temporary directories in our modules while such a test runs (it runs alone,
but on the main thread, with the reporting lane beside it): faked there, they failed with
"Bad file descriptor" and left the fake file system installed. Our modules go on the skip
list for the run, as pyfakefs's own pytest plugin does for pytest's.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

_PATCHER_MODULE = "pyfakefs.fake_filesystem_unittest"


@contextlib.contextmanager
def real_file_system_for_the_runner() -> Iterator[None]:
    patcher_module = sys.modules.get(_PATCHER_MODULE)
    patcher = getattr(patcher_module, "Patcher", None)
    skipped = getattr(patcher, "SKIPMODULES", None)
    if not isinstance(skipped, set):
        yield  # pyfakefs not loaded (its plugin imports it at start-up), or unknown
        return
    ours = {
        module
        for name, module in list(sys.modules.items())
        if (name == "pytest_threadpool" or name.startswith("pytest_threadpool."))
        and module is not None
        and module not in skipped
    }
    skipped.update(ours)
    try:
        yield
    finally:
        skipped.difference_update(ours)
