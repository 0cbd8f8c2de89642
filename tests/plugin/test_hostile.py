"""Hostile-test corpus: tests that damage process-wide state (clocks, streams, hooks, cwd,
environment, interpreter settings, locks) while other tests run beside them.

Each case is a small suite: the hostile test(s) plus bystanders that overlap with them in time.
It runs in a subprocess (the damage is process-wide) sequentially and with --threadpool 4.
The threaded run must account for every test (one junitxml testcase per collected test), must
not crash (no INTERNALERROR), and, where the sequential run survives (exit code 0 or 1), must
give the same exit code and per-test outcomes.

Bystanders wait with ``threading.Event().wait`` bound at import (a hostile test may replace
``time.sleep``, and freezegun rebinds every module attribute that *is* a real time function),
print, log and assert only what no hostile change can alter, so their outcomes are the same in
both runs. Hostile tests do their damage and then wait with it in place, so the bystanders and
the runner's main thread meet it; most restore it in ``finally``, as real tests do, some never
do."""

from __future__ import annotations

import ast
import textwrap
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

SUITE = "test_hostile_suite"
TIMEOUT = 60  # seconds a subprocess run may take before it counts as hung

PRELUDE = """
import io, logging, os, sys, threading
import pytest

pytestmark = pytest.mark.parallelizable("children")

# Bound at import: hostile tests may replace time.sleep, or freeze the time module's clocks.
_pause = threading.Event().wait
_WINDOW_OVER = threading.Event()


def _hold(seconds=0.2):
    # A hostile test keeps its damage in place this long, while bystanders run beside it.
    _pause(seconds)
    _WINDOW_OVER.set()
"""

# Sequentially the hostile tests come first and have closed the window when the bystanders
# start, so only the threaded run waits for it. Some bystanders end inside the window, so the
# main thread reports them (and starts the next ones) while the damage is in place.
BYSTANDERS = """

def _bystander(n, wait=None):
    print(f"bystander {n} says hello")
    print(f"bystander {n} on stderr", file=sys.stderr)
    logging.getLogger("bystander").warning("bystander %d logs", n)
    if wait is None:
        _WINDOW_OVER.wait(1)
    else:
        _pause(wait)
    print(f"bystander {n} says goodbye")
    assert sum(range(100)) == 4950


def test_bystander_1():
    _bystander(1, 0.05)


def test_bystander_2():
    _bystander(2)


def test_bystander_3(tmp_path):
    (tmp_path / "note.txt").write_text("written")
    _bystander(3, 0.1)


def test_bystander_4():
    _bystander(4)


def test_bystander_fails():
    assert 1 + 1 == 3


def test_bystander_skips():
    pytest.skip("not today")
"""

