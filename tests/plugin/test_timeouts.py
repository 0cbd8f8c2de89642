"""Per-test timeouts enforced by the engine's watchdog."""

from __future__ import annotations

import sys

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


WAITS = """
    import queue, threading, time, pytest
    from time import sleep
    pytestmark = pytest.mark.parallelizable("children")

    @pytest.fixture
    def resource(request, tmp_path_factory):
        yield
        # written by the test's own teardown, on its worker, after the timeout
        (tmp_path_factory.getbasetemp().parent / f"torn-down-{request.node.name}").touch()

    def test_sleep(resource):
        time.sleep(60)

    def test_sleep_imported_by_name(resource):
        sleep(60)

    def test_event_wait(resource):
        threading.Event().wait(60)

    def test_condition_wait(resource):
        cond = threading.Condition()
        with cond:
            cond.wait()

    def test_queue_get(resource):
        queue.Queue().get()

    def test_thread_join(resource):
        thread = threading.Thread(target=time.sleep, args=(8,), daemon=True)
        thread.start()
        thread.join()
"""
WAIT_TESTS = [
    "test_sleep",
    "test_sleep_imported_by_name",
    "test_event_wait",
    "test_condition_wait",
    "test_queue_get",
    "test_thread_join",
]


def test_timeout_ends_blocking_waits_and_tears_down(pytester: pytest.Pytester):
    """Tests blocked in sleep and the threading waits stop at their timeout: FAILED with the
    line they were blocked on (on the free-threaded build too), fixtures torn down on their
    worker, no worker abandoned, not HUNG."""
    pytester.makepyfile(WAITS)
    result = pytester.runpytest_subprocess("--threadpool", "6", "--threadpool-timeout", "0.5")
    result.assert_outcomes(failed=len(WAIT_TESTS))
    output = result.stdout.str()
    assert "HUNG" not in output and "abandoned" not in output
    for line in (
        ">       time.sleep(60)",
        ">       sleep(60)",
        ">       threading.Event().wait(60)",
        ">           cond.wait()",
        ">       queue.Queue().get()",
        ">       thread.join()",
    ):
        assert line in result.stdout.lines, line
    assert output.count("TaskTimeout: Timeout after 0.5 s") >= len(WAIT_TESTS)
    # the subprocess's basetemp is pytester.path / "runpytest-0": its parent is pytester.path
    torn_down = {p.name for p in pytester.path.glob("torn-down-*")}
    assert torn_down >= {f"torn-down-{name}" for name in WAIT_TESTS}, torn_down
    assert result.duration < 30  # each wait is 60 s or unbounded


def test_waits_are_restored_after_the_run(pytester: pytest.Pytester):
    import threading
    import time

    before = (time.sleep, threading._allocate_lock, threading.Thread.join)  # type: ignore[attr-defined]
    pytester.makepyfile(
        """
        import time, threading, pytest
        from time import sleep
        pytestmark = pytest.mark.parallelizable("children")
        def test_a(): time.sleep(0.01)
        def test_b(): pytest.exit("enough", returncode=3)
        """
    )
    result = pytester.inline_run("--threadpool", "2")
    assert result.ret == 3
    assert (time.sleep, threading._allocate_lock, threading.Thread.join) == before  # type: ignore[attr-defined]
    module = sys.modules.get("test_waits_are_restored_after_the_run")
    if module is not None:
        assert module.sleep is before[0]


def test_ctrl_c_ends_waiting_tests_and_tears_them_down(pytester: pytest.Pytester):
    """KeyboardInterrupt (here raised by a test, as Ctrl-C is delivered) interrupts pool tests
    blocked in waits: their function fixtures are torn down, the session ends at once."""
    pytester.makepyfile(
        """
        import threading, time, pytest
        pytestmark = pytest.mark.parallelizable("children")
        started = threading.Barrier(3)

        @pytest.fixture
        def resource(request, tmp_path_factory):
            yield
            (tmp_path_factory.getbasetemp().parent / f"torn-down-{request.node.name}").touch()

        def test_sleeping(resource):
            started.wait()
            time.sleep(60)

        def test_waiting(resource):
            started.wait()
            threading.Event().wait()

        def test_interrupts():
            started.wait()
            time.sleep(0.3)
            raise KeyboardInterrupt
        """
    )
    result = pytester.runpytest_subprocess("--threadpool", "3")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    torn_down = {p.name for p in pytester.path.glob("torn-down-*")}
    assert torn_down == {"torn-down-test_sleeping", "torn-down-test_waiting"}, torn_down
    assert result.duration < 30
