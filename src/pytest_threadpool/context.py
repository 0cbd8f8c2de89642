"""Which test the calling thread is working for.

A worker thread acts for the item it runs; the main thread acts for an item while it runs a
sequential item or sets up / tears down shared fixtures on that item's behalf. Output routing
(the engine's per-thread capture), logging, warnings and ``PYTEST_CURRENT_TEST`` all follow it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pytest_threadpool import _engine

if TYPE_CHECKING:
    from pytest_threadpool.item_run import ItemRun

_local = threading.local()


def current_run() -> ItemRun | None:
    return getattr(_local, "run", None)


def adopt(run: ItemRun | None) -> None:
    """Make the calling (new) thread work for ``run`` (threads started by a test)."""
    _local.run = run


@contextmanager
def acting_for(run: ItemRun, *, capture: bool = True) -> Iterator[None]:
    """Route this thread's output, logs and warnings to ``run`` for the duration."""
    previous_run = getattr(_local, "run", None)
    _local.run = run
    previous_capture = _engine.set_thread_capture(run.capture if capture else None)
    try:
        yield
    finally:
        _engine.set_thread_capture(previous_capture)
        _local.run = previous_run