# Each value is the hostile part of a suite; PRELUDE goes before it and BYSTANDERS after it.
CASES = {
    # -- clocks ----------------------------------------------------------------------------
    "time_replaced_by_constants": """
        import time

        def test_stops_the_clocks_by_hand():
            saved = time.time, time.monotonic, time.perf_counter
            time.time = lambda: 1000.0
            time.monotonic = lambda: 5.0
            time.perf_counter = lambda: 7.0
            try:
                _hold()
                assert time.monotonic() == 5.0
            finally:
                time.time, time.monotonic, time.perf_counter = saved
    """,
    "time_monotonic_raises": """
        import time

        def test_monotonic_raises():
            saved = time.monotonic

            def broken():
                raise IndexError("no more ticks")

            time.monotonic = broken
            try:
                _hold()
                with pytest.raises(IndexError):
                    time.monotonic()
            finally:
                time.monotonic = saved
    """,
    "time_time_and_perf_counter_raise": """
        import time

        def test_wall_clock_and_perf_counter_raise():
            saved = time.time, time.perf_counter

            def broken():
                raise OverflowError("clock broke")

            time.time = time.perf_counter = broken
            try:
                _hold()
            finally:
                time.time, time.perf_counter = saved
    """,
    "time_sleep_replaced": """
        import time

        def test_sleep_raises():
            saved = time.sleep

            def no_sleeping(seconds):
                raise RuntimeError("sleep is not allowed in this test")

            time.sleep = no_sleeping
            try:
                _hold()
                with pytest.raises(RuntimeError):
                    time.sleep(1)
            finally:
                time.sleep = saved
    """,
    "freezegun": """
        import datetime, time
        from freezegun import freeze_time

        @freeze_time("2001-02-03 04:05:06", tick=True)
        def test_frozen_and_ticking():
            _hold()
            assert datetime.date.today() == datetime.date(2001, 2, 3)
            assert time.time() < 981173106 + 60
    """,
    # freezegun keeps one process-wide stack of frozen times and undoes its patches when the
    # stack empties, from the freeze_time that started first. In a threaded run these two
    # overlap and stop in the order they started, so the last to stop is the second one, which
    # never patched anything. (Sequentially the first waits 0.3 s for the second in vain.)
    "freezegun_overlapping": """
        import datetime
        from freezegun import freeze_time

        FIRST_IN = threading.Event()
        SECOND_IN = threading.Event()
        FIRST_OUT = threading.Event()

        def test_freeze_first():
            with freeze_time("2001-02-03"):
                FIRST_IN.set()
                SECOND_IN.wait(0.3)
                assert datetime.date.today() == datetime.date(2001, 2, 3)
            FIRST_OUT.set()

        def test_freeze_second():
            FIRST_IN.wait(0.3)
            with freeze_time("2001-02-03"):
                SECOND_IN.set()
                FIRST_OUT.wait(0.3)
                assert datetime.date.today() == datetime.date(2001, 2, 3)
            _WINDOW_OVER.set()
    """,
    # -- process-wide functions and hooks -----------------------------------------------------
    "os_write_replaced": """
        def test_os_write_fails():
            saved = os.write

            def disk_full(fd, data):
                raise OSError(28, "No space left on device")

            os.write = disk_full
            try:
                _hold()
            finally:
                os.write = saved
    """,
    "threading_thread_replaced": """
        def test_no_threads_allowed():
            saved = threading.Thread

            class NoThreads(saved):
                def start(self):
                    raise RuntimeError("threads are disabled here")

            threading.Thread = NoThreads
            try:
                _hold()
            finally:
                threading.Thread = saved
    """,
    "threading_excepthook_replaced": """
        def test_own_thread_excepthook():
            saved = threading.excepthook
            seen = []
            threading.excepthook = lambda args: seen.append(args.exc_type)
            try:
                t = threading.Thread(target=lambda: 1 / 0)
                t.start()
                t.join()
                _hold()
                assert ZeroDivisionError in seen
            finally:
                threading.excepthook = saved
    """,
    "sys_excepthook_replaced": """
        def test_own_excepthook():
            saved = sys.excepthook
            sys.excepthook = lambda *exc_info: None
            try:
                _hold()
            finally:
                sys.excepthook = saved
    """,
    "sys_unraisablehook_replaced": """
        class _RaisesOnDel:
            def __del__(self):
                raise ValueError("from __del__")

        def test_own_unraisablehook():
            saved = sys.unraisablehook
            seen = []
            sys.unraisablehook = lambda unraisable: seen.append(unraisable.exc_type)
            try:
                _RaisesOnDel()
                _hold()
                assert ValueError in seen
            finally:
                sys.unraisablehook = saved
    """,
    # -- standard streams ---------------------------------------------------------------------
    "stdout_stderr_swapped": """
        def test_swaps_stdout_and_stderr():
            saved = sys.stdout, sys.stderr
            out, err = io.StringIO(), io.StringIO()
            sys.stdout, sys.stderr = out, err
            try:
                print("to my buffer")
                print("to my error buffer", file=sys.stderr)
                _hold()
                assert "to my buffer" in out.getvalue()
                assert "to my error buffer" in err.getvalue()
            finally:
                sys.stdout, sys.stderr = saved
    """,
    # The blocks overlap in a threaded run and are left in the order they were entered, so the
    # second one restores the first one's buffer, which stays sys.stdout. (Sequentially the
    # first waits 0.3 s for the second in vain.)
    "redirect_stdout_out_of_order": """
        from contextlib import redirect_stderr, redirect_stdout

        FIRST_IN = threading.Event()
        SECOND_IN = threading.Event()
        FIRST_OUT = threading.Event()

        def test_redirect_first():
            buf = io.StringIO()
            with redirect_stdout(buf), redirect_stderr(buf):
                print("first")
                FIRST_IN.set()
                SECOND_IN.wait(0.3)
            FIRST_OUT.set()
            assert "first" in buf.getvalue()

        def test_redirect_second():
            FIRST_IN.wait(0.3)
            buf = io.StringIO()
            with redirect_stdout(buf), redirect_stderr(buf):
                print("second")
                SECOND_IN.set()
                FIRST_OUT.wait(0.3)
            _WINDOW_OVER.set()
            assert "second" in buf.getvalue()
    """,
    "stdout_replaced_not_restored": """
        def test_replaces_stdout_for_good():
            sys.stdout = io.StringIO()
            print("nobody reads this")
            _hold()
    """,
    "stdout_stderr_closed": """
        def test_closes_stdout_and_stderr():
            print("last words")
            sys.stdout.close()
            sys.stderr.close()
            _hold()
    """,
    # -- process state ------------------------------------------------------------------------
    "signal_handler": """
        import signal

        def test_installs_signal_handler():
            got = []
            saved = signal.signal(signal.SIGUSR1, lambda signum, frame: got.append(signum))
            try:
                signal.raise_signal(signal.SIGUSR1)
                _hold()
                assert got == [signal.SIGUSR1]
            finally:
                signal.signal(signal.SIGUSR1, saved)
    """,
    "chdir_restored": """
        def test_chdir(tmp_path):
            saved = os.getcwd()
            os.chdir(tmp_path)
            try:
                _hold()
                assert os.getcwd() == str(tmp_path)
            finally:
                os.chdir(saved)
    """,
    "chdir_not_restored": """
        def test_chdir_for_good(tmp_path):
            os.chdir(tmp_path)
            _hold()
    """,
    "environ_cleared_restored": """
        def test_clears_environ():
            saved = dict(os.environ)
            os.environ.clear()
            try:
                _hold()
                assert "PATH" not in os.environ
            finally:
                os.environ.update(saved)
    """,
    "environ_cleared_not_restored": """
        def test_clears_environ_for_good():
            os.environ.clear()
            _hold()
    """,
    # -- interpreter settings -----------------------------------------------------------------
    "gc_disable_freeze": """
        import gc

        def test_gc_off_and_frozen():
            gc.disable()
            gc.freeze()
            try:
                _hold()
                assert not gc.isenabled()
            finally:
                gc.unfreeze()
                gc.enable()
    """,
    "recursion_limit": """
        def _depth():
            frame, n = sys._getframe(), 0
            while frame is not None:
                frame, n = frame.f_back, n + 1
            return n

        def test_low_recursion_limit():
            saved = sys.getrecursionlimit()
            sys.setrecursionlimit(_depth() + 40)
            try:
                def down(n):
                    return down(n + 1)

                with pytest.raises(RecursionError):
                    down(0)
                _hold()
            finally:
                sys.setrecursionlimit(saved)
    """,
    "settrace_setprofile": """
        def test_trace_and_profile():
            events = []

            def tracer(frame, event, arg):
                events.append(event)
                return tracer

            sys.settrace(tracer)
            sys.setprofile(lambda frame, event, arg: None)
            try:
                _hold()
                sum(range(3))
            finally:
                sys.settrace(None)
                sys.setprofile(None)
    """,
    "settrace_all_threads": """
        def test_trace_every_thread():
            def tracer(frame, event, arg):
                return tracer

            threading.settrace_all_threads(tracer)
            threading.setprofile_all_threads(lambda frame, event, arg: None)
            try:
                _hold()
            finally:
                threading.settrace_all_threads(None)
                threading.setprofile_all_threads(None)
    """,
    "logging_disable": """
        def test_logging_off():
            logging.disable(logging.CRITICAL)
            try:
                _hold()
                assert not logging.getLogger("x").isEnabledFor(logging.CRITICAL)
            finally:
                logging.disable(logging.NOTSET)
    """,
    "logging_shutdown": """
        def test_logging_shutdown():
            logging.getLogger("x").warning("before shutdown")
            logging.shutdown()
            _hold()
    """,
    "warnings_resetwarnings": """
        import warnings

        def test_reset_warning_filters():
            with warnings.catch_warnings(record=True) as caught:
                warnings.resetwarnings()
                warnings.simplefilter("always")
                warnings.warn("mine", UserWarning)
                _hold()
            assert any("mine" in str(w.message) for w in caught)
    """,
    "faulthandler_disable": """
        import faulthandler

        def test_faulthandler_off():
            faulthandler.disable()
            _hold()
            assert not faulthandler.is_enabled()
    """,
    "switch_interval": """
        def test_tiny_switch_interval():
            saved = sys.getswitchinterval()
            sys.setswitchinterval(1e-6)
            try:
                _hold()
                sum(range(10_000))
            finally:
                sys.setswitchinterval(saved)
    """,
}

