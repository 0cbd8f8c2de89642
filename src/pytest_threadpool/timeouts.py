"""Per-test timeouts for threaded runs, enforced by the engine's watchdog.

Sources, most specific first: ``@pytest.mark.timeout(N)``, ``--threadpool-timeout`` /
ini ``threadpool_timeout``, then pytest-timeout's ``--timeout`` / ``PYTEST_TIMEOUT`` / ini
``timeout`` when that plugin is installed. 0 means no timeout. pytest-timeout's signal and thread
methods cannot work inside a pool (SIGALRM reaches only the main thread, the thread method ends
the process), so for threaded runs that plugin is switched off and this module stands in for it:
its header lines, its ``timeout_func_only`` (ini, or ``func_only=True`` on the marker: only the
call phase counts), its failure wording (``Failed: Timeout (>1.0s) from pytest-timeout.``) and
its ``--session-timeout``. ``--threadpool-timeout`` keeps its own wording.

A timeout is delivered as an asynchronous ``TaskTimeout``, which fires when the thread runs
bytecode; a test blocked in a wait would not see it. During the run ``time.sleep``, the lock
``threading.Condition.wait`` blocks on (so ``Event.wait``, ``Queue.get``, ``Barrier.wait``,
``Semaphore.acquire``) and ``Thread.join`` are replaced by engine versions that a timeout or
interrupt of the calling pool test ends right away (see ``_engine/waits.c``); on other threads
they are the originals.
"""

from __future__ import annotations

import _thread
import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from pytest_threadpool import _engine

# Bound at import: a test may replace signal.signal / setitimer, time.sleep or threading's
# functions while the run goes on.
_signal = signal.signal
_setitimer = getattr(signal, "setitimer", None)
_get_ident = _thread.get_ident
_MAIN_IDENT = threading.main_thread().ident
_environ_get = os.environ.get
_REAL_SLEEP = time.sleep
_REAL_ALLOCATE_LOCK = threading._allocate_lock  # type: ignore[attr-defined]
_REAL_JOIN = threading.Thread.join
_Failed: Any = pytest.fail.Exception
_ExceptionInfo = pytest.ExceptionInfo

TIMEOUT_MARKER = "timeout"
PYTEST_TIMEOUT = "pytest-timeout"
THREADPOOL = "threadpool"
# pytest-timeout's own failure message (pytest_timeout.PYTEST_FAILURE_MESSAGE)
PYTEST_TIMEOUT_MESSAGE = "Timeout (>%ss) from pytest-timeout."
WATCHDOG_METHOD = "threadpool watchdog (pytest-timeout's {method} method cannot reach pool threads)"


@dataclass(frozen=True)
class TimeoutSpec:
    seconds: float  # 0: none
    func_only: bool  # only the call phase counts (pytest-timeout's func_only)
    source: str  # PYTEST_TIMEOUT or THREADPOOL: whose wording the failure uses


SPEC_KEY = pytest.StashKey[TimeoutSpec]()
NO_TIMEOUT = TimeoutSpec(0.0, False, THREADPOOL)


def _positive(value: object) -> float | None:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


def _has_option(config: pytest.Config, name: str) -> bool:
    try:
        config.getoption(name)
    except ValueError:
        return False
    return True


def _ini(config: pytest.Config, name: str) -> Any:
    try:
        return config.getini(name)
    except ValueError:
        return None


@dataclass(frozen=True)
class PytestTimeoutSettings:
    """pytest-timeout's settings, read as that plugin reads them (``get_env_settings``)."""

    timeout: float | None
    method: str
    func_only: bool
    session_timeout: float | None

    @classmethod
    def read(cls, config: pytest.Config) -> PytestTimeoutSettings | None:
        if not _has_option(config, "timeout"):
            return None  # pytest-timeout is not installed, or disabled (-p no:timeout)
        value = config.getoption("timeout", None)
        if value is None:
            value = _environ_get("PYTEST_TIMEOUT") or _ini(config, "timeout") or None
        method = config.getoption("timeout_method", None) or _ini(config, "timeout_method")
        session = config.getoption("session_timeout", None)
        if session is None:
            session = _ini(config, "session_timeout") or None
        return cls(
            timeout=_positive(value) if value is not None else None,
            method=method or ("signal" if hasattr(signal, "SIGALRM") else "thread"),
            func_only=bool(_ini(config, "timeout_func_only")),
            session_timeout=_positive(session) if session is not None else None,
        )


