"""Hooks that pytest-threadpool adds (registered with ``pytest_addhooks``)."""

from __future__ import annotations

import pytest


@pytest.hookspec(firstresult=True)
def pytest_threadpool_report(
    item: pytest.Item, report: pytest.TestReport, captured_out: str, captured_err: str
) -> bool | None:
    """Called for each report of a test run by the thread pool, before the report is logged,
    with the output that test wrote during that phase. Called where the test's reports are
    logged: on the reporting thread or the main thread, one test at a time, in report order.

    Return ``True`` to take over the output: pytest-threadpool then neither attaches it to the
    report's "Captured stdout/stderr" sections nor prints it (with ``-s``).
    """
