"""Process-wide state that one test can change for every other test, watched around each test.

A test that changes the working directory, the environment, ``sys.stdout``, a signal handler,
an exception hook, the recursion limit... changes it for the tests running at the same time and
for every test after it. The runner survives such changes (it binds what it uses at import); this
module says which test changed what: each test's thread reads the state when the test starts
and when it ends, and a difference is a change made during that test, by it or by a test running
alongside it. The end-of-run summary lists each change once, with the test(s) that saw it happen.

Reading the state costs a few microseconds per test, on the test's own thread.
"""

from __future__ import annotations

import faulthandler
import gc
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

# Bound at import, like everything the runner uses: the state read must not depend on the
# functions a test may have replaced.
_getcwd = os.getcwd
_getsignal = signal.getsignal
_gc_isenabled = gc.isenabled
_getrecursionlimit = sys.getrecursionlimit
_getswitchinterval = sys.getswitchinterval
_faulthandler_enabled = faulthandler.is_enabled
_logging_manager = logging.root.manager
_os = os
_sys = sys
_threading = threading
_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGCHLD", "SIGPIPE")
    if hasattr(signal, name)
)


def _cwd() -> str:
    try:
        return _getcwd()
    except OSError:
        return "<removed directory>"


_OWN_VARIABLES = (b"PYTEST_CURRENT_TEST", "PYTEST_CURRENT_TEST")  # pytest's, set per phase


def _environment() -> Any:
    environ = _os.environ
    data = getattr(environ, "_data", None)  # os._Environ's bytes mapping: a cheap copy
    copy = dict(data) if data is not None else dict(environ)
    for name in _OWN_VARIABLES:
        copy.pop(name, None)
    return (id(environ), copy)


def _signal_handlers() -> tuple[Any, ...]:
    handlers = []
    for number in _SIGNALS:
        try:
            handlers.append(_getsignal(number))
        except (ValueError, OSError):
            handlers.append(None)
    return tuple(handlers)


# (what, how to read it). Streams and hooks are compared by identity, the rest by value.
WATCHED: tuple[tuple[str, Any], ...] = (
    ("working directory", _cwd),
    ("os.environ", _environment),
    ("sys.stdout", lambda: _sys.stdout),
    ("sys.stderr", lambda: _sys.stderr),
    ("sys.stdin", lambda: _sys.stdin),
    ("signal handlers", _signal_handlers),
    ("threading.excepthook", lambda: _threading.excepthook),
    ("sys.excepthook", lambda: _sys.excepthook),
    ("sys.unraisablehook", lambda: _sys.unraisablehook),
    ("sys.displayhook", lambda: _sys.displayhook),
    ("recursion limit", _getrecursionlimit),
    ("switch interval", _getswitchinterval),
    ("garbage collection enabled", _gc_isenabled),
    ("logging.disable level", lambda: _logging_manager.disable),
    ("faulthandler enabled", _faulthandler_enabled),
)


# The latest snapshot. While nothing changes (nearly always), every test's readings share it:
# a run holds its "before" reading until it is reported, and with a copy of os.environ per
# reading the runs in flight held hundreds of equal copies (memory; on 3.13t each worker also
# kept heap pages of its own for them). Readings are never mutated, only compared and printed.
# Two workers racing here at worst both keep their own equal copy.
_latest: list[tuple[Any, ...] | None] = [None]


def snapshot() -> tuple[Any, ...]:
    values = []
    for _name, read in WATCHED:
        try:
            values.append(read())
        except Exception as exc:  # a broken replacement must not break the runner
            values.append(f"<unreadable: {type(exc).__name__}>")
    latest = _latest[0]
    if latest is not None and all(map(_same, values, latest)):
        return latest
    reading = tuple(values)
    _latest[0] = reading
    return reading


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:
        return False


@dataclass
class Change:
    what: str
    before: Any
    after: Any
    seen_by: list[str] = field(default_factory=list)  # tests whose run spans the change

    def describe(self) -> str:
        if self.what == "os.environ":
            detail = _describe_environment(self.before, self.after)
        elif self.what == "signal handlers":
            detail = _describe_signals(self.before, self.after)
        elif isinstance(self.after, (str, int, float, bool)):
            detail = f"{self.before!r} -> {self.after!r}"
        else:
            detail = f"replaced by {_short_repr(self.after)}"
        first, *others = self.seen_by
        during = f"during {first}"
        if others:
            during += f" (or a test running alongside it: {', '.join(others[:5])}"
            during += ", ...)" if len(others) > 5 else ")"
        return f"{self.what}: {detail}, {during}"


class StateWatch:
    """Main thread: the changes seen so far, each listed once with the tests that saw it."""

    def __init__(self) -> None:
        self.changes: list[Change] = []

    def observe(
        self, nodeid: str, before: tuple[Any, ...] | None, after: tuple[Any, ...] | None
    ) -> None:
        if before is None or after is None:
            return
        for index, (name, _read) in enumerate(WATCHED):
            old, new = before[index], after[index]
            if _same(old, new):
                continue
            for change in reversed(self.changes):
                if change.what == name and _same(change.after, new) and _same(change.before, old):
                    if nodeid not in change.seen_by:
                        change.seen_by.append(nodeid)
                    break
            else:
                self.changes.append(Change(name, old, new, [nodeid]))


def _short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def _describe_environment(before: Any, after: Any) -> str:
    (before_id, old), (after_id, new) = before, after
    if before_id != after_id:
        return "os.environ rebound to another object"
    removed = sorted(_decode(k) for k in old.keys() - new.keys())
    added = sorted(_decode(k) for k in new.keys() - old.keys())
    changed = sorted(_decode(k) for k in old.keys() & new.keys() if old[k] != new[k])
    parts = []
    for label, names in (("removed", removed), ("added", added), ("changed", changed)):
        if names:
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            parts.append(f"{len(names)} {label} ({shown})")
    return "; ".join(parts) or "changed"


def _describe_signals(before: tuple[Any, ...], after: tuple[Any, ...]) -> str:
    names = []
    for number, old, new in zip(_SIGNALS, before, after, strict=False):
        if not _same(old, new):
            names.append(f"{signal.Signals(number).name} -> {_short_repr(new)}")
    return "; ".join(names)


def _decode(key: Any) -> str:
    return key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
