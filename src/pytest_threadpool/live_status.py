"""The live status area of ``--threadpool-output live``: a few lines kept below the results.

The reporter's output goes through ``terminal_output.ThrottledFile``; in live mode that file
holds what pytest writes and puts it out at most ``FRAME_INTERVAL`` apart as one frame: erase
the status area, the new output, the status area drawn again below it, and the cursor moved
back to where the output ends (pytest's progress lines are written a letter at a time, so the
output's last line is usually unfinished). Nothing is drawn past the output's column or over
it, so the scrollback holds exactly what a classic run prints.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable

from pytest_threadpool import _engine

FRAME_INTERVAL = 0.1  # at most ~10 redraws a second
ERASE_BELOW = "\x1b[J"  # from the cursor to the end of the screen
BAR_WIDTH = 24
MAX_RUNNING_SHARE = 0.5  # of the terminal's rows, for the running tests

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")

# Bound at import: a test may replace them while the run goes on.
_get_terminal_size = os.get_terminal_size
_isatty = os.isatty
_environ = os.environ


def wants_live(mode: str, fd: int, capturing: bool) -> bool:
    """``auto``: live on a terminal, classic when output is piped, under CI (the ``CI``
    variable), on a dumb terminal, or with -s (tests then write to the terminal themselves)."""
    if mode != "auto":
        return mode == "live"
    if not capturing or _environ.get("CI") or _environ.get("TERM", "") in ("", "dumb"):
        return False
    try:
        return _isatty(fd)
    except OSError:
        return False


def visible_width(text: str) -> int:
    return len(_ANSI.sub("", text))


def _seconds(value: float) -> str:
    if value < 60:
        return f"{value:.1f}s"
    minutes, seconds = divmod(int(value), 60)
    return f"{minutes}m{seconds:02d}s"


class LiveStatus:
    """What the status area shows; ``lines()`` renders it for a terminal size."""

    def __init__(
        self,
        total: int,
        workers: int,
        counts: Callable[[], dict[str, int]],
        running: Callable[[], Iterable[tuple[str, float]]],
        fd: int,
    ) -> None:
        self.total = total
        self.workers = workers
        self._counts = counts  # outcome -> number of reports so far
        self._running = running  # (nodeid, started at) of the tests running now
        self.fd = fd  # the terminal (a duplicate of the original fd 1)
        self.started = _engine.monotonic()
        self.done = 0  # tests reported
        self.known_total = 0.0  # seconds the duration history knows for the whole session
        self.known_done = 0.0  # ... for the tests reported so far

    def size(self) -> tuple[int, int]:
        try:
            columns, rows = _get_terminal_size(self.fd)
        except (OSError, ValueError):
            return 80, 24
        return max(columns, 20), max(rows, 4)

    def eta(self) -> float | None:
        """Seconds left from the duration history (none on a first run)."""
        if self.known_total <= 0:
            return None
        return max(0.0, (self.known_total - self.known_done) / max(self.workers, 1))

    def lines(self, now: float, columns: int, rows: int) -> list[str]:
        width = columns - 1  # never the last column: no pending wrap, no scrolling
        counts = self._counts()
        filled = BAR_WIDTH * self.done // self.total if self.total else BAR_WIDTH
        bar = "[" + "#" * filled + "-" * (BAR_WIDTH - filled) + "]"
        parts = [f"{bar} {self.done}/{self.total}"]
        for name in ("passed", "failed", "skipped", "error"):
            if counts.get(name):
                parts.append(f"{counts[name]} {name}")
        parts.append(_seconds(now - self.started))
        eta = self.eta()
        if eta is not None:
            parts.append(f"ETA {_seconds(eta)}")
        head = " ".join(parts)
        running = sorted(self._running(), key=lambda entry: entry[1])  # longest-running first
        room = max(1, int(rows * MAX_RUNNING_SHARE) - 1)
        shown = running if len(running) <= room else running[: room - 1]
        lines = [head if len(head) <= width else head[:width]]
        lines[0] = lines[0] if not running else f"{lines[0]}  running {len(running)}"[:width]
        for nodeid, started in shown:
            line = f"  {_seconds(max(now - started, 0.0)):>7} {nodeid}"
            lines.append(line if len(line) <= width else line[: width - 3] + "...")
        if len(shown) < len(running):
            lines.append(f"  ... and {len(running) - len(shown)} more"[:width])
        return lines

    def frame(self, column: int, now: float) -> str:
        """The status area drawn below an output whose last line ends at ``column``, with the
        cursor put back there; empty if it cannot be drawn safely."""
        columns, rows = self.size()
        if column >= columns - 1:
            return ""  # the output's line is full: moving back would overwrite its end
        lines = self.lines(now, columns, rows)
        back = f"\r\x1b[{column}C" if column else "\r"
        return "\n" + "\n".join(lines) + f"\x1b[{len(lines)}A" + back
