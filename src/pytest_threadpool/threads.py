"""Threads started by a pool test work for it: output, logs and unhandled exceptions.

The engine routes ``sys.stdout``/``sys.stderr`` writes by a C thread-local that a new thread does
not inherit, so for the run ``threading.Thread.start`` remembers the starting thread's capture and
the new thread adopts it. Output such a thread writes after its test finished goes to the
terminal (the capture is closed by then). Threads created by C code or ``_thread.start_new_thread``
are not covered: their output passes through to the terminal.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pytest_threadpool import _engine
from pytest_threadpool.context import adopt, current_run


@contextmanager
def inherited_capture() -> Iterator[None]:
    thread_class: Any = threading.Thread
    original_start = thread_class.start
    original_bootstrap_inner = thread_class._bootstrap_inner

    def start(self: threading.Thread) -> None:
        self._threadpool_capture = _engine.get_thread_capture()  # type: ignore[attr-defined]
        self._threadpool_run = current_run()  # type: ignore[attr-defined]
        original_start(self)

    def bootstrap_inner(self: threading.Thread) -> None:
        capture = getattr(self, "_threadpool_capture", None)
        run = getattr(self, "_threadpool_run", None)
        if capture is None and run is None:
            original_bootstrap_inner(self)
            return
        _engine.set_thread_capture(capture)
        adopt(run)
        try:
            original_bootstrap_inner(self)
        finally:
            adopt(None)
            _engine.set_thread_capture(None)

    thread_class.start = start
    thread_class._bootstrap_inner = bootstrap_inner
    try:
        yield
    finally:
        thread_class.start = original_start
        thread_class._bootstrap_inner = original_bootstrap_inner