class Timeouts:
    def __init__(self, config: pytest.Config, default: float) -> None:
        self.pytest_timeout = PytestTimeoutSettings.read(config)
        pt = self.pytest_timeout
        if default:
            self.default = TimeoutSpec(default, False, THREADPOOL)
        elif pt is not None and pt.timeout:
            self.default = TimeoutSpec(pt.timeout, pt.func_only, PYTEST_TIMEOUT)
        else:
            self.default = NO_TIMEOUT
        # What the marker means: pytest-timeout's marker when that plugin is installed.
        self.marker_source = PYTEST_TIMEOUT if pt is not None else THREADPOOL
        self.default_func_only = pt.func_only if pt is not None else False
        self._inherited: dict[pytest.Node, pytest.Mark | None] = {}  # see _closest_marker
        if pt is not None and pt.session_timeout:
            config.stash[SESSION_EXPIRE_KEY] = (
                _engine.wall_time() + pt.session_timeout,
                pt.session_timeout,
            )

    def spec(self, item: pytest.Item) -> TimeoutSpec:
        marker = self._closest_marker(item)
        if marker is None:
            return self.default
        value = marker.args[0] if marker.args else marker.kwargs.get("timeout")
        func_only = marker.kwargs.get("func_only")
        if func_only is not None and not isinstance(func_only, bool):
            raise pytest.UsageError(
                f"{item.nodeid}: invalid func_only {func_only!r} for the timeout marker; "
                "use True or False"
            )
        if func_only is None:
            func_only = self.default.func_only if value is None else self.default_func_only
        if value is None:  # e.g. @pytest.mark.timeout(func_only=True): the configured timeout
            return TimeoutSpec(self.default.seconds, func_only, self.default.source)
        seconds = _positive(value)
        if seconds is None:
            raise pytest.UsageError(
                f"{item.nodeid}: invalid timeout {value!r}; use @pytest.mark.timeout(SECONDS)"
                " with a number of seconds >= 0"
            )
        return TimeoutSpec(seconds, func_only, self.marker_source)

    def for_task(self, item: pytest.Item) -> float:
        """The deadline of the item's whole run (0 when none, or when only its call phase
        counts: that deadline is armed around the call, see pytest_runtest_call). Records the
        item's timeout for its reports."""
        spec = self.spec(item)
        if spec is not NO_TIMEOUT:  # what _spec_of answers for an item with none
            item.stash[SPEC_KEY] = spec
        return 0.0 if spec.func_only else spec.seconds

    def _closest_marker(self, item: pytest.Item) -> pytest.Mark | None:
        """``item.get_closest_marker("timeout")``, with the answer for its parent looked up
        once per parent (the main thread asks for every test it submits)."""
        for mark in item.own_markers:
            if mark.name == TIMEOUT_MARKER:
                return mark
        parent = item.parent
        if parent is None:
            return None
        try:
            return self._inherited[parent]
        except KeyError:
            mark = self._inherited[parent] = parent.get_closest_marker(TIMEOUT_MARKER)
            return mark


SESSION_EXPIRE_KEY = pytest.StashKey[tuple[float, float]]()


def timeout_message(seconds: float) -> str:
    return f"Timeout after {seconds:g} s"


def _spec_of(item: pytest.Item) -> TimeoutSpec:
    return item.stash.get(SPEC_KEY, NO_TIMEOUT)


def failure_message(item: pytest.Item) -> str:
    """The wording of a timeout failure: pytest-timeout's when its settings or marker set it."""
    spec = _spec_of(item)
    if spec.source == PYTEST_TIMEOUT:
        return PYTEST_TIMEOUT_MESSAGE % spec.seconds
    return timeout_message(spec.seconds)


def hung_message(item: pytest.Item, stack: str | None) -> str:
    """The failure of a test that ignored its timeout (blocked in C) and was abandoned."""
    spec = _spec_of(item)
    head = failure_message(item)
    if spec.source == PYTEST_TIMEOUT:
        head = f"Failed: {head}"
    message = (
        f"{head}: the test hung (no response to the timeout within the grace period; "
        "probably blocked in C code). Its worker thread was abandoned and replaced; its "
        "function-scoped fixtures were not torn down."
    )
    if stack:
        if spec.source == PYTEST_TIMEOUT:
            # the shape of pytest-timeout's stack dump
            rule = f"{'+' * 35} Timeout {'+' * 35}"
            message += f"\n\n{rule}\n{stack.rstrip()}\n{rule}"
        else:
            message += "\n\nStack of the hung test:\n" + stack
    return message


