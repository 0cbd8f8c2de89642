"""Assertion rewriting's hooks per thread.

pytest's assertion plugin sets ``_pytest.assertion.util._reprcompare`` (rich ``assert`` diffs),
``_assertion_pass`` and ``_config`` around each test and restores the previous values after it.
With concurrent tests, one test finishing would reset them while another still runs, and that
test's failing asserts would lose their explanation. For a threaded run the three attributes are
kept per thread, so each test sees exactly what its own wrapper set.
"""

from __future__ import annotations

import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pytest_threadpool.pytest_compat import assertion_util as util

_NAMES = ("_reprcompare", "_assertion_pass", "_config")
_UNSET = object()


def _per_thread(name: str, local: threading.local, shared: dict[str, Any]) -> property:
    def get(module: types.ModuleType) -> Any:
        value = getattr(local, name, _UNSET)
        return shared[name] if value is _UNSET else value

    def set_(module: types.ModuleType, value: Any) -> None:
        setattr(local, name, value)

    return property(get, set_)


@contextmanager
def per_thread_assertion_hooks() -> Iterator[None]:
    local = threading.local()
    shared = {name: getattr(util, name) for name in _NAMES}
    original_class = type(util)
    per_thread_class = type(
        "PerThreadAssertionUtil",
        (original_class,),
        {name: _per_thread(name, local, shared) for name in _NAMES},
    )
    for name in _NAMES:
        vars(util).pop(name, None)  # the properties take over
    util.__class__ = per_thread_class
    try:
        yield
    finally:
        util.__class__ = original_class
        for name, value in shared.items():
            setattr(util, name, value)
