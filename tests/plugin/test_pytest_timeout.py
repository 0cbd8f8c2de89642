"""pytest-timeout's settings under --threadpool: its header lines, timeout_func_only and its
failure wording, compared with what sequential pytest + pytest-timeout prints. The plugin is
opt-in in this suite (``-p no:timeout``): these runs pass ``-p timeout``."""

from __future__ import annotations

import pytest

PT = ("-p", "timeout")
POOL = ("--threadpool", "2")

SLEEPY = """
    import time, pytest
    pytestmark = pytest.mark.parallelizable("children")

    def test_sleeps():
        time.sleep(60)

    def test_fine(): pass
"""


def _header(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith(("timeout", "session timeout"))]


def test_header_lines_as_sequential_with_the_real_method(pytester: pytest.Pytester):
    pytester.makepyfile(test_a="def test_a(): pass")
    sequential = pytester.runpytest_subprocess(*PT, "--timeout", "1")
    threaded = pytester.runpytest_subprocess(*PT, *POOL, "--timeout", "1")
    assert _header(sequential.stdout.lines) == [
        "timeout: 1.0s",
        "timeout method: signal",
        "timeout func_only: False",
    ]
    assert _header(threaded.stdout.lines) == [
        "timeout: 1.0s",
        "timeout method: threadpool watchdog (pytest-timeout's signal method cannot reach pool "
        "threads)",
        "timeout func_only: False",
    ]


def test_header_from_ini_with_func_only_and_session_timeout(pytester: pytest.Pytester):
    pytester.makeini("[pytest]\ntimeout = 2\ntimeout_func_only = true\n")
    pytester.makepyfile(test_a="def test_a(): pass")
    result = pytester.runpytest_subprocess(*PT, *POOL, "--session-timeout", "100")
    assert _header(result.stdout.lines) == [
        "timeout: 2.0s",
        "timeout method: threadpool watchdog (pytest-timeout's signal method cannot reach pool "
        "threads)",
        "timeout func_only: True",
        "session timeout: 100.0s",
    ]


def test_failure_worded_as_pytest_timeout(pytester: pytest.Pytester):
    pytester.makepyfile(SLEEPY)
    sequential = pytester.runpytest_subprocess(*PT, "--timeout", "0.5")
    threaded = pytester.runpytest_subprocess(*PT, *POOL, "--timeout", "0.5")
    for result in (sequential, threaded):
        result.assert_outcomes(passed=1, failed=1)
        result.stdout.fnmatch_lines(
            [
                "*_ test_sleeps _*",
                "    def test_sleeps():",
                ">       time.sleep(60)",
                "E       Failed: Timeout (>0.5s) from pytest-timeout.",
                "*test_*.py:5: Failed",
            ]
        )
        # (the summary line is cut to the terminal's width)
        result.stdout.fnmatch_lines(["FAILED *::test_sleeps - Failed: Timeou*"])
    assert "HUNG" not in threaded.stdout.str()
    assert threaded.duration < 30  # the sleep is 60 s


def test_marker_timeout_worded_as_pytest_timeout(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import threading, pytest
        pytestmark = pytest.mark.parallelizable("children")

        @pytest.mark.timeout(0.5)
        def test_waits():
            threading.Event().wait(60)

        def test_fine(): pass
        """
    )
    result = pytester.runpytest_subprocess(*PT, *POOL)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            ">*gotit = waiter.acquire(True, timeout)",
            "E*Failed: Timeout (>0.5s) from pytest-timeout.",
        ]
    )
    assert result.duration < 30


def test_threadpool_timeout_keeps_its_own_wording(pytester: pytest.Pytester):
    pytester.makepyfile(SLEEPY)
    result = pytester.runpytest_subprocess(*PT, *POOL, "--threadpool-timeout", "0.5")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [">       time.sleep(60)", "E       *TaskTimeout: Timeout after 0.5 s"]
    )
    assert "pytest-timeout." not in result.stdout.str()


FUNC_ONLY = """
    import time, pytest
    pytestmark = pytest.mark.parallelizable("children")

    @pytest.fixture
    def slow_setup():
        time.sleep(1.5)
        yield
        time.sleep(1.5)

    def test_slow_fixture_fast_body(slow_setup):
        pass

    def test_slow_body():
        time.sleep(60)
"""


@pytest.mark.parametrize("threaded", [False, True], ids=["sequential", "threaded"])
def test_func_only_ini_times_the_call_only(pytester: pytest.Pytester, threaded: bool):
    pytester.makeini("[pytest]\ntimeout_func_only = true\n")
    pytester.makepyfile(FUNC_ONLY)
    result = pytester.runpytest_subprocess(*PT, *(POOL if threaded else ()), "--timeout", "0.5")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [">       time.sleep(60)", "E       Failed: Timeout (>0.5s) from pytest-timeout."]
    )
    result.stdout.fnmatch_lines(["FAILED *::test_slow_body*"])
    assert result.duration < 30


def test_func_only_marker_times_the_call_only(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import time, pytest
        pytestmark = pytest.mark.parallelizable("children")

        @pytest.fixture
        def slow_setup():
            time.sleep(1.5)

        @pytest.mark.timeout(0.5, func_only=True)
        def test_marker_func_only(slow_setup):
            pass

        @pytest.mark.timeout(func_only=True)
        def test_configured_timeout_func_only(slow_setup):
            time.sleep(60)

        @pytest.mark.timeout(0.5)
        def test_whole_run_counts(slow_setup):
            pass
        """
    )
    result = pytester.runpytest_subprocess(*PT, *POOL, "--timeout", "0.5")
    result.assert_outcomes(passed=1, failed=1, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at setup of test_whole_run_counts*"])
    result.stdout.fnmatch_lines(["FAILED *::test_configured_timeout_func_only*"])
    assert result.duration < 30


def test_func_only_for_a_test_that_runs_alone(pytester: pytest.Pytester):
    pytester.makeini("[pytest]\ntimeout_func_only = true\n")
    pytester.makepyfile(
        """
        import time, pytest

        @pytest.fixture
        def slow_setup():
            time.sleep(1.5)

        @pytest.mark.not_parallelizable
        def test_alone(slow_setup):
            pass

        @pytest.mark.not_parallelizable
        def test_alone_slow_body():
            time.sleep(60)

        @pytest.mark.parallelizable("children")
        class TestPool:
            def test_a(self): pass
            def test_b(self): pass
        """
    )
    result = pytester.runpytest_subprocess(*PT, *POOL, "--timeout", "0.5")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [">       time.sleep(60)", "E       Failed: Timeout (>0.5s) from pytest-timeout."]
    )
    result.stdout.fnmatch_lines(["FAILED *::test_alone_slow_body*"])
    assert result.duration < 30


def test_session_timeout_stops_the_run(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import time, pytest
        pytestmark = pytest.mark.parallelizable("children")

        @pytest.mark.parametrize("i", range(40))
        def test_slowish(i):
            time.sleep(0.2)
        """
    )
    result = pytester.runpytest_subprocess(*PT, *POOL, "--session-timeout", "0.5")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) < 40
    result.stdout.fnmatch_lines(["*session-timeout: 0.5 sec exceeded*"])