# test_holds_the_lock takes a module-global lock and never releases it, waiting meanwhile on an
# event nobody sets; test_blocks_on_the_lock then waits for the lock. Its acquire has a finite
# timeout only so that a sequential run ends (it fails there after 3.5 s); in the threaded run
# it is blocked in C past its 1 s timeout and the 2 s grace, i.e. hung (had the watchdog been
# late, the acquire's return would deliver the pending timeout: a failure all the same).
LOCK_CASE = """
LOCK = threading.Lock()
HELD = threading.Event()
NEVER = threading.Event()


def test_holds_the_lock():
    LOCK.acquire()
    HELD.set()
    NEVER.wait(0.3)
    _WINDOW_OVER.set()


@pytest.mark.timeout(1)
def test_blocks_on_the_lock():
    HELD.wait(5)
    assert LOCK.acquire(timeout=3.5), "the lock is still held"
"""


def suite_source(case: str) -> str:
    return PRELUDE + textwrap.dedent(case) + BYSTANDERS


def collected(source: str) -> list[str]:
    """The suite's test names (no parametrization or classes in these suites)."""
    return [
        node.name
        for node in ast.parse(source).body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    ]


def junit_cases(path: Path) -> list[tuple[str, str]]:
    """(test name, outcome) per junitxml testcase, in file order."""
    assert path.is_file(), f"{path.name} was not written"
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        kinds = sorted(child.tag for child in case if child.tag in {"failure", "error", "skipped"})
        cases.append((case.get("name"), ",".join(kinds) or "passed"))
    return cases


