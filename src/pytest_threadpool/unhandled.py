"""Unhandled thread exceptions and unraisable exceptions, attributed to the test concerned.

pytest collects both through one process-wide queue that the test in its current phase drains,
so with concurrent tests one test could be blamed for another's. For a threaded run each record
is queued on the test the raising thread works for (a thread started by a test works for it) and
drained by that test's own phases; records from elsewhere use pytest's queue as before.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest

from pytest_threadpool.context import current_run
from pytest_threadpool.pytest_compat import threadexception, unraisableexception


class _PerTestQueue:
    """Stands in for pytest's deque: ``append`` and ``pop`` act on the current test's queue."""

    def __init__(self, shared: Any, attribute: str) -> None:
        self.shared = shared
        self.attribute = attribute

    def _queue(self) -> Any:
        run = current_run()
        if run is None or run.inline or run.protocol_done:
            return self.shared
        return getattr(run, self.attribute)

    def append(self, record: Any) -> None:
        self._queue().append(record)

    def pop(self) -> Any:
        return self._queue().pop()


@contextmanager
def per_test_unhandled(config: pytest.Config) -> Iterator[None]:
    with ExitStack() as stack:
        for module, key_name, hook_name, install in (
            (threadexception, "thread_exceptions", "thread_exception_hook", _set_excepthook),
            (unraisableexception, "unraisable_exceptions", "unraisable_hook", _set_unraisable),
        ):
            key = getattr(module, key_name)
            shared = config.stash.get(key, None)
            if shared is None:
                continue  # that pytest plugin is disabled
            queue = _PerTestQueue(shared, key_name)
            config.stash[key] = queue
            stack.callback(config.stash.__setitem__, key, shared)
            previous = install(functools.partial(getattr(module, hook_name), append=queue.append))
            stack.callback(install, previous)
        yield


def _set_excepthook(hook: Any) -> Any:
    previous = threading.excepthook
    threading.excepthook = hook
    return previous


def _set_unraisable(hook: Any) -> Any:
    previous = sys.unraisablehook
    sys.unraisablehook = hook
    return previous
