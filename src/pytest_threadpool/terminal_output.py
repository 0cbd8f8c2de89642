"""Terminal writes from the main thread, flushed at a bounded rate during a threaded run.

pytest's terminal reporter flushes after every progress letter. Each flush is a write system
call; on the GIL build the main thread then has to win the GIL back from busy workers (up to a
switch interval, 5 ms) for every test reported, which made reporting the bottleneck. During a run
the reporter's file is wrapped so that flushes happen at most every ``interval`` seconds, plus
whenever the runner is about to wait for results and at the end: output still appears promptly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from pytest_threadpool import _engine
from pytest_threadpool.pytest_compat import set_writer_file, terminal_writer, writer_file

FLUSH_INTERVAL = 0.1


class ThrottledFile:
    def __init__(self, file: Any, interval: float = FLUSH_INTERVAL) -> None:
        self._file = file
        self._interval = interval
        self._last_flush = _engine.monotonic()
        self._dirty = False

    def write(self, text: str) -> int:
        self._dirty = True
        return self._file.write(text)

    def flush(self) -> None:
        now = _engine.monotonic()
        if now - self._last_flush >= self._interval:
            self.flush_now(now)

    def flush_now(self, now: float | None = None) -> None:
        if self._dirty:
            self._dirty = False
            self._file.flush()
        self._last_flush = _engine.monotonic() if now is None else now

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


class TerminalFlusher:
    """Owns the throttled wrapper for a run; ``flush()`` pushes pending output out now."""

    def __init__(self, config: pytest.Config) -> None:
        terminal = config.pluginmanager.get_plugin("terminalreporter")
        self._writer = terminal_writer(terminal)
        self._throttled: ThrottledFile | None = None

    @contextmanager
    def installed(self) -> Iterator[TerminalFlusher]:
        writer = self._writer
        if writer is None:
            yield self
            return
        original = writer_file(writer)
        self._throttled = ThrottledFile(original)
        set_writer_file(writer, self._throttled)
        try:
            yield self
        finally:
            self.flush()
            if writer_file(writer) is self._throttled:
                set_writer_file(writer, original)
            self._throttled = None

    def flush(self) -> None:
        if self._throttled is not None:
            self._throttled.flush_now()

    @contextmanager
    def immediate(self) -> Iterator[None]:
        """Flush as pytest does, e.g. while a test runs alone on the main thread."""
        throttled = self._throttled
        if throttled is None:
            yield
            return
        throttled.flush_now()
        interval, throttled._interval = throttled._interval, 0.0
        try:
            yield
        finally:
            throttled._interval = interval