def junit_failure_message(path: Path, name: str) -> str:
    for case in ET.parse(path).getroot().iter("testcase"):
        if case.get("name") == name:
            return " ".join(child.get("message", "") for child in case)
    raise AssertionError(f"{name} not in {path.name}")


@pytest.fixture(autouse=True)
def _only_this_plugin(monkeypatch: pytest.MonkeyPatch):
    """The suites run with no other installed plugin (one with an autouse fixture that uses
    monkeypatch would make every test run alone)."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    args = ("-p", "pytest_threadpool.plugin", "-p", "no:cacheprovider", *args)
    try:
        return pytester.runpytest_subprocess(*args, timeout=TIMEOUT)
    except pytester.TimeoutExpired:
        pytest.fail(f"pytest {' '.join(args)} did not finish within {TIMEOUT} s")


def run_both(pytester: pytest.Pytester, source: str):
    pytester.makepyfile(**{SUITE: source})
    sequential = run(pytester, "--junitxml=seq.xml")
    threaded = run(pytester, "--threadpool", "4", "--junitxml=par.xml")
    return sequential, threaded


def tail(result: pytest.RunResult) -> str:
    return "threaded output (tail):\n" + (result.stdout.str() + result.stderr.str())[-6000:]


def assert_every_test_reported_once(pytester: pytest.Pytester, source: str, threaded):
    """No INTERNALERROR, and one junitxml testcase per collected test."""
    output = threaded.stdout.str() + threaded.stderr.str()
    assert "INTERNALERROR" not in output, tail(threaded)
    names = Counter(name for name, _ in junit_cases(pytester.path / "par.xml"))
    expected = Counter(collected(source))
    assert names == expected, (
        f"missing: {sorted(expected - names)}, extra: {sorted(names - expected)}\n" + tail(threaded)
    )


# Cases whose damage breaks sequential pytest itself, so its outcomes are no reference.
SEQUENTIAL_DAMAGED = {
    # Sequentially they are pytest's capture streams: every later test errors in setup and
    # teardown ("I/O operation on closed file").
    "stdout_stderr_closed",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_suite(pytester: pytest.Pytester, case: str):
    source = suite_source(CASES[case])
    sequential, threaded = run_both(pytester, source)
    assert_every_test_reported_once(pytester, source, threaded)
    if sequential.ret in (0, 1) and case not in SEQUENTIAL_DAMAGED:
        seq = dict(junit_cases(pytester.path / "seq.xml"))
        par = dict(junit_cases(pytester.path / "par.xml"))
        differing = {name: (seq[name], par.get(name)) for name in seq if par.get(name) != seq[name]}
        assert not differing, f"(sequential, threaded) outcomes: {differing}\n" + tail(threaded)
        assert threaded.ret == sequential.ret, tail(threaded)


def test_blocked_forever_on_a_lock_another_test_holds(pytester: pytest.Pytester):
    """Every test reported, the run ends, the blocked test fails with a timeout."""
    source = PRELUDE + LOCK_CASE + BYSTANDERS
    sequential, threaded = run_both(pytester, source)
    assert sequential.ret == 1
    assert_every_test_reported_once(pytester, source, threaded)
    par = dict(junit_cases(pytester.path / "par.xml"))
    assert par["test_blocks_on_the_lock"] == "failure", tail(threaded)
    assert par["test_holds_the_lock"] == "passed", tail(threaded)
    message = junit_failure_message(pytester.path / "par.xml", "test_blocks_on_the_lock")
    assert "Timeout after 1 s" in message, tail(threaded)
    assert threaded.ret == 1


# State a test changes for the rest of the process, and words that say what changed.
STATE_CHANGES = {
    "chdir": ("chdir_not_restored", "test_chdir_for_good", ("working directory", "cwd")),
    "environ": (
        "environ_cleared_not_restored",
        "test_clears_environ_for_good",
        ("os.environ", "environment"),
    ),
    "stdout": ("stdout_replaced_not_restored", "test_replaces_stdout_for_good", ("sys.stdout",)),
    "signal": (None, "test_leaves_a_signal_handler", ("signal", "SIGUSR1")),
}

SIGNAL_NOT_RESTORED = """
    import signal

    def test_leaves_a_signal_handler():
        signal.signal(signal.SIGUSR1, lambda signum, frame: None)
        _hold()
