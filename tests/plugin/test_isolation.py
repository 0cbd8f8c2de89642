"""Tests that must run alone, warnings, and exceptions from threads, with noisy neighbours."""

from __future__ import annotations

import pytest

from .conftest import GIL_NOTICES

NEIGHBOURS = """
import threading, time, warnings, pytest
pytestmark = pytest.mark.parallelizable("children")
active = []
lock = threading.Lock()

def _busy(tag):
    with lock:
        active.append(tag)
    try:
        for _ in range(20):
            warnings.warn(UserWarning(f"neighbour {tag}"))
            time.sleep(0.002)
    finally:
        with lock:
            active.remove(tag)

def test_n1(): _busy("n1")
def test_n2(): _busy("n2")
"""


def test_unsafe_fixtures_and_marker_run_alone_and_are_summarised(pytester: pytest.Pytester):
    pytester.makepyfile(
        NEIGHBOURS
        + """
def test_monkeypatch(monkeypatch):
    assert active == []
    monkeypatch.setenv("X_TP", "1")

def test_capfd(capfd):
    assert active == []
    print("fd out")
    assert capfd.readouterr().out == "fd out\\n"

@pytest.mark.thread_unsafe
def test_marked():
    assert active == []

def test_recwarn(recwarn):
    assert active == []
    warnings.warn(DeprecationWarning("mine"))
    assert [str(w.message) for w in recwarn] == ["mine"]

def test_pytest_warns():
    assert active == []
    with pytest.warns(UserWarning, match="own"):
        warnings.warn(UserWarning("own"))

def test_n3(): _busy("n3")
"""
    )
    result = pytester.runpytest("--threadpool", "3", "-v")
    result.assert_outcomes(passed=8, warnings=3 + GIL_NOTICES)
    result.stdout.fnmatch_lines(
        [
            "*threadpool: tests run alone*",
            "5 test(s) ran with nothing else running:*",
            "*test_monkeypatch (uses monkeypatch)*",
        ]
    )


def test_warnings_attributed_to_their_test(pytester: pytest.Pytester):
    pytester.makepyfile(NEIGHBOURS)
    result = pytester.runpytest("--threadpool", "2")
    result.assert_outcomes(passed=2, warnings=2 + GIL_NOTICES)
    text = result.stdout.str()
    summary = text.split("warnings summary")[1]
    n1 = summary.split("::test_n1")[1].split("::test_n2")[0]
    assert "neighbour n1" in n1 and "neighbour n2" not in n1


def test_unhandled_thread_exception_warns_for_the_test_that_started_it(
    pytester: pytest.Pytester,
):
    pytester.makepyfile(
        """
        import threading, time, pytest
        pytestmark = pytest.mark.parallelizable("children")

        def test_spawner():
            def boom():
                raise RuntimeError("thread failed")
            t = threading.Thread(target=boom)
            t.start(); t.join()

        def test_bystander():
            time.sleep(0.2)
        """
    )
    result = pytester.runpytest("--threadpool", "2")
    result.assert_outcomes(passed=2, warnings=1 + GIL_NOTICES)
    summary = result.stdout.str().split("warnings summary")[1]
    assert "test_spawner" in summary and "test_bystander" not in summary
    assert "RuntimeError: thread failed" in summary


def test_unraisable_exception_warns(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import gc, pytest
        pytestmark = pytest.mark.parallelizable("children")

        class Bad:
            def __del__(self):
                raise ValueError("del failed")

        def test_unraisable():
            Bad()
            gc.collect()

        def test_other(): pass
        """
    )
    result = pytester.runpytest("--threadpool", "2")
    result.assert_outcomes(passed=2, warnings=1 + GIL_NOTICES)
    result.stdout.fnmatch_lines(["*test_unraisable*", "*ValueError: del failed*"])


def test_repeated_warning_recorded_once_per_test_as_sequentially(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import warnings, pytest

        def _warn_many():
            for _ in range(10):
                warnings.warn(UserWarning("same place"))

        @pytest.mark.parallelizable("children")
        class TestPool:
            def test_a(self): _warn_many()
            def test_b(self): _warn_many()

        def test_sequential(): _warn_many()
        """
    )
    sequential = pytester.runpytest("-p", "no:threadpool").parseoutcomes()
    parallel = pytester.runpytest("--threadpool", "2").parseoutcomes()
    assert sequential["warnings"] == 3
    assert parallel["warnings"] == 3 + GIL_NOTICES
