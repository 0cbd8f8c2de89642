"""Warnings of concurrently running tests, attributed to the test that raised them.

pytest wraps each test in ``warnings.catch_warnings(record=True)``, which on CPython 3.13 swaps
process-wide state. For a threaded run we set the session's filters once and route each shown
warning to the test the raising thread works for; the main thread then fires
``pytest_warning_recorded`` for it, so the warnings summary reads as in a sequential run. Tests
that change filters themselves (``filterwarnings`` marks, ``recwarn``, ``pytest.warns``) run alone
and use pytest's own mechanism.
"""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from pytest_threadpool.context import current_run
from pytest_threadpool.pytest_compat import WARNING_SILENCING_FUNCTIONS, pytest_warnings

_quiet = threading.local()


class _QuietMeta(type):
    def __subclasscheck__(cls, subclass: type) -> bool:
        # The C warnings machinery asks this for every warning it filters (PyObject_IsSubclass
        # on each filter's category): the answer depends on the calling thread.
        return getattr(_quiet, "depth", 0) > 0


class _QuietThread(Warning, metaclass=_QuietMeta):
    """Category of a filter that matches any warning raised on a thread inside quiet_thread()."""


QUIET_THREAD_FILTER = ("ignore", None, _QuietThread, None, 0)


@contextmanager
def quiet_thread() -> Iterator[None]:
    """Ignore the calling thread's warnings, leaving the process-wide filters alone: what
    ``catch_warnings()`` + ``simplefilter("ignore")`` do in a sequential run. Filter changes
    made meanwhile on this thread are dropped, as that block's exit would drop them."""
    _quiet.depth = getattr(_quiet, "depth", 0) + 1
    try:
        yield
    finally:
        _quiet.depth -= 1


def _on_pool_thread() -> bool:
    run = current_run()
    return run is not None and not run.inline


@contextmanager
def _thread_aware_silencing() -> Iterator[None]:
    """pytest silences warnings with ``catch_warnings()`` + ``simplefilter("ignore")`` on the
    test's thread in two places: parsing source for a failure's display, and importorskip.
    Before 3.14 that swaps process-wide filters: on a worker it silenced every concurrent test,
    and two workers leaving such blocks in the wrong order left "ignore" installed for the rest
    of the session (later ``-W error`` failures were lost). On a pool thread those two blocks
    become quiet_thread(); everywhere else catch_warnings is unchanged."""
    if getattr(sys.flags, "context_aware_warnings", False):
        yield  # 3.14+: catch_warnings is private to the thread's context already
        return
    silencing_code = {function.__code__ for function in WARNING_SILENCING_FUNCTIONS}
    original_catch = warnings.catch_warnings
    original_simplefilter = warnings.simplefilter
    original_filterwarnings = warnings.filterwarnings

    class catch_warnings(original_catch):  # type: ignore[valid-type,misc]
        __doc__ = original_catch.__doc__

        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            if (
                not args
                and not kwargs
                and sys._getframe(1).f_code in silencing_code
                and _on_pool_thread()
            ):
                return quiet_thread()  # not an instance: __init__ is skipped
            return super().__new__(cls)

    def simplefilter(*args: Any, **kwargs: Any) -> None:
        if getattr(_quiet, "depth", 0) == 0:
            original_simplefilter(*args, **kwargs)

    def filterwarnings(*args: Any, **kwargs: Any) -> None:
        if getattr(_quiet, "depth", 0) == 0:
            original_filterwarnings(*args, **kwargs)

    warnings.catch_warnings = catch_warnings  # type: ignore[misc]
    warnings.simplefilter = simplefilter  # type: ignore[assignment]
    warnings.filterwarnings = filterwarnings  # type: ignore[assignment]
    try:
        yield
    finally:
        warnings.catch_warnings = original_catch  # type: ignore[misc]
        warnings.simplefilter = original_simplefilter
        warnings.filterwarnings = original_filterwarnings


@contextmanager
def routed_warnings(config: pytest.Config) -> Iterator[None]:
    original_item_cm = pytest_warnings.catch_warnings_for_item
    state: dict[str, list] = {"configured": []}

    @contextmanager
    def catch_warnings_for_item(config, ihook, when, item) -> Iterator[None]:  # type: ignore[no-untyped-def]
        run = current_run()
        if item is None or run is None or run.item is not item or run.inline:
            # Nothing else runs meanwhile: pytest's own mechanism, on the configured filters.
            converted = warnings.filters[:]
            warnings.filters[:] = state["configured"]
            warnings._filters_mutated()  # type: ignore[attr-defined]
            try:
                with original_item_cm(config=config, ihook=ihook, when=when, item=item):
                    yield
            finally:
                warnings.filters[:] = converted
                warnings._filters_mutated()  # type: ignore[attr-defined]
            return
        yield

    with warnings.catch_warnings():
        # The filters pytest puts around every test, taken from pytest itself rather than
        # rebuilt, so version-specific ones (PytestRemovedIn9Warning is an error in pytest 9)
        # apply as in a sequential run. No item: its filterwarnings marks make it run alone.
        with original_item_cm(config=config, ihook=config.hook, when="runtest", item=None):
            per_test_filters = list(warnings.filters)
        warnings.filters[:] = per_test_filters
        show_original = warnings._showwarnmsg_impl  # type: ignore[attr-defined]
        # pytest's per-test catch_warnings gives each test fresh "default"/"module"/"once"
        # bookkeeping. Process-wide registries cannot do that for concurrent tests, so those
        # actions become "always" and each test de-duplicates its own records as they would.
        configured = state["configured"] = list(warnings.filters)
        warnings.filters[:] = [
            QUIET_THREAD_FILTER,
            *(("always", *e[1:]) if e[0] in _DEDUPLICATED else e for e in configured),
        ]
        if warnings.defaultaction in _DEDUPLICATED:  # what no filter matches
            warnings.filters.append(("always", None, Warning, None, 0))
        warnings._filters_mutated()  # type: ignore[attr-defined]

        def show(message: warnings.WarningMessage) -> None:
            run = current_run()
            if run is None:
                show_original(message)
                return
            key = _dedup_key(configured, message)
            if key is not None:
                if key in run.warning_keys:
                    return
                run.warning_keys.add(key)
            run.warnings.append(message)

        warnings._showwarnmsg_impl = show  # type: ignore[attr-defined]
        pytest_warnings.catch_warnings_for_item = catch_warnings_for_item  # type: ignore[assignment]
        try:
            with _thread_aware_silencing():
                yield
        finally:
            pytest_warnings.catch_warnings_for_item = original_item_cm


_DEDUPLICATED = {"default", "module", "once"}


def _dedup_key(filters: list, message: warnings.WarningMessage) -> tuple | None:
    """The key under which ``warnings`` would show ``message`` only once, per the first
    matching configured filter (None: shown every time)."""
    text = str(message.message)
    category = message.category
    filename = message.filename or "<unknown>"
    module = filename[:-3] if filename.lower().endswith(".py") else filename
    action = warnings.defaultaction
    for entry in filters:
        kind, pattern, entry_category, module_pattern, lineno = entry
        if (
            (pattern is None or pattern.match(text))
            and issubclass(category, entry_category)
            and (module_pattern is None or module_pattern.match(module))
            and (lineno == 0 or message.lineno == lineno)
        ):
            action = kind
            break
    if action == "default":
        return (text, category, filename, message.lineno)
    if action == "module":
        return (text, category, filename)
    if action == "once":
        return (text, category)
    return None
