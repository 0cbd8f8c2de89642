"""-x/--maxfail, interrupts, pytest.exit, SystemExit, and the options that must keep working."""

from __future__ import annotations

import sysconfig
import textwrap

import pytest

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))

SLOW_GROUP = """
import time
import pytest
pytestmark = pytest.mark.parallelizable("children")

def test_fail():
    assert False

{more}
"""


def test_exitfirst_starts_no_new_tests(pytester: pytest.Pytester):
    more = "\n".join(f"def test_slow_{i}():\n    time.sleep(0.2)\n" for i in range(20))
    pytester.makepyfile(SLOW_GROUP.format(more=more))
    result = pytester.runpytest("--threadpool", "2", "-x")
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == 1
    assert outcomes.get("passed", 0) <= 2
    result.stdout.fnmatch_lines(["*stopping after 1 failures*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_maxfail(pytester: pytest.Pytester):
    pytester.makepyfile(
        textwrap.dedent("""
        import pytest, time
        pytestmark = pytest.mark.parallelizable("children")
        def test_f1(): assert False
        def test_f2(): time.sleep(0.05); assert False
        """)
        + "\n".join(f"def test_s{i}(): __import__('time').sleep(0.2)" for i in range(20))
    )
    result = pytester.runpytest("--threadpool", "2", "--maxfail=2")
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == 2
    assert outcomes.get("passed", 0) < 20


def test_pytest_exit_in_parallel_test_ends_session(pytester: pytest.Pytester):
    pytester.makepyfile(
        textwrap.dedent("""
        import pytest, time
        pytestmark = pytest.mark.parallelizable("children")
        def test_exit(): pytest.exit("enough", returncode=3)
        def test_other(): time.sleep(0.1)
        """)
        + "\n".join(f"def test_later{i}(): pass" for i in range(10))
    )
    result = pytester.runpytest_subprocess("--threadpool", "2")
    assert result.ret == 3
    result.stdout.fnmatch_lines(["*Exit: enough*"])


def test_keyboard_interrupt_in_test_body_aborts_session(pytester: pytest.Pytester):
    pytester.makepyfile(
        textwrap.dedent("""
        import pytest
        pytestmark = pytest.mark.parallelizable("children")
        def test_ok(): pass
        def test_interrupt(): raise KeyboardInterrupt
        """)
        + "\n".join(f"def test_later{i}(): __import__('time').sleep(0.05)" for i in range(10))
    )
    result = pytester.runpytest_subprocess("--threadpool", "2")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*KeyboardInterrupt*"])


def test_system_exit_is_a_failure(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import sys, pytest
        pytestmark = pytest.mark.parallelizable("children")
        def test_exit(): sys.exit(2)
        def test_ok(): pass
        """
    )
    result = pytester.runpytest("--threadpool", "2")
    result.assert_outcomes(passed=1, failed=1)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-k", "test_a"], {"passed": 1, "deselected": 2}),
        (["-m", "slow"], {"passed": 1, "deselected": 2}),
    ],
)
def test_selection_options(pytester: pytest.Pytester, args: list[str], expected: dict):
    pytester.makeini("[pytest]\nmarkers = slow\n")
    pytester.makepyfile(
        """
        import pytest
        pytestmark = pytest.mark.parallelizable("children")
        def test_a(): pass
        def test_b(): pass
        @pytest.mark.slow
        def test_c(): pass
        """
    )
    pytester.runpytest("--threadpool", "2", *args).assert_outcomes(**expected)


def test_collect_only(pytester: pytest.Pytester):
    pytester.makepyfile("def test_a(): pass\ndef test_b(): pass\n")
    result = pytester.runpytest("--threadpool", "2", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*test_a*", "*test_b*", "2 tests collected*"])


def test_last_failed(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import pytest
        pytestmark = pytest.mark.parallelizable("children")
        def test_a(): pass
        def test_b(): assert 0
        """
    )
    pytester.runpytest("--threadpool", "2").assert_outcomes(passed=1, failed=1)
    sequential = pytester.runpytest("--lf", "-p", "no:threadpool").parseoutcomes()
    pytester.runpytest("--threadpool", "2").assert_outcomes(passed=1, failed=1)
    parallel = pytester.runpytest("--threadpool", "2", "--lf").parseoutcomes()
    parallel.pop("warnings", None)
    assert parallel == sequential
    assert sequential["failed"] == 1 and "passed" not in sequential


def test_setup_show_falls_back_to_sequential(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import pytest
        pytestmark = pytest.mark.parallelizable("children")
        @pytest.fixture
        def fx(): return 1
        def test_a(fx): pass
        """
    )
    result = pytester.runpytest("--threadpool", "2", "--setup-show")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(
        ["*SETUP    F fx*", "*--setup-show needs tests to run one at a time*"]
    )


def test_durations_and_junitxml(pytester: pytest.Pytester):
    pytester.makepyfile(
        textwrap.dedent("""
        import pytest
        pytestmark = pytest.mark.parallelizable("children")
        """)
        + "\n".join(f"def test_{i}(): pass" for i in range(30))
    )
    result = pytester.runpytest("--threadpool", "4", "--durations=3", "--junitxml=out.xml")
    result.assert_outcomes(passed=30)
    result.stdout.fnmatch_lines(["*slowest 3 durations*"])
    text = (pytester.path / "out.xml").read_text()
    assert text.count("<testcase ") == 30


def test_build_notice(pytester: pytest.Pytester):
    """The build is named in the header; on a GIL build that is where the note about CPU-bound
    tests goes (not a warning: a suite run with -W error must still run)."""
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest("--threadpool", "2", "-W", "error")
    result.assert_outcomes(passed=1)
    if FREE_THREADED:
        result.stdout.fnmatch_lines(["threadpool: 2 threads, free-threaded build"])
        result.stdout.no_fnmatch_line("*CPU-bound*")
    else:
        result.stdout.fnmatch_lines(
            ["threadpool: 2 threads, GIL build: the GIL limits parallel speedup (*CPU-bound*)"]
        )


def test_interrupt_still_tears_down_fixtures(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import pytest
        pytestmark = pytest.mark.parallelizable("children")

        @pytest.fixture(scope="module")
        def shared():
            yield
            print("SHARED-TORN-DOWN")

        @pytest.fixture
        def own():
            yield
            print("OWN-TORN-DOWN")

        def test_a(shared, own): raise KeyboardInterrupt
        def test_b(shared): pass
        """
    )
    result = pytester.runpytest_subprocess("--threadpool", "2", "-s")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert "OWN-TORN-DOWN" in result.stdout.str()
    assert "SHARED-TORN-DOWN" in result.stdout.str()


def test_durations_and_cpu_share_are_recorded_for_the_next_run(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import time, pytest
        pytestmark = pytest.mark.parallelizable("children")
        def test_busy():
            end = time.thread_time() + 0.2
            while time.thread_time() < end:
                pass
        def test_sleeps(): time.sleep(0.2)
        """
    )
    pytester.runpytest("--threadpool", "2").assert_outcomes(passed=2)
    import json

    cache = pytester.path / ".pytest_cache" / "v" / "threadpool"
    durations = json.loads((cache / "durations").read_text())
    busy = "test_durations_and_cpu_share_are_recorded_for_the_next_run.py::test_busy"
    sleeps = busy.replace("test_busy", "test_sleeps")
    assert durations[busy] >= 0.2 and durations[sleeps] >= 0.2
    if FREE_THREADED:  # only a GIL build asks which tests are CPU-bound
        assert not (cache / "cpu-share").exists()
    else:
        shares = json.loads((cache / "cpu-share").read_text())
        assert shares[busy] > 0.5 > shares[sleeps]
    pytester.runpytest("--threadpool", "2").assert_outcomes(passed=2)


def test_cpu_bound_tests_run_on_the_main_thread_of_a_gil_build(pytester: pytest.Pytester):
    """From the second run on, a GIL build runs tests known to be CPU-bound on the main thread
    (no GIL hand-offs); I/O-bound ones stay on workers. Shared scopes still close last."""
    pytester.makepyfile(
        """
        import threading, time, pytest
        pytestmark = pytest.mark.parallelizable("children")
        EVENTS = []

        @pytest.fixture(scope="module")
        def shared():
            yield
            EVENTS.append(("teardown", "shared"))
            with open("events.txt", "w") as f:
                f.write(repr(EVENTS))

        def note(name):
            EVENTS.append((name, threading.current_thread().name))

        def busy():
            end = time.thread_time() + 0.05
            while time.thread_time() < end:
                pass

        def test_busy_1(shared): busy(); note("busy_1")
        def test_sleep_1(shared): time.sleep(0.05); note("sleep_1")
        def test_busy_2(shared): busy(); note("busy_2")
        def test_sleep_2(shared): time.sleep(0.05); note("sleep_2")
        """
    )
    import ast
    import sysconfig

    for run in (1, 2):
        pytester.runpytest("--threadpool", "2").assert_outcomes(passed=4)
        events = ast.literal_eval((pytester.path / "events.txt").read_text())
        assert events[-1] == ("teardown", "shared") and len(events) == 5
        threads = dict(events[:-1])
        assert threads["sleep_1"].startswith("threadpool-worker")
        assert threads["sleep_2"].startswith("threadpool-worker")
        on_main = run == 2 and not sysconfig.get_config_var("Py_GIL_DISABLED")
        for name in ("busy_1", "busy_2"):
            assert (threads[name] == "MainThread") is on_main, (run, threads)


def test_variants_stay_in_order_when_some_run_on_the_main_thread(pytester: pytest.Pytester):
    """children: variants of one function never overlap, wherever the GIL-build scheduler puts
    them (a CPU-bound variant and an I/O-bound one of the same function)."""
    pytester.makepyfile(
        """
        import time, pytest
        pytestmark = pytest.mark.parallelizable("children")
        RUNNING = []

        @pytest.mark.parametrize("kind", ["busy", "sleep", "busy2", "sleep2"])
        def test_variant(kind):
            assert not RUNNING, f"{kind} overlaps {RUNNING}"
            RUNNING.append(kind)
            if kind.startswith("busy"):
                end = time.thread_time() + 0.05
                while time.thread_time() < end:
                    pass
            else:
                time.sleep(0.05)
            RUNNING.remove(kind)

        def test_other(): time.sleep(0.05)
        """
    )
    for _ in range(2):
        pytester.runpytest("--threadpool", "2").assert_outcomes(passed=5)
