"""Warnings of concurrently running tests, attributed to the test that raised them.

pytest wraps each test in ``warnings.catch_warnings(record=True)``, which on CPython 3.13 swaps
process-wide state. For a threaded run we set the session's filters once and route each shown
warning to the test the raising thread works for; the main thread then fires
``pytest_warning_recorded`` for it, so the warnings summary reads as in a sequential run. Tests
that change filters themselves (``filterwarnings`` marks, ``recwarn``, ``pytest.warns``) run alone
and use pytest's own mechanism; ``catch_warnings()`` blocks that only add "ignore" filters, which
libraries and pytest enter on the test's thread, keep those filters to that thread.

With context-aware warnings (3.14+, ``sys.flags.context_aware_warnings``) the filters and the
record log of ``catch_warnings`` live in the calling thread's context, and ``warnings.filters``
is only the list of threads that have none (a pool worker, as it starts). There each pool test
runs pytest's own per-test mechanism on its thread, from the context the session runs in (see
_context_routed_warnings); nothing process-wide is changed.
"""

from __future__ import annotations

import _thread
import re
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

from pytest_threadpool.context import current_run
from pytest_threadpool.pytest_compat import pytest_warnings

if TYPE_CHECKING:
    from pytest_threadpool.item_run import ItemRun

_local = threading.local()  # per thread: its token, and the catch_warnings blocks it is in
# Our own writers of warnings.filters (3.14 has a lock of its own, which warnings' functions
# take as well).
_filters_lock: Any = getattr(warnings, "_lock", None) or _thread.allocate_lock()
# What the session's filters end with when the default action would show a warning once per
# place: every warning a test raises is seen (see routed_warnings).
_CATCH_ALL = ("always", None, Warning, None, 0)
# Filters and catch_warnings' record log are per context (3.14+ with the flag on: the default of
# free-threaded builds, -X context_aware_warnings / PYTHON_CONTEXT_AWARE_WARNINGS=1 on others).
CONTEXT_AWARE_WARNINGS = bool(getattr(sys.flags, "context_aware_warnings", False)) and hasattr(
    warnings, "_warnings_context"
)


def _thread_token() -> object:
    token = getattr(_local, "token", None)
    if token is None:
        token = _local.token = object()  # unlike a thread id, never reused by a later thread
    return token


class _OnThread:
    """The category of an "ignore" filter added inside a ``catch_warnings()`` block on a pool
    thread: it matches warnings of ``category`` raised on that thread while the block is open,
    and nothing else. The warnings machinery asks ``issubclass(warning_category, filter
    category)``, which ``__subclasscheck__`` answers for instances too."""

    __slots__ = ("category", "is_open", "owner")

    def __init__(self, category: type[Warning], owner: object) -> None:
        self.category = category
        self.owner = owner
        self.is_open = True

    def __subclasscheck__(self, subclass: type) -> bool:
        return (
            self.is_open
            and getattr(_local, "token", None) is self.owner
            and issubclass(subclass, self.category)
        )

    def __repr__(self) -> str:
        return f"<{self.category.__name__} on one thread>"


def _scoped(entry: object) -> bool:
    return isinstance(entry, tuple) and len(entry) == 5 and isinstance(entry[2], _OnThread)


def _publish(change: Callable[[list], list]) -> None:
    """Replace warnings.filters by ``change(its entries less closed blocks' ones)``. A new list
    each time (never edited in place): the C warnings code of another thread may be iterating
    over the current one."""
    with _filters_lock:
        current = [e for e in warnings.filters if not (_scoped(e) and not e[2].is_open)]
        warnings.filters = change(current)
        warnings._filters_mutated()  # type: ignore[attr-defined]


