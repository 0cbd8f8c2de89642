"""Per-test timeouts for threaded runs, enforced by the engine's watchdog.

Sources, most specific first: ``@pytest.mark.timeout(N)``, ``--threadpool-timeout`` /
ini ``threadpool_timeout``, then pytest-timeout's ``--timeout`` / ini ``timeout`` when that plugin
is installed (its signal and thread methods cannot work inside a pool, so for threaded runs it is
switched off and we enforce its settings). 0 means no timeout.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from pytest_threadpool import _engine

# Bound at import: a test may replace signal.signal / setitimer while the run goes on.
_signal = signal.signal
_setitimer = getattr(signal, "setitimer", None)

TIMEOUT_MARKER = "timeout"


def _positive(value: object) -> float | None:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


class Timeouts:
    def __init__(self, config: pytest.Config, default: float) -> None:
        self.default = default
        if not default:
            # pytest-timeout's settings, when that plugin defined them.
            value = config.getoption("timeout", None) if _has_option(config, "timeout") else None
            if value is None:
                try:
                    value = config.getini("timeout")
                except ValueError:
                    value = None
            self.default = _positive(value) or 0.0

    def for_item(self, item: pytest.Item) -> float:
        marker = item.get_closest_marker(TIMEOUT_MARKER)
        if marker is not None:
            value = marker.args[0] if marker.args else marker.kwargs.get("timeout")
            seconds = _positive(value)
            if seconds is None:
                raise pytest.UsageError(
                    f"{item.nodeid}: invalid timeout {value!r}; use @pytest.mark.timeout(SECONDS)"
                    " with a number of seconds >= 0"
                )
            return seconds
        return self.default


def _has_option(config: pytest.Config, name: str) -> bool:
    try:
        config.getoption(name)
    except ValueError:
        return False
    return True


def timeout_message(seconds: float) -> str:
    return f"Timeout after {seconds:g} s"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # type: ignore[no-untyped-def]
    """Name the timeout in the report of a test the watchdog stopped."""
    excinfo = call.excinfo
    if excinfo is not None and isinstance(excinfo.value, _engine.TaskTimeout):
        seconds = getattr(item, "_threadpool_timeout", None)
        if seconds:
            excinfo.value.args = (timeout_message(seconds),)
    return (yield)


@contextmanager
def main_thread_alarm(seconds: float) -> Iterator[None]:
    """Timeout for a test that runs alone on the main thread: SIGALRM raises ``TaskTimeout``
    there (the watchdog's asynchronous exception is for pool threads). Blocking calls are
    interrupted by the signal, so a sleeping or waiting test stops too."""
    if not seconds or _setitimer is None:
        yield
        return

    def on_alarm(signum: int, frame: object) -> None:
        raise _engine.TaskTimeout(timeout_message(seconds))

    previous = _signal(signal.SIGALRM, on_alarm)
    _setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        _setitimer(signal.ITIMER_REAL, 0)
        _signal(signal.SIGALRM, previous)
