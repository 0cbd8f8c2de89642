"""Logging of concurrently running tests, per test.

pytest's LoggingPlugin adds handlers to the root logger and changes its level around each test
phase, and ``caplog`` changes logger levels process-wide; concurrent tests would see each other's
records and levels. For a threaded run one routing handler on the root logger hands each record
to the handlers of the test its thread works for ("Captured log" sections and ``caplog``), and
``caplog.set_level``/``at_level`` become per-test: a logger's real level is the lowest any running
test asked for, and each test only receives records at or above its own view of the level.
Live logging (``--log-cli-level``) prints each test's records in one block next to its result.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from pytest_threadpool.context import current_run
from pytest_threadpool.item_run import ItemRun
from pytest_threadpool.pytest_compat import (
    LogCaptureFixture,
    LogCaptureHandler,
    caplog_handler_key,
    caplog_item,
    caplog_records_key,
    log_cli_enabled,
)

_ORIGINAL_SHUTDOWN = logging.shutdown
_handler_refs = logging._handlerList  # type: ignore[attr-defined]


def _shutdown_built_handlers(handlerList: Any = None) -> None:
    """``logging.shutdown`` during a threaded run. A handler registers itself (``_handlerList``)
    before it creates its lock: a test calling ``logging.shutdown`` while another test's thread
    constructs a handler found one without ``lock`` and failed (AttributeError). Handlers still
    being constructed are left alone, as in a sequential run, where they would not exist yet."""
    if handlerList is None:
        handlerList = [ref for ref in list(_handler_refs) if _built(ref())]
    _ORIGINAL_SHUTDOWN(handlerList)


def _built(handler: Any) -> bool:
    return handler is None or hasattr(handler, "lock")  # a dead reference: logging skips it


_levels_lock = threading.Lock()
# Logger name -> its level before any running test changed it, while some test overrides it.
_baseline: dict[str, int] = {}
# Logger name -> overrides currently requested, one entry per (run, level).
_overrides: dict[str, list[tuple[ItemRun, int]]] = {}


def _logger(name: str | None) -> logging.Logger:
    return logging.getLogger(name)


def _key(name: str | None) -> str:
    return _logger(name).name


def _apply(name: str) -> None:
    """Set the logger's real level to the lowest requested (so records reach the router)."""
    requested = [level for _run, level in _overrides.get(name, [])]
    logger = _logger(None if name == "root" else name)
    if requested:
        _baseline.setdefault(name, logger.level)
        base = _baseline[name]
        logger.setLevel(min([*requested, base]) if base != logging.NOTSET else min(requested))
    elif name in _baseline:
        logger.setLevel(_baseline.pop(name))


def _set_override(run: ItemRun, name: str, level: int | None) -> None:
    with _levels_lock:
        entries = [(r, lv) for r, lv in _overrides.get(name, []) if r is not run]
        if level is not None:
            entries.append((run, level))
        if entries:
            _overrides[name] = entries
        else:
            _overrides.pop(name, None)
        _apply(name)


def _effective_level(run: ItemRun, logger_name: str) -> int:
    """The level ``logger_name`` would have if only ``run``'s caplog changes were applied."""
    name: str | None = logger_name
    while name:
        own = run.log_levels.get(name)
        if own is not None:
            return own
        logger = logging.getLogger(name) if name != "root" else logging.getLogger()
        level = _baseline.get(name, logger.level)
        if level != logging.NOTSET:
            return level
        name = name.rpartition(".")[0] or ("root" if name != "root" else None)
    return logging.NOTSET


