"""Fault corpus: faults that must be reported correctly, and faults that kill the process."""

from __future__ import annotations

import signal
import textwrap

import pytest


def test_segfault_names_the_running_test(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import ctypes, time, pytest
        pytestmark = pytest.mark.parallelizable("children")
        def test_crash():
            time.sleep(0.1)
            ctypes.string_at(0)
        def test_slow_neighbour():
            time.sleep(5)
        """
    )
    result = pytester.runpytest_subprocess("--threadpool", "2")
    assert result.ret == -signal.SIGSEGV
    err = result.stderr.str()
    assert "pytest-threadpool: fatal signal SIGSEGV" in err
    assert "test_segfault_names_the_running_test.py::test_crash" in err
    assert "test_slow_neighbour" in err
    assert err.index("pytest-threadpool: fatal signal") < err.index("Fatal Python error")


def test_os_exit_names_the_test(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import os, pytest
        pytestmark = pytest.mark.parallelizable("children")
        def test_exits(): os._exit(7)
        def test_other(): pass
        """
    )
    result = pytester.runpytest_subprocess("--threadpool", "2")
    assert result.ret == 7
    result.stderr.fnmatch_lines(["*os._exit(7) called by *::test_exits*"])


def test_forked_children_exiting_or_crashing_do_not_speak_for_the_run(pytester: pytest.Pytester):
    """A child forked by a test inherits the os._exit wrapper and the crash handler, but the
    run goes on in the parent: a child that exits (multiprocessing workers end with os._exit)
    or crashes says nothing in the plugin's name; the parent's results are unaffected."""
    pytester.makepyfile(
        """
        import ctypes, multiprocessing, os, signal, pytest
        pytestmark = pytest.mark.parallelizable("children")

        def _square(x):
            return x * x

        def _fork(child):
            pid = os.fork()
            if pid == 0:
                child()
                os._exit(3)
            return os.waitpid(pid, 0)[1]

        def test_child_exits():
            assert os.waitstatus_to_exitcode(_fork(lambda: os._exit(0))) == 0

        def test_child_crashes():
            status = _fork(lambda: ctypes.string_at(0))
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSEGV

        def test_multiprocessing_pool():
            with multiprocessing.get_context("fork").Pool(2) as pool:
                assert pool.map(_square, range(4)) == [0, 1, 4, 9]
        """
    )
    result = pytester.runpytest_subprocess(
        "--threadpool", "3", "-W", "ignore::DeprecationWarning", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=3)
    output = result.stdout.str() + result.stderr.str()
    assert "pytest-threadpool:" not in output


# A shell that starts the test run in the background ignores SIGINT, and Python keeps an ignored
# SIGINT ignored: the Ctrl-C tests install the handler an interactive run would have.
SIGINT_HANDLER_CONFTEST = (
    "import signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
)
# The start of a Ctrl-C test module: a module fixture that records its teardown in a file.
SIGINT_MODULE_HEAD = """
import os, signal, threading, time, pytest
pytestmark = pytest.mark.parallelizable("children")

@pytest.fixture(scope="module")
def shared():
    yield
    with open("teardowns.txt", "a") as f:
        f.write("shared\\n")
"""


@pytest.mark.parametrize("small_window", [False, True], ids=["window-default", "window-2"])
def test_sigint_during_run_stops_promptly_and_tears_down_shared_fixtures(
    pytester: pytest.Pytester, small_window: bool
):
    """Ctrl-C mid-run: the session ends as interrupted, promptly, and the module fixture is torn
    down once. With a submission window of 2 the interrupt arrives while the main thread waits
    for room in the pool, most tests of the group never submitted but holding the fixture."""
    conftest = SIGINT_HANDLER_CONFTEST
    if small_window:
        conftest += (
            "import pytest_threadpool.runner as runner\n"
            "runner.WINDOW_MIN = 2\nrunner.WINDOW_PER_WORKER = 1\n"
        )
    pytester.makeconftest(conftest)
    pytester.makepyfile(
        SIGINT_MODULE_HEAD
        + textwrap.dedent(
            """
            def test_sends_sigint(shared):
                threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
                time.sleep(0.5)
            """
        )
        + "\n".join(f"def test_slow_{i}(shared):\n    time.sleep(0.4)\n" for i in range(30))
    )
    result = pytester.runpytest_subprocess("--threadpool", "2")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*KeyboardInterrupt*"])
    assert result.duration < 8
    assert (pytester.path / "teardowns.txt").read_text() == "shared\n"


