"""pytest's own timing on the engine's clocks during a threaded run.

pytest binds ``time.time`` and ``time.perf_counter`` in ``_pytest.timing`` at import, so that a
test replacing ``time.time`` cannot break its report timings. freezegun goes further: it scans
every module and replaces any attribute that *is* a real time function, and its fakes can raise
(``IndexError``) when another thread stops the freeze. Sequentially no other test runs then; in
a threaded run the tests running meanwhile (their ``CallInfo`` timings) and the main thread would
hit those fakes. During the run ``_pytest.timing`` reads the engine's clocks (C
``clock_gettime``, the same clocks as the time module's on Linux), which no scan recognises and
no patch of the time module reaches.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pytest_threadpool import _engine
from pytest_threadpool.pytest_compat import pytest_timing

_ENGINE_CLOCKS = (("time", _engine.wall_time), ("perf_counter", _engine.perf_counter))


@contextmanager
def pytest_timing_on_engine_clocks() -> Iterator[None]:
    saved = {}
    for name, clock in _ENGINE_CLOCKS:
        if hasattr(pytest_timing, name):
            saved[name] = getattr(pytest_timing, name)
            setattr(pytest_timing, name, clock)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(pytest_timing, name, value)