class _ThreadBlock:
    """A ``catch_warnings()`` block entered on a pool thread. Its "ignore" filters apply to
    that thread only (_OnThread entries, removed at its exit), so concurrent tests keep theirs.
    On its first other filter change (a filter other than "ignore", ``resetwarnings``) it
    becomes the real ``catch_warnings`` block from there on: process-wide, as before."""

    def __init__(self, real_catch: type) -> None:
        self.token = _thread_token()
        self.added: list[tuple] = []
        self.real: Any = None
        self._real_catch = real_catch
        self.snapshot = [e for e in warnings.filters if not _scoped(e)]
        self.showwarning = warnings.showwarning

    def ignore(
        self, message: Any, category: type[Warning], module: Any, lineno: int, append: bool
    ) -> None:
        entry = ("ignore", message, _OnThread(category, self.token), module, lineno)
        self.added.append(entry)

        def add(filters: list) -> list:
            if not append:
                return [entry, *filters]
            if filters and filters[-1] is _CATCH_ALL:  # before it, or it would never match
                return [*filters[:-1], entry, _CATCH_ALL]
            return [*filters, entry]

        _publish(add)

    def make_real(self) -> None:
        if self.real is None:
            self.real = self._real_catch()
            self.real.__enter__()

    def close(self, exc_info: tuple[Any, Any, Any]) -> None:
        if self.real is not None:
            self.real.__exit__(*exc_info)
        for entry in self.added:
            entry[2].is_open = False
        snapshot = self.snapshot

        def restore(filters: list) -> list:
            plain = [e for e in filters if not _scoped(e)]
            if len(plain) == len(snapshot) and all(
                a is b for a, b in zip(plain, snapshot, strict=True)
            ):
                return filters
            # warnings.filters was edited in place inside the block: put back what the block
            # found, as catch_warnings' exit would.
            return [*(e for e in filters if _scoped(e)), *snapshot]

        _publish(restore)
        if warnings.showwarning is not self.showwarning:
            warnings.showwarning = self.showwarning


def _blocks() -> list[object]:
    """The calling thread's open catch_warnings blocks, innermost last: a _ThreadBlock, or the
    real catch_warnings object of a block entered the usual way."""
    blocks = getattr(_local, "blocks", None)
    if blocks is None:
        blocks = _local.blocks = []
    return blocks


def _innermost_block() -> _ThreadBlock | None:
    blocks = getattr(_local, "blocks", None)
    if not blocks:
        return None
    block = blocks[-1]
    return block if isinstance(block, _ThreadBlock) and block.real is None else None


def _leave(block: object) -> None:
    blocks = _blocks()
    for index in range(len(blocks) - 1, -1, -1):
        if blocks[index] is block:
            del blocks[index]
            return


def _on_pool_thread() -> bool:
    run = current_run()
    return run is not None and not run.inline


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and value >= 0


def _warning_class(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, Warning)


@contextmanager
def _thread_aware_blocks() -> Iterator[None]:
    """Before 3.14 (or without context-aware warnings) ``catch_warnings()`` swaps process-wide
    filters: on a pool thread it changed the filters of every concurrent test (pytest-asyncio
    silences DeprecationWarning around its event-loop calls on every async test's thread, pytest
    does for importorskip and a failure's source), and two threads leaving such blocks in the
    wrong order left the first one's filters installed for the rest of the session. On a pool
    thread, a ``catch_warnings()`` block (no ``record``/``module``, ``action`` none or "ignore")
    now keeps its "ignore" filters to its thread (see _ThreadBlock); everywhere else, and for
    any other block, catch_warnings is unchanged."""
    if CONTEXT_AWARE_WARNINGS:
        yield  # 3.14+: catch_warnings is private to the thread's context already
        return
    original_catch = warnings.catch_warnings
    original_simplefilter = warnings.simplefilter
    original_filterwarnings = warnings.filterwarnings
    original_resetwarnings = warnings.resetwarnings

    class catch_warnings(original_catch):  # type: ignore[valid-type,misc]
        __doc__ = original_catch.__doc__

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            action = kwargs.get("action")
            self._threadpool_scoped = (
                not kwargs.get("record")
                and kwargs.get("module") in (None, warnings)
                and (
                    action is None
                    or (
                        action == "ignore"
                        and _warning_class(kwargs.get("category", Warning))
                        and _positive_int(kwargs.get("lineno", 0))
                    )
                )
            )
            self._threadpool_filter = (
                (
                    kwargs.get("category", Warning),
                    kwargs.get("lineno", 0),
                    kwargs.get("append", False),
                )
                if action is not None
                else None
            )
            self._threadpool_block: _ThreadBlock | None = None

        def __enter__(self) -> Any:
            if self._threadpool_scoped and _on_pool_thread():
                if self._entered:
                    raise RuntimeError(f"Cannot enter {self!r} twice")
                self._entered = True
                block = self._threadpool_block = _ThreadBlock(original_catch)
                _blocks().append(block)
                if self._threadpool_filter is not None:
                    category, lineno, append = self._threadpool_filter
                    block.ignore(None, category, None, lineno, bool(append))
                return None
            _blocks().append(self)
            try:
                return super().__enter__()
            except BaseException:
                _leave(self)
                raise

        def __exit__(self, *exc_info: Any) -> None:
            block = self._threadpool_block
            if block is None:
                try:
                    super().__exit__(*exc_info)
                finally:
                    _leave(self)
                return
            self._threadpool_block = None
            try:
                block.close(exc_info)
            finally:
                _leave(block)

    def simplefilter(
        action: str, category: type[Warning] = Warning, lineno: int = 0, append: bool = False
    ) -> None:
        block = _innermost_block()
        if block is not None:
            if action == "ignore" and _warning_class(category) and _positive_int(lineno):
                block.ignore(None, category, None, lineno, bool(append))
                return
            block.make_real()
        original_simplefilter(action, category, lineno, append)

    def filterwarnings(
        action: str,
        message: str = "",
        category: type[Warning] = Warning,
        module: str = "",
        lineno: int = 0,
        append: bool = False,
    ) -> None:
        block = _innermost_block()
        if block is not None:
            if (
                action == "ignore"
                and isinstance(message, str)
                and isinstance(module, str)
                and _warning_class(category)
                and _positive_int(lineno)
            ):
                block.ignore(
                    re.compile(message, re.I) if message else None,
                    category,
                    re.compile(module) if module else None,
                    lineno,
                    bool(append),
                )
                return
            block.make_real()
        original_filterwarnings(action, message, category, module, lineno, append)

    def resetwarnings() -> None:
        block = _innermost_block()
        if block is not None:
            block.make_real()
        original_resetwarnings()

    simplefilter.__doc__ = original_simplefilter.__doc__
    filterwarnings.__doc__ = original_filterwarnings.__doc__
    resetwarnings.__doc__ = original_resetwarnings.__doc__
    warnings.catch_warnings = catch_warnings  # type: ignore[misc]
    warnings.simplefilter = simplefilter  # type: ignore[assignment]
    warnings.filterwarnings = filterwarnings  # type: ignore[assignment]
    warnings.resetwarnings = resetwarnings  # type: ignore[assignment]
    try:
        yield
    finally:
        warnings.catch_warnings = original_catch  # type: ignore[misc]
        warnings.simplefilter = original_simplefilter
        warnings.filterwarnings = original_filterwarnings
        warnings.resetwarnings = original_resetwarnings


