"""Function-scoped fixtures private to the thread that runs the test.

pytest keeps one ``cached_result`` and one finalizer list per fixture definition. For
function-scoped definitions we keep them per thread instead (each thread runs one item at a time,
so this is per item), which also covers fixtures requested with ``request.getfixturevalue``.
Wider-scoped definitions keep pytest's single state; reaching them from a worker is serialised.
The ``request`` fixture's definition is made anew for each request, so it is already private to
one test: it keeps its state on itself (kept per thread, it would keep every finished test's
request, and all that the request refers to, alive until the thread ends).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pytest_threadpool.dict_reads import lookup
from pytest_threadpool.pytest_compat import (
    FIXTUREDEF_FINALIZERS_FIELD,
    FIXTUREDEF_SCOPE_FIELD,
    FUNCTION_SCOPE,
    FixtureDef,
    RequestFixtureDef,
)
from pytest_threadpool.setupstate import reraise_shared


class _PerThread(threading.local):
    def __init__(self) -> None:
        # fixture definition -> [cached_result, finalizers]
        self.state: dict[FixtureDef, list[Any]] = {}


_per_thread = _PerThread()


def _is_function_scoped(fixturedef: FixtureDef) -> bool:
    return lookup(fixturedef.__dict__, FIXTUREDEF_SCOPE_FIELD) is FUNCTION_SCOPE


def _state_per_thread(fixturedef: FixtureDef) -> bool:
    return _is_function_scoped(fixturedef) and type(fixturedef) is not RequestFixtureDef


def _get_cached_result(self: FixtureDef) -> Any:
    if _state_per_thread(self):
        entry = _per_thread.state.get(self)
        return None if entry is None else entry[0]
    return lookup(self.__dict__, "cached_result")


def _set_cached_result(self: FixtureDef, value: Any) -> None:
    if not _state_per_thread(self):
        self.__dict__["cached_result"] = value
        return
    state = _per_thread.state
    entry = state.get(self)
    if entry is None:
        if value is not None:
            state[self] = [value, []]
        return
    entry[0] = value
    _forget_if_finished(self)  # nothing left for this thread: don't keep the definition alive


def _get_finalizers(self: FixtureDef) -> list[Callable[[], object]]:
    if not _state_per_thread(self):
        return self.__dict__[FIXTUREDEF_FINALIZERS_FIELD]
    state = _per_thread.state
    entry = state.get(self)
    if entry is None:
        entry = state[self] = [None, []]
    return entry[1]


def _forget_if_finished(fixturedef: FixtureDef) -> None:
    """Drop the calling thread's entry once it holds neither a value nor finalizers (pytest's
    ``finish`` reads the finalizer list again after resetting the value, which re-creates it):
    a thread would otherwise keep an entry for every definition it ever ran."""
    state = _per_thread.state
    entry = state.get(fixturedef)
    if entry is not None and entry[0] is None and not entry[1]:
        del state[fixturedef]


def _set_finalizers(self: FixtureDef, value: list[Callable[[], object]]) -> None:
    if not _state_per_thread(self):
        self.__dict__[FIXTUREDEF_FINALIZERS_FIELD] = value
    elif value:
        _get_finalizers(self)[:] = value


@contextmanager
def isolated_function_fixtures(shared_lock: threading.RLock) -> Iterator[None]:
    """Install per-thread fixture state on FixtureDef for the duration of a threaded run."""
    original_execute = FixtureDef.execute
    original_finish = FixtureDef.finish

    def execute(self: FixtureDef, request: Any) -> Any:
        __tracebackhide__ = True
        if _is_function_scoped(self):
            return original_execute(self, request)
        with shared_lock:
            cached = lookup(self.__dict__, "cached_result")
            if cached is not None and cached[2] is not None:
                # A cached error that other tests may be raising right now: raise a copy.
                try:
                    return original_execute(self, request)
                except BaseException as exc:
                    if exc is not cached[2][0]:
                        raise
                    error = exc
            else:
                return original_execute(self, request)
        reraise_shared(error, cached[2][1])

    def finish(self: FixtureDef, request: Any) -> None:
        try:
            original_finish(self, request)
        finally:
            if _state_per_thread(self):
                _forget_if_finished(self)

    FixtureDef.cached_result = property(_get_cached_result, _set_cached_result)  # type: ignore[assignment,method-assign]
    setattr(FixtureDef, FIXTUREDEF_FINALIZERS_FIELD, property(_get_finalizers, _set_finalizers))
    FixtureDef.execute = execute  # type: ignore[method-assign]
    FixtureDef.finish = finish  # type: ignore[method-assign]
    try:
        yield
    finally:
        FixtureDef.execute = original_execute  # type: ignore[method-assign]
        FixtureDef.finish = original_finish  # type: ignore[method-assign]
        delattr(FixtureDef, FIXTUREDEF_FINALIZERS_FIELD)
        del FixtureDef.cached_result
        _per_thread.state.clear()