def test_sigint_ends_the_run_while_tests_sleep_and_names_them(pytester: pytest.Pytester):
    """Ctrl-C while pool tests are blocked in time.sleep / Event.wait (where an asynchronous
    KeyboardInterrupt cannot land until they wake): the run does not wait for them. It ends
    interrupted, names the tests that were running and still tears the shared fixture down."""
    pytester.makeconftest(SIGINT_HANDLER_CONFTEST)
    pytester.makepyfile(
        SIGINT_MODULE_HEAD
        + textwrap.dedent(
            """
            all_started = threading.Barrier(3)

            def test_sleeps(shared):
                all_started.wait()
                time.sleep(60)

            def test_waits(shared):
                all_started.wait()
                threading.Event().wait(60)

            def test_sends_sigint(shared):
                all_started.wait()
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(60)
            """
        )
    )
    result = pytester.runpytest_subprocess("--threadpool", "3", timeout=50)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert result.duration < 30  # the tests would sleep for 60 s
    result.stdout.fnmatch_lines(["*tests running when the session was aborted*"])
    for name in ("test_sleeps", "test_waits"):
        result.stdout.fnmatch_lines([f"INTERRUPTED *::{name}"])
    assert (pytester.path / "teardowns.txt").read_text() == "shared\n"


def test_teardown_errors_at_every_scope_are_reported_not_internal(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture(scope="session")
        def s():
            yield
            raise RuntimeError("session teardown")

        @pytest.fixture(scope="module")
        def m():
            yield
            raise RuntimeError("module teardown")

        @pytest.fixture(scope="class")
        def c():
            yield
            raise RuntimeError("class teardown")

        @pytest.fixture
        def f():
            yield
            raise RuntimeError("function teardown")

        @pytest.mark.parallelizable("children")
        class TestAll:
            def test_a(self, s, m, c, f): pass
            def test_b(self, s, m, c): pass
        """
    )
    sequential = pytester.runpytest("-p", "no:threadpool", "-p", "no:cacheprovider")
    parallel = pytester.runpytest("--threadpool", "2", "-p", "no:cacheprovider")
    assert "INTERNALERROR" not in parallel.stdout.str()
    assert parallel.ret == sequential.ret
    seq = sequential.parseoutcomes()
    par = parallel.parseoutcomes()
    par.pop("warnings", None)
    seq.pop("warnings", None)
    assert par == seq
    for text in ("session teardown", "module teardown", "class teardown", "function teardown"):
        assert text in parallel.stdout.str()


def test_test_leaking_running_threads_does_not_hang_the_session(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import threading, time, pytest
        pytestmark = pytest.mark.parallelizable("children")
        def test_leaks():
            threading.Thread(target=time.sleep, args=(1,), daemon=True).start()
        def test_other(): pass
        """
    )
    result = pytester.runpytest_subprocess("--threadpool", "2")
    result.assert_outcomes(passed=2)


def test_deadlock_with_timeout_fails_only_that_test(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import threading, pytest
        pytestmark = pytest.mark.parallelizable("children")
        def test_deadlock():
            lock = threading.Lock()
            lock.acquire()
            while not lock.acquire(timeout=0.05):
                pass
        def test_fine(): pass
        """
    )
    result = pytester.runpytest("--threadpool", "2", "--threadpool-timeout", "0.5")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*Timeout after 0.5 s*"])


def test_protocol_error_on_a_worker_fails_that_test_and_the_run_goes_on(
    pytester: pytest.Pytester,
):
    """An exception out of pytest's protocol around a pool test (here a makereport hook; in
    real suites a hook broken by what a concurrent test did to the process) fails that test
    with the traceback; the others are reported and the session ends normally."""
    pytester.makeconftest(
        """
        def pytest_runtest_makereport(item, call):
            if item.name == "test_broken" and call.when == "call":
                raise RuntimeError("hook broke")
        """
    )
    pytester.makepyfile(
        """
        import pytest
        pytestmark = pytest.mark.parallelizable("children")
        def test_before(): pass
        def test_broken(): pass
        def test_after(): pass
        """
    )
    result = pytester.runpytest("--threadpool", "2", "--junitxml=out.xml")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        ["*pytest's protocol for this test raised RuntimeError*", "*RuntimeError: hook broke*"]
    )
    assert "INTERNALERROR" not in result.stdout.str()
    assert (pytester.path / "out.xml").read_text().count("<testcase ") == 3
