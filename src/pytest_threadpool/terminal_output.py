"""Terminal writes from the main thread, flushed at a bounded rate during a threaded run.

pytest's terminal reporter flushes after every progress letter. Each flush is a write system
call; on the GIL build the main thread then has to win the GIL back from busy workers (up to a
switch interval, 5 ms) for every test reported, which made reporting the bottleneck. During a run
the reporter's file is wrapped so that flushes happen at most every ``interval`` seconds, plus
whenever the runner is about to wait for results and at the end: output still appears promptly.
"""

from __future__ import annotations

import os
from _thread import RLock as _RLock  # bound at import: a test may patch threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from pytest_threadpool import _engine
from pytest_threadpool.live_status import ERASE_BELOW, LiveStatus, visible_width
from pytest_threadpool.pytest_compat import (
    set_writer_file,
    set_writer_terminal_width,
    terminal_writer,
    writer_file,
    writer_terminal_width,
)

FLUSH_INTERVAL = 0.1


# Bound at import: a test may replace them while the run goes on.
_get_terminal_size = os.get_terminal_size


class ThrottledFile:
    """Written by the reporting lane's thread and the main thread (frames, lines of its own):
    each write and flush holds the lock, so output is never torn or lost between them."""

    def __init__(self, file: Any, interval: float = FLUSH_INTERVAL) -> None:
        self._lock = _RLock()
        self._file = file
        self._interval = interval
        self._last_flush = _engine.monotonic()
        self._dirty = False
        self.on_flush: Any = None  # called (no arguments) at each real flush
        # Live mode: output is held and put out in frames with the status area below it.
        self.status: LiveStatus | None = None
        self._held: list[str] = []
        self._drawn = False  # the status area is on the screen
        self._column = 0  # where the output's last line ends (live mode)
        self.paused = False  # live mode: no status area (a test writes to the terminal itself)

    def write(self, text: str) -> int:
        with self._lock:
            self._dirty = True
            if self.status is None:
                return self._file.write(text)
            self._held.append(text)
            return len(text)

    @property
    def pending(self) -> bool:
        """Output written and not flushed (or held for the next frame)."""
        return self._dirty or bool(self._held)

    def flush(self) -> None:
        now = _engine.monotonic()
        if now - self._last_flush >= self._interval:
            self.flush_now(now)

    def flush_now(self, now: float | None = None) -> None:
        with self._lock:
            self._flush_now(now)

    def _flush_now(self, now: float | None) -> None:
        if now is None:
            now = _engine.monotonic()
        if self.status is not None and now - self._last_flush < self._interval:
            return  # live: frames at most every interval (the runner ticks that often)
        if self.on_flush is not None:
            self.on_flush()
        if self.status is not None:
            self._frame(now)
        if self._dirty:
            self._dirty = False
            self._file.flush()
        self._last_flush = now

    def _frame(self, now: float, redraw: bool = True) -> None:
        """Erase the status area, put out the held output, draw the area again (one write)."""
        text = "".join(self._held)
        self._held.clear()
        if text:
            line_start = max(text.rfind("\n"), text.rfind("\r"))
            if line_start >= 0:
                self._column = visible_width(text[line_start + 1 :])
            else:
                self._column += visible_width(text)
        frame = (ERASE_BELOW if self._drawn else "") + text
        self._drawn = False
        if redraw and self.status is not None and not self.paused:
            area = self.status.frame(self._column, now)
            self._drawn = bool(area)
            frame += area
        if frame:
            self._dirty = True
            self._file.write(frame)

    def stop_status(self) -> None:
        """Remove the status area (the held output goes out) and write straight through."""
        with self._lock:
            if self.status is None:
                return
            self._frame(_engine.monotonic(), redraw=False)
            self.status = None
            self._flush_now(None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


class TerminalFlusher:
    """Owns the throttled wrapper for a run; ``flush()`` pushes pending output out now."""

    def __init__(self, config: pytest.Config) -> None:
        terminal = config.pluginmanager.get_plugin("terminalreporter")
        self._writer = terminal_writer(terminal)
        self._throttled: ThrottledFile | None = None
        self._restore_width: Any = None

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
            self.stop_status()
            self.flush()
            if writer_file(writer) is self._throttled:
                set_writer_file(writer, original)
            self._throttled = None
            if self._restore_width is not None:
                self._restore_width()
                self._restore_width = None

    def flush(self) -> None:
        if self._throttled is not None:
            self._throttled.flush_now()

    def flush_due(self) -> bool:
        """Flush if the last flush is ``interval`` old; True while output is still pending
        (the caller comes back within ``FLUSH_INTERVAL``)."""
        throttled = self._throttled
        if throttled is None:
            return False
        throttled.flush()
        return throttled.pending

    def start_status(self, status: LiveStatus) -> bool:
        """Live mode from now on; False if the reporter's output cannot carry it."""
        if self._throttled is None:
            return False
        self._throttled.flush_now()
        self._throttled.status = status
        # A crash report starts on a line of its own, with the status area erased.
        _engine.set_crash_preamble((ERASE_BELOW + "\n").encode())
        return True

    def stop_status(self) -> None:
        if self._throttled is not None and self._throttled.status is not None:
            self._throttled.stop_status()
            _engine.set_crash_preamble(b"")

    def follow_terminal_width(self, fd: int | None) -> None:
        """fd 1 points at a file during the run (--capture=fd), so the width pytest and other
        plugins ask for (shutil.get_terminal_size on fd 1) would fall back to 80 columns: give
        the reporter's writer the real terminal's width, read from ``fd`` (a duplicate of the
        original fd 1) now and at each flush, so resizes are followed too."""
        writer, throttled = self._writer, self._throttled
        if fd is None or writer is None or throttled is None:
            return
        if writer_terminal_width(writer) is not None:
            return  # a width someone set on purpose

        def measure() -> None:
            try:
                columns = _get_terminal_size(fd).columns
            except (OSError, ValueError):
                return  # not a terminal
            if columns > 0:
                set_writer_terminal_width(writer, columns)

        measure()
        if writer_terminal_width(writer) is None:
            return  # fd is not a terminal: leave pytest's own answer
        throttled.on_flush = measure
        self._restore_width = lambda: set_writer_terminal_width(writer, None)

    @contextmanager
    def immediate(self, pause_status: bool = False) -> Iterator[None]:
        """Flush as pytest does, e.g. while a test runs alone on the main thread;
        ``pause_status``: the test writes to the terminal itself (-s), so no status area."""
        throttled = self._throttled
        if throttled is None:
            yield
            return
        throttled.paused = pause_status
        throttled.flush_now()
        interval, throttled._interval = throttled._interval, 0.0
        try:
            yield
        finally:
            throttled._interval = interval
            throttled.paused = False
