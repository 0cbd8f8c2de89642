"""``item.ihook`` during a threaded run: resolved once per path, and seen by pool tests with
their own logging kept for the reporting thread.

Every ``item.ihook`` access asks the session for the hook proxy of the item's path, which walks
the conftest bookkeeping and stats the path. A test's protocol does that a dozen times, on every
worker at once. Collection is over when the run starts, so the answer for a path cannot change:
it is computed once and shared (reads of a dict are safe across threads).

A test's own code may log reports while it runs: pytest's ``subtests`` fixture and unittest's
``subTest`` call ``pytest_runtest_logreport`` for each subtest from inside the test. On a pool
worker that would call every reporting plugin (terminal, junitxml...) from several threads at
once, beside the thread that logs the tests' reports. A pool test therefore sees a view of the
proxy whose ``pytest_runtest_logreport`` keeps the report with the test's run (and the phase it
was made in); reporting.py logs it in its place among the test's reports, where and when they
are logged, as a sequential run would have.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from pytest_threadpool.context import current_run
from pytest_threadpool.dict_reads import lookup


@contextmanager
def cached_hook_proxies(session: pytest.Session) -> Iterator[None]:
    original = session.gethookproxy
    cache: dict[Any, Any] = {}
    views: dict[Any, _PoolTestHooks] = {}

    def gethookproxy(fspath: os.PathLike[str]) -> Any:
        proxy = lookup(cache, fspath)
        if proxy is None:
            proxy = cache[fspath] = original(fspath)
        run = current_run()
        if run is None or run.inline:
            return proxy  # the main thread, the reporting thread, tests that run alone
        view = lookup(views, fspath)
        if view is None:
            view = views[fspath] = _PoolTestHooks(proxy)
        return view

    session.gethookproxy = gethookproxy  # type: ignore[method-assign]
    try:
        yield
    finally:
        del session.gethookproxy


class _PoolTestHooks:
    """A hook proxy as a pool test's code sees it: its ``pytest_runtest_logreport`` keeps
    the report for later (see the module doc); every other hook is the proxy's own."""

    def __init__(self, proxy: Any) -> None:
        self._proxy = proxy

    def __getattr__(self, name: str) -> Any:
        hook = getattr(self._proxy, name)
        if name == "pytest_runtest_logreport":
            hook = _KeptLogreport(hook)
        self.__dict__[name] = hook  # next time found without __getattr__
        return hook


class _KeptLogreport:
    def __init__(self, hook: Any) -> None:
        self._hook = hook

    def __call__(self, *, report: Any) -> list[Any]:
        run = current_run()
        if run is None or run.inline or run.protocol_done:
            return self._hook(report=report)  # a thread outliving its test: logged now
        run.inner_reports.append((run.phase, report))
        return []

    def __getattr__(self, name: str) -> Any:  # the hook caller's other methods
        return getattr(self._hook, name)
