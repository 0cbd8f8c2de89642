"""When the process dies under a threaded run, say which tests were running.

A fatal signal (SIGSEGV, SIGBUS, SIGFPE, SIGABRT, SIGILL) goes to the engine's handler, which
lists the test on each busy thread and chains to faulthandler. ``os._exit`` in a test bypasses
signal handlers, so it is wrapped to name its caller first. Both write to the terminal's
stderr, also while fd 2 is redirected for --capture=fd.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from pytest_threadpool import _engine
from pytest_threadpool.context import current_run

# Bound at import: a test may replace os.write or os.getpid while the run goes on.
_write = os.write
_getpid = os.getpid


@contextmanager
def crash_attribution(stderr_fd: int) -> Iterator[None]:
    original_exit = os._exit
    session_pid = _getpid()

    def _exit(code: int) -> None:
        if _getpid() != session_pid:
            # A child forked by a test (multiprocessing workers end this way): the run goes on
            # in the parent, so there is nothing to say.
            original_exit(code)
        run = current_run()
        who = run.item.nodeid if run is not None else "code outside any test"
        message = f"pytest-threadpool: os._exit({code}) called by {who}; the run ends here\n"
        try:
            _write(stderr_fd, message.encode("utf-8", "replace"))
        finally:
            original_exit(code)

    try:
        _engine.install_crash_handler(stderr_fd)
    except TypeError:  # an engine whose handler always writes to fd 2
        _engine.install_crash_handler()
    os._exit = _exit  # type: ignore[assignment]
    try:
        yield
    finally:
        os._exit = original_exit
        _engine.uninstall_crash_handler()
