"""``PYTEST_CURRENT_TEST`` per thread.

pytest sets the variable process-wide for every phase and pops it afterwards, which concurrent
tests would race on (and ``setenv`` racing ``getenv`` in C is unsafe). During a threaded run the
value of a test running in the pool lives with its thread: reading ``os.environ`` (or
``os.getenv``) from the test's own thread gives ``"<nodeid> (<phase>)"`` as documented. Tests
that run on the main thread set the real environment as pytest does. Child processes started by
a pool test do not inherit the variable.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from pytest_threadpool.context import current_run
from pytest_threadpool.pytest_compat import update_current_test_module

VAR = "PYTEST_CURRENT_TEST"
_local = threading.local()


class _ThreadAwareEnviron(os._Environ):  # type: ignore[misc,name-defined]
    def __getitem__(self, key: str) -> str:
        if key == VAR:
            value = getattr(_local, "value", None)
            if value is not None:
                return value
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if key == VAR and getattr(_local, "value", None) is not None:
            return True
        return super().__contains__(key)


@contextmanager
def per_thread_current_test() -> Iterator[None]:
    runner = update_current_test_module()
    original_update = runner._update_current_test_var
    environ = os.environ  # the object we change, even if a test rebinds os.environ
    original_class = type(environ)

    def update(item: pytest.Item, when: str | None) -> None:
        run = current_run()
        if run is None or run.inline:
            original_update(item, when)  # type: ignore[arg-type]
            return
        _local.value = f"{item.nodeid} ({when})".replace("\x00", "(null)") if when else None
        if when:
            run.phase = when  # where reports its code logs go (hook_proxies.py)

    runner._update_current_test_var = update  # type: ignore[assignment]
    environ.__class__ = _ThreadAwareEnviron
    try:
        yield
    finally:
        environ.__class__ = original_class
        runner._update_current_test_var = original_update