"""


@pytest.mark.parametrize("change", sorted(STATE_CHANGES))
def test_threaded_run_names_the_test_that_changed_process_state(
    pytester: pytest.Pytester, change: str
):
    """A change that inherently reaches the other tests of a threaded run is reported on a
    line naming the test that made it and what it changed."""
    case, test_name, words = STATE_CHANGES[change]
    source = suite_source(CASES[case] if case else SIGNAL_NOT_RESTORED)
    pytester.makepyfile(**{SUITE: source})
    threaded = run(pytester, "--threadpool", "4", "--junitxml=par.xml")
    assert dict(junit_cases(pytester.path / "par.xml"))[test_name] == "passed"
    lines = (threaded.stdout.str() + threaded.stderr.str()).splitlines()
    assert any(
        test_name in line and any(w in line for w in words) and not line.startswith("FAILED")
        for line in lines
    ), lines


def test_logging_shutdown_while_another_test_builds_a_handler(pytester: pytest.Pytester):
    """A handler is in logging's handler list before it has its lock: logging.shutdown from one
    test while another test constructs a handler must not fail on the half-built one (the race
    occurred with the handlers workers create for pytest's log capture)."""
    pytester.makepyfile(
        test_shutdown_race="""
        import logging
        import threading

        import pytest

        pytestmark = pytest.mark.parallelizable("children")
        registered = threading.Event()
        shut_down = threading.Event()


        class SlowHandler(logging.Handler):
            def createLock(self):  # called after the handler is registered
                registered.set()
                assert shut_down.wait(10)
                super().createLock()


        def test_builds_a_handler():
            assert SlowHandler().lock is not None


        def test_shuts_logging_down():
            assert registered.wait(10)
            try:
                logging.shutdown()
            finally:
                shut_down.set()
        """
    )
    result = run(pytester, "--threadpool", "2")
    result.assert_outcomes(passed=2)