@contextmanager
def routed_warnings(config: pytest.Config) -> Iterator[None]:
    if CONTEXT_AWARE_WARNINGS:
        with _context_routed_warnings(config):
            yield
        return
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
            ("always", *e[1:]) if e[0] in _DEDUPLICATED else e for e in configured
        ]
        if warnings.defaultaction in _DEDUPLICATED:  # what no filter matches
            warnings.filters.append(_CATCH_ALL)
        warnings._filters_mutated()  # type: ignore[attr-defined]

        def show(message: warnings.WarningMessage) -> None:
            run = current_run()
            if run is None:
                show_original(message)
                return
            _record_once(run, configured, message)

        warnings._showwarnmsg_impl = show  # type: ignore[attr-defined]
        pytest_warnings.catch_warnings_for_item = catch_warnings_for_item  # type: ignore[assignment]
        try:
            with _thread_aware_blocks():
                yield
        finally:
            pytest_warnings.catch_warnings_for_item = original_item_cm


_DEDUPLICATED = {"default", "module", "once"}


def _seen_every_time(filters: list) -> list:
    """``filters`` with the actions that show a warning once per place made "always" (and a
    last filter that catches what none matches, when the default action is such one): each
    test then de-duplicates its own records (_dedup_key), as its own catch_warnings block
    would, instead of the process-wide registries deciding across concurrent tests."""
    seen = [("always", *e[1:]) if e[0] in _DEDUPLICATED else e for e in filters]
    if warnings.defaultaction in _DEDUPLICATED:  # what no filter matches
        seen.append(_CATCH_ALL)
    return seen


def _record_once(run: ItemRun, configured: list, message: warnings.WarningMessage) -> None:
    key = _dedup_key(configured, message)
    if key is not None:
        if key in run.warning_keys:
            return
        run.warning_keys.add(key)
    run.warnings.append(message)


def _print_warning(message: warnings.WarningMessage) -> None:
    """What ``warnings`` does with a warning no catch_warnings(record=True) block records."""
    file = message.file if message.file is not None else sys.stderr
    if file is None:
        return
    try:
        file.write(warnings._formatwarnmsg(message))  # type: ignore[attr-defined]
    except OSError:
        pass