# -- hooks (registered for threaded sessions only) ------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_report_header(config: pytest.Config) -> list[str] | None:
    """pytest-timeout's header lines (that plugin is switched off for threaded runs), naming
    what really enforces the timeout."""
    settings = PytestTimeoutSettings.read(config)
    if settings is None:
        return None
    lines = []
    if settings.timeout:
        lines.append(
            f"timeout: {settings.timeout}s\n"
            f"timeout method: {WATCHDOG_METHOD.format(method=settings.method)}\n"
            f"timeout func_only: {settings.func_only}"
        )
    session = config.getoption("session_timeout", None)
    if session:
        lines.append(f"session timeout: {session}s")
    return lines or None


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """pytest-timeout's --session-timeout: checked after each test, as that plugin does."""
    try:
        return (yield)
    finally:
        expire = item.config.stash.get(SESSION_EXPIRE_KEY, None)
        if expire is not None and expire[0] < _engine.wall_time():
            item.session.shouldfail = f"session-timeout: {expire[1]} sec exceeded"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """func_only timeouts: the deadline covers the call phase only, as pytest-timeout's does."""
    spec = _spec_of(item)
    if not (spec.func_only and spec.seconds):
        return (yield)
    if _engine.set_task_deadline(spec.seconds):  # on a pool worker
        try:
            return (yield)
        finally:
            _engine.set_task_deadline(0)
    if _get_ident() == _MAIN_IDENT:
        with main_thread_alarm(spec.seconds):
            return (yield)
    return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # type: ignore[no-untyped-def]
    """Name the timeout in the report of a test the watchdog stopped: pytest-timeout's
    ``Failed: Timeout (>Ns) from pytest-timeout.`` when its settings or marker set it, else
    ``TaskTimeout: Timeout after N s``; the traceback shows where the test was stopped."""
    excinfo = call.excinfo
    if excinfo is not None and isinstance(excinfo.value, _engine.TaskTimeout):
        spec = _spec_of(item)
        if spec.seconds and spec.source == PYTEST_TIMEOUT:
            failed = _Failed(failure_message(item), pytrace=True)
            failed = failed.with_traceback(excinfo.value.__traceback__)
            call.excinfo = _ExceptionInfo.from_exception(failed)
        elif spec.seconds:
            excinfo.value.args = (timeout_message(spec.seconds),)
    return (yield)


# -- enforcement -----------------------------------------------------------------------------


@contextmanager
def main_thread_alarm(seconds: float) -> Iterator[None]:
    """Timeout for a test that runs alone on the main thread: SIGALRM raises ``TaskTimeout``
    there (the watchdog's asynchronous exception is for pool threads). Blocking calls are
    interrupted by the signal, so a sleeping or waiting test stops too."""
    if not seconds or _setitimer is None:
        yield
        return

    def on_alarm(signum: int, frame: object) -> None:
        __tracebackhide__ = True
        raise _engine.TaskTimeout(timeout_message(seconds))

    previous = _signal(signal.SIGALRM, on_alarm)
    _setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        _setitimer(signal.ITIMER_REAL, 0)
        _signal(signal.SIGALRM, previous)


def _join_of(original: Any) -> Any:
    @functools.wraps(original)
    def join(self: threading.Thread, timeout: float | None = None) -> None:
        """Thread.join that a timeout or interrupt of the calling pool test ends (it waits in
        slices of at most 50 ms: a thread's end has no wake-up to hook)."""
        __tracebackhide__ = True
        if (timeout is not None and timeout <= 0) or not _engine.in_task():
            return original(self, timeout)

        def step(slice_: float) -> bool:
            original(self, slice_)
            return not self.is_alive()

        _engine.wait_until(step, timeout)
        return None

    return join


def _rebind(modules: list[Any], old: object, new: object) -> list[tuple[dict, str]]:
    """Point every module attribute that *is* ``old`` (``from time import sleep``) at ``new``,
    except in this package (which binds the originals on purpose)."""
    changed = []
    for module in modules:
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict) or str(namespace.get("__name__", "")).startswith(
            "pytest_threadpool"
        ):
            continue
        for name, value in list(namespace.items()):
            if value is old:
                namespace[name] = new
                changed.append((namespace, name))
    return changed


@contextmanager
def interruptible_waits() -> Iterator[None]:
    """For the run: waits that a timeout or interrupt of the pool test blocked in them ends at
    once (the test then fails with its traceback and its fixtures are torn down, instead of
    hanging and being abandoned). Each is replaced only while it is the original (a patch
    someone made is left alone), and restored at the end."""
    patches: list[tuple[Any, str, object]] = []
    rebound: list[tuple[dict, str]] = []
    sleep = _engine.sleep
    if time.sleep is _REAL_SLEEP:
        patches.append((time, "sleep", time.sleep))
        time.sleep = sleep
        rebound = _rebind(list(sys.modules.values()), _REAL_SLEEP, sleep)
    if threading._allocate_lock is _REAL_ALLOCATE_LOCK:  # type: ignore[attr-defined]
        patches.append((threading, "_allocate_lock", _REAL_ALLOCATE_LOCK))
        threading._allocate_lock = _engine.allocate_waiter_lock  # type: ignore[attr-defined]
    if threading.Thread.join is _REAL_JOIN:
        patches.append((threading.Thread, "join", _REAL_JOIN))
        threading.Thread.join = _join_of(_REAL_JOIN)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for namespace, name in rebound:
            if namespace.get(name) is sleep:
                namespace[name] = _REAL_SLEEP
        for owner, name, value in reversed(patches):
            setattr(owner, name, value)
