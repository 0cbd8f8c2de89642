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
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from _pytest import warnings as pytest_warnings

from pytest_threadpool.context import current_run


@contextmanager
def routed_warnings(config: pytest.Config) -> Iterator[None]:
    original_item_cm = pytest_warnings.catch_warnings_for_item

    @contextmanager
    def catch_warnings_for_item(config, ihook, when, item) -> Iterator[None]:  # type: ignore[no-untyped-def]
        run = current_run()
        if item is None or run is None or run.item is not item or run.inline:
            with original_item_cm(config=config, ihook=ihook, when=when, item=item):
                yield
            return
        # A fresh catch_warnings per test resets "default"/"once" bookkeeping; do the same.
        warnings._filters_mutated()  # type: ignore[attr-defined]
        yield

    with warnings.catch_warnings():
        if not sys.warnoptions:
            warnings.filterwarnings("always", category=DeprecationWarning)
            warnings.filterwarnings("always", category=PendingDeprecationWarning)
        pytest_warnings.apply_warning_filters(
            config.getini("filterwarnings"), config.known_args_namespace.pythonwarnings or []
        )
        show_original = warnings._showwarnmsg_impl  # type: ignore[attr-defined]

        def show(message: warnings.WarningMessage) -> None:
            run = current_run()
            if run is None:
                show_original(message)
            else:
                run.warnings.append(message)

        warnings._showwarnmsg_impl = show  # type: ignore[attr-defined]
        pytest_warnings.catch_warnings_for_item = catch_warnings_for_item  # type: ignore[assignment]
        try:
            yield
        finally:
            pytest_warnings.catch_warnings_for_item = original_item_cm