class _TestRecords:
    """The ``ihook`` pytest's per-test mechanism gets for a pool test: its warnings join the
    test's (shown-once de-duplication included), and the main thread reports them."""

    def __init__(self, run: ItemRun) -> None:
        self.run = run
        self.configured: list = []  # the test's filters as pytest set them, before _seen_every_time
        self.pytest_warning_recorded = self

    def call_historic(self, kwargs: dict[str, Any]) -> None:
        _record_once(self.run, self.configured, kwargs["warning_message"])


class _RoutedLog:
    """The record log of the main thread's context while pool tests run: what it records
    while acting for a test (its shared fixtures set up or torn down there) joins that test's
    warnings; anything else goes where it would have gone without the session's block."""

    def __init__(self, configured: list, outer: list | None) -> None:
        self.configured = configured
        self.outer = outer  # the log of a block around the session (pytest run in-process)

    def append(self, message: warnings.WarningMessage) -> None:
        run = current_run()
        if run is not None:
            _record_once(run, self.configured, message)
        elif self.outer is not None:
            self.outer.append(message)
        else:
            _print_warning(message)


@contextmanager
def _in_context(context: object) -> Iterator[None]:
    """The calling thread's warnings context is ``context`` for the duration."""
    var: Any = warnings._warnings_context  # type: ignore[attr-defined]
    previous = var.get(None)
    token = var.set(context)
    try:
        yield
    finally:
        try:
            var.reset(token)
        except ValueError:  # left in another contextvars.Context than it was entered in
            var.set(previous if previous is not None else context)


@contextmanager
def _context_routed_warnings(config: pytest.Config) -> Iterator[None]:
    """Context-aware warnings: a pool test runs pytest's own ``catch_warnings_for_item`` on its
    thread (a catch_warnings(record=True) block private to that thread's context, with the
    configured filters and its filterwarnings marks), entered from the context the session
    runs in, as a sequential run enters it; a pool worker, a thread of its own, would otherwise
    start from the bare ``warnings.filters``. Its records go to the test, which the main thread
    reports. On the main thread, tests running alone use pytest's mechanism unchanged, and
    shared fixtures set up or torn down for a pool test record into that test (_RoutedLog)."""
    original_item_cm = pytest_warnings.catch_warnings_for_item
    get_context: Any = warnings._get_context  # type: ignore[attr-defined]
    session_context = get_context()  # where every test starts from, as sequentially

    @contextmanager
    def catch_warnings_for_item(  # type: ignore[no-untyped-def]
        config, ihook, when, item, **kwargs: Any
    ) -> Iterator[None]:
        run = current_run()
        if item is None or run is None or run.item is not item or run.inline:
            with (
                _in_context(session_context),
                original_item_cm(config=config, ihook=ihook, when=when, item=item, **kwargs),
            ):
                yield
            return
        records = _TestRecords(run)
        with (
            _in_context(session_context),
            original_item_cm(config=config, ihook=records, when=when, item=item, **kwargs),
        ):
            context = get_context()
            records.configured = list(context._filters)
            context._filters = _seen_every_time(records.configured)
            warnings._filters_mutated()  # type: ignore[attr-defined]
            yield

    # The main thread's context meanwhile: the filters pytest puts around every test (taken
    # from pytest itself, so version-specific ones apply as sequentially), for what it runs on
    # a pool test's behalf.
    with _in_context(session_context), warnings.catch_warnings():
        with original_item_cm(config=config, ihook=config.hook, when="runtest", item=None):
            configured = list(get_context()._filters)
        main_context = get_context()
        main_context._filters = _seen_every_time(configured)
        main_context.log = _RoutedLog(configured, session_context.log)
        warnings._filters_mutated()  # type: ignore[attr-defined]
        pytest_warnings.catch_warnings_for_item = catch_warnings_for_item  # type: ignore[assignment]
        try:
            yield
        finally:
            pytest_warnings.catch_warnings_for_item = original_item_cm


def _matches(pattern: Any, text: str) -> bool:
    """A filter's message or module pattern, matched as the warnings machinery does: None
    matches anything, a plain string (Python's default filters have "__main__") exactly."""
    if pattern is None:
        return True
    if isinstance(pattern, str):
        return pattern == text
    return pattern.match(text) is not None


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
            _matches(pattern, text)
            and issubclass(category, entry_category)
            and _matches(module_pattern, module)
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
