"""Per-test timeouts enforced by the engine's watchdog."""

from __future__ import annotations

import pytest


def test_overrunning_test_fails_with_timeout_and_others_pass(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import time, pytest
        pytestmark = pytest.mark.parallelizable("children")

        def test_busy_loop():
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                pass

        def test_fine(): pass

        @pytest.mark.timeout(5)
        def test_own_marker_allows_more():
            time.sleep(0.6)
        """
    )
    result = pytester.runpytest("--threadpool", "2", "--threadpool-timeout", "0.5")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*def test_busy_loop*", "*TaskTimeout: Timeout after 0.5 s"])


def test_test_stuck_in_c_is_reported_hung_and_run_continues(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import threading, pytest
        pytestmark = pytest.mark.parallelizable("children")
        never = threading.Lock()
        never.acquire()

        def test_stuck():
            never.acquire()  # blocks in C, never wakes for the async exception

        def test_after_1(): pass
        def test_after_2(): pass
        """
    )
    result = pytester.runpytest_subprocess("--threadpool", "2", "--threadpool-timeout", "0.3")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*HUNG *test_stuck*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_bad_timeout_marker_is_one_line_error(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import pytest
        pytestmark = pytest.mark.parallelizable("children")
        @pytest.mark.timeout("soon")
        def test_a(): pass
        def test_b(): pass
        """
    )
    result = pytester.runpytest("--threadpool", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: *test_a: invalid timeout 'soon'*"])


def test_timeout_applies_to_tests_that_run_alone(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import time, pytest

        @pytest.mark.not_parallelizable
        def test_alone_and_slow():
            time.sleep(30)

        def test_unmarked_busy():
            while True:
                pass

        @pytest.mark.parallelizable("children")
        class TestPool:
            def test_a(self): pass
            def test_b(self): pass
        """
    )
    result = pytester.runpytest_subprocess("--threadpool", "2", "--threadpool-timeout", "0.5")
    result.assert_outcomes(passed=2, failed=2)
    # Count the traceback's "E" lines: the short summary repeats the message only when the
    # terminal is wide enough, so counting the whole output depends on COLUMNS.
    raised = [
        line
        for line in result.stdout.lines
        if line.startswith("E ") and "TaskTimeout: Timeout after 0.5 s" in line
    ]
    assert len(raised) == 2
    assert result.duration < 20
