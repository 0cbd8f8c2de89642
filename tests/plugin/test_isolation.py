"""Tests that must run alone, warnings, and exceptions from threads, with noisy neighbours."""

from __future__ import annotations

import sys

import pytest

# Warning filters are per context (3.14t; -X context_aware_warnings on 3.14+).
CONTEXT_AWARE = bool(getattr(sys.flags, "context_aware_warnings", False))

NEIGHBOURS = """
import sys, threading, time, warnings, pytest
CONTEXT_AWARE = bool(getattr(sys.flags, "context_aware_warnings", False))
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
    assert CONTEXT_AWARE or active == []
    with pytest.warns(UserWarning, match="own"):
        warnings.warn(UserWarning("own"))

def test_n3(): _busy("n3")
"""
    )
    result = pytester.runpytest("--threadpool", "3", "-v")
    result.assert_outcomes(passed=8, warnings=3)
    # With context-aware warnings (3.14t; -X on 3.14+) pytest.warns' filters are its thread's
    # own: that test runs with the others.
    alone = 4 if CONTEXT_AWARE else 5
    result.stdout.fnmatch_lines(
        [
            f"threadpool: 3 workers, *{alone} test(s) ran with nothing else running:*",
            "*test_monkeypatch (uses monkeypatch)*",
        ]
    )


def test_warnings_attributed_to_their_test(pytester: pytest.Pytester):
    pytester.makepyfile(NEIGHBOURS)
    result = pytester.runpytest("--threadpool", "2")
    result.assert_outcomes(passed=2, warnings=2)
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
    result.assert_outcomes(passed=2, warnings=1)
    # (up to the end-of-run line, which names the longest test)
    summary = result.stdout.str().split("warnings summary")[1].split("\nthreadpool: 2 workers")[0]
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
    result.assert_outcomes(passed=2, warnings=1)
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
    assert parallel["warnings"] == 3


def test_pytest_per_test_filters_apply_in_the_pool(pytester: pytest.Pytester):
    """pytest's own per-test filters (PytestRemovedIn9Warning is an error in pytest 9) hold for
    pool tests as for sequential ones."""
    pytester.makepyfile(
        """
        import warnings, pytest
        pytestmark = pytest.mark.parallelizable("children")
        def test_removed():
            warnings.warn(pytest.PytestRemovedIn9Warning("gone"))
        def test_user():
            warnings.warn(UserWarning("shown"))
        """
    )
    sequential = pytester.runpytest("-p", "no:threadpool").parseoutcomes()
    parallel = pytester.runpytest("--threadpool", "2").parseoutcomes()
    # An error: pytest 9 makes PytestRemovedIn9Warning one, and under older pytest so does the
    # -W error::pytest.PytestDeprecationWarning that this suite adds to every run.
    assert sequential == {"failed": 1, "passed": 1, "warnings": 1}
    assert parallel == sequential


def test_importorskip_silences_only_its_own_thread(pytester: pytest.Pytester):
    """importorskip ignores the imported module's warnings, as sequentially, without silencing
    a test that warns on another worker meanwhile (-W error still fails it)."""
    pytester.syspathinsert()
    pytester.makepyfile(
        sync_points="import threading\nimporting = threading.Event()\nwarned = threading.Event()",
        slow_module="""
            import warnings, sync_points
            sync_points.importing.set()
            warnings.warn(DeprecationWarning("slow_module is old"))
            assert sync_points.warned.wait(20)
        """,
        test_meanwhile="""
            import warnings, pytest, sync_points
            pytestmark = pytest.mark.parallelizable("children")
            def test_imports():
                pytest.importorskip("slow_module")
            def test_warns_meanwhile():
                assert sync_points.importing.wait(20)
                try:
                    warnings.warn(UserWarning("raised while another test imports"))
                finally:
                    sync_points.warned.set()
        """,
    )
    result = pytester.runpytest(
        "--threadpool", "2", "-W", "error::UserWarning", "-W", "error::DeprecationWarning", "-rA"
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["PASSED *::test_imports", "FAILED *::test_warns_meanwhile - UserWarning: raised while*"]
    )


def test_concurrent_failures_leave_warning_filters_intact(pytester: pytest.Pytester):
    """Every failure's display parses source under pytest's warning silencing; on workers that
    used to swap process-wide filters, and concurrent failures could leave "ignore" installed,
    so later -W error failures were lost."""
    failing = "\n".join(f"def test_fail_{i:02d}():\n    assert {i} == -1\n" for i in range(40))
    pytester.makepyfile(
        test_a_failures="import pytest\npytestmark = pytest.mark.parallelizable('children')\n"
        + failing,
        test_b_later="""
            import warnings, pytest
            pytestmark = pytest.mark.parallelizable("children")
            def test_warns_1(): warnings.warn(UserWarning("must fail"))
            def test_warns_2(): warnings.warn(UserWarning("must fail too"))
        """,
    )
    for _ in range(3):
        result = pytester.runpytest("--threadpool", "4", "-W", "error::UserWarning")
        result.assert_outcomes(failed=42)