class _Router(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.NOTSET)

    def handle(self, record: logging.LogRecord) -> bool:  # no lock: targets are per test
        run = current_run()
        if run is None or not run.log_handlers:
            return False
        if _baseline and record.levelno < _effective_level(run, record.name):
            return False
        for handler in run.log_handlers:
            if record.levelno >= handler.level:
                handler.handle(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:  # pragma: no cover - handle() does it
        self.handle(record)


class ThreadedLogging:
    """Installed for the duration of a threaded run."""

    def __init__(self, config: pytest.Config) -> None:
        self.plugin = config.pluginmanager.get_plugin("logging-plugin")
        self._undo: list[Any] = []
        self._local = threading.local()

    def __enter__(self) -> ThreadedLogging:
        plugin = self.plugin
        if plugin is None:
            return self
        root = logging.getLogger()
        router = _Router()
        root.addHandler(router)
        self._undo.append(lambda: root.removeHandler(router))
        if plugin.log_level is not None:
            original = root.level
            root.setLevel(min(original, plugin.log_level))
            self._undo.append(lambda: root.setLevel(original))
        if log_cli_enabled(plugin):
            cli = plugin.log_cli_handler
            root.removeHandler(cli)  # pool tests' records go through their own live buffer
            self._undo.append(lambda: root.addHandler(cli))
        if logging.shutdown is _ORIGINAL_SHUTDOWN:
            logging.shutdown = _shutdown_built_handlers
            self._undo.append(lambda: setattr(logging, "shutdown", _ORIGINAL_SHUTDOWN))
        original_runtest_for = plugin._runtest_for
        plugin._runtest_for = self._runtest_for_factory(original_runtest_for)
        self._undo.append(lambda: vars(plugin).pop("_runtest_for", None))
        self._patch_caplog()
        return self

    def __exit__(self, *exc_info: object) -> None:
        while self._undo:
            self._undo.pop()()

    def _thread_handlers(self) -> list[LogCaptureHandler]:
        """This thread's handlers, reused test after test (pytest reuses one set as well;
        creating handlers takes logging's global lock)."""
        handlers = getattr(self._local, "handlers", None)
        if handlers is None:
            plugin = self.plugin
            caplog_handler = LogCaptureHandler()
            caplog_handler.setFormatter(plugin.formatter)  # caplog.text is formatted, as pytest's
            report_handler = LogCaptureHandler()
            report_handler.setFormatter(plugin.formatter)
            if plugin.log_level is not None:
                caplog_handler.setLevel(plugin.log_level)
                report_handler.setLevel(plugin.log_level)
            handlers = [caplog_handler, report_handler]
            if log_cli_enabled(plugin):
                live = LogCaptureHandler()
                live.setFormatter(plugin.log_cli_handler.formatter)
                live.setLevel(plugin.log_cli_handler.level)
                handlers.append(live)
            self._local.handlers = handlers
        return handlers

    def _runtest_for_factory(self, original: Any) -> Any:
        plugin = self.plugin

        @contextmanager
        def runtest_for(item: pytest.Item, when: str) -> Iterator[None]:
            run = current_run()
            if run is None or run.item is not item or run.inline:
                with original(item, when):
                    yield
                return
            handlers = self._thread_handlers()
            for handler in handlers:
                handler.reset()
            caplog_handler, report_handler = handlers[0], handlers[1]
            if plugin.log_level is not None:
                caplog_handler.setLevel(plugin.log_level)
            live = handlers[2] if len(handlers) > 2 else None
            item.stash[caplog_records_key][when] = caplog_handler.records
            item.stash[caplog_handler_key] = caplog_handler
            run.log_handlers = list(handlers)
            try:
                yield
            finally:
                run.log_handlers = []
                item.add_report_section(when, "log", report_handler.stream.getvalue().strip())
                if live is not None:
                    text = live.stream.getvalue()
                    if text:
                        run.live_logs.append((when, text))

        return runtest_for

    def _patch_caplog(self) -> None:
        original_set_level = LogCaptureFixture.set_level
        original_at_level = LogCaptureFixture.at_level
        original_finalize = LogCaptureFixture._finalize

        def pool_run(fixture: LogCaptureFixture) -> ItemRun | None:
            run = current_run()
            if run is None or run.inline or run.item is not caplog_item(fixture):
                return None
            return run

        def set_level(self: LogCaptureFixture, level: int | str, logger: str | None = None):
            run = pool_run(self)
            if run is None:
                return original_set_level(self, level, logger)
            number = logging._checkLevel(level)  # type: ignore[attr-defined]
            name = _key(logger)
            run.log_levels[name] = number
            _set_override(run, name, number)
            if self._initial_handler_level is None:
                self._initial_handler_level = self.handler.level
            self.handler.setLevel(number)
            return None

        @contextmanager
        def at_level(self: LogCaptureFixture, level: int | str, logger: str | None = None):
            run = pool_run(self)
            if run is None:
                with original_at_level(self, level, logger):
                    yield
                return
            number = logging._checkLevel(level)  # type: ignore[attr-defined]
            name = _key(logger)
            previous = run.log_levels.get(name)
            run.log_levels[name] = number
            _set_override(run, name, number)
            handler_level = self.handler.level
            self.handler.setLevel(number)
            try:
                yield
            finally:
                self.handler.setLevel(handler_level)
                if previous is None:
                    run.log_levels.pop(name, None)
                else:
                    run.log_levels[name] = previous
                _set_override(run, name, previous)

        def finalize(self: LogCaptureFixture) -> None:
            run = pool_run(self)
            if run is None:
                return original_finalize(self)
            for name in list(run.log_levels):
                _set_override(run, name, None)
            run.log_levels.clear()
            if self._initial_handler_level is not None:
                self.handler.setLevel(self._initial_handler_level)
            return None

        LogCaptureFixture.set_level = set_level  # type: ignore[method-assign]
        LogCaptureFixture.at_level = at_level  # type: ignore[method-assign,assignment]
        LogCaptureFixture._finalize = finalize  # type: ignore[method-assign]

        def undo() -> None:
            LogCaptureFixture.set_level = original_set_level  # type: ignore[method-assign]
            LogCaptureFixture.at_level = original_at_level  # type: ignore[method-assign]
            LogCaptureFixture._finalize = original_finalize  # type: ignore[method-assign]

        self._undo.append(undo)
