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
        if not sys.warnoptions:
            warnings.filterwarnings("always", category=DeprecationWarning)
            warnings.filterwarnings("always", category=PendingDeprecationWarning)
        pytest_warnings.apply_warning_filters(
            config.getini("filterwarnings"), config.known_args_namespace.pythonwarnings or []
        )
        show_original = warnings._showwarnmsg_impl  # type: ignore[attr-defined]
        # pytest's per-test catch_warnings gives each test fresh "default"/"module"/"once"
        # bookkeeping. Process-wide registries cannot do that for concurrent tests, so those
        # actions become "always" and each test de-duplicates its own records as they would.
        configured = state["configured"] = list(warnings.filters)
        warnings.filters[:] = [
            ("always", *entry[1:]) if entry[0] in _DEDUPLICATED else entry for entry in configured
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
