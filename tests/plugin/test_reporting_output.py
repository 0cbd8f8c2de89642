"""Reports and captured output of pool-run tests read like a sequential run's."""

from __future__ import annotations

import textwrap

import pytest

NOISY = """
import threading, time, sys
import pytest
pytestmark = pytest.mark.parallelizable("children")

def _noise(tag):
    for i in range(50):
        print(f"{tag} out {i}")
        sys.stderr.write(f"{tag} err {i}\\n")
        time.sleep(0.001)

@pytest.fixture
def fx():
    print("fx setup")
    yield
    print("fx teardown")

def test_noisy_1(): _noise("N1")
def test_noisy_2(): _noise("N2")

def test_target(fx):
    _noise("T")
    assert False, "target fails"
"""


def test_failing_test_shows_exactly_its_own_output_per_phase(pytester: pytest.Pytester):
    pytester.makepyfile(NOISY)
    result = pytester.runpytest("--threadpool", "3")
    result.assert_outcomes(passed=2, failed=1)
    text = result.stdout.str()
    assert "Captured stdout setup" in text and "fx setup" in text
    assert "Captured stdout teardown" in text and "fx teardown" in text
    call_out = text.split("Captured stdout call")[1].split("Captured stderr call")[0]
    assert call_out.count("T out") == 50
    assert "N1" not in text and "N2" not in text
    expected = "".join(f"T out {i}\n" for i in range(50))
    assert expected in call_out.replace("\r\n", "\n")


def test_passing_tests_output_with_rP(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import pytest
        pytestmark = pytest.mark.parallelizable("children")
        def test_a(): print("hello from a")
        def test_b(): print("hello from b")
        """
    )
    result = pytester.runpytest("--threadpool", "2", "-rP")
    result.stdout.fnmatch_lines(["*PASSES*"])
    text = result.stdout.str()
    assert text.count("hello from a") == 1 and text.count("hello from b") == 1


def test_verbose_lines_each_test_once(pytester: pytest.Pytester):
    pytester.makepyfile(
        textwrap.dedent("""
        import pytest
        pytestmark = pytest.mark.parallelizable("children")
        """)
        + "\n".join(f"def test_{i}(): pass" for i in range(8))
    )
    result = pytester.runpytest("--threadpool", "4", "-v")
    for i in range(8):
        assert result.stdout.str().count(f"::test_{i} PASSED") == 1


def test_capsys_in_parallel_tests_reads_only_own_output(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import threading, pytest
        pytestmark = pytest.mark.parallelizable("children")
        barrier = threading.Barrier(2, timeout=20)

        def test_a(capsys):
            barrier.wait()
            for i in range(200): print("a", i)
            out, err = capsys.readouterr()
            assert out == "".join(f"a {i}\\n" for i in range(200))

        def test_b(capsys):
            barrier.wait()
            for i in range(200): print("b", i)
            assert capsys.readouterr().out == "".join(f"b {i}\\n" for i in range(200))
        """
    )
    pytester.runpytest("--threadpool", "2").assert_outcomes(passed=2)


def test_threadpool_report_hook_can_take_over_output(pytester: pytest.Pytester):
    pytester.makeconftest(
        """
        seen = []
        def pytest_threadpool_report(item, report, captured_out, captured_err):
            if report.when == "call":
                seen.append((item.name, captured_out))
            return True

        def pytest_terminal_summary(terminalreporter):
            for name, out in sorted(seen):
                terminalreporter.write_line(f"HOOK {name} {out.strip()}")
        """
    )
    pytester.makepyfile(
        """
        import pytest
        pytestmark = pytest.mark.parallelizable("children")
        def test_a(): print("out-a"); assert 0
        def test_b(): print("out-b")
        """
    )
    result = pytester.runpytest("--threadpool", "2")
    result.stdout.fnmatch_lines(["HOOK test_a out-a", "HOOK test_b out-b"])
    assert "Captured stdout call" not in result.stdout.str()


def test_no_capture_prints_each_test_output_whole(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import pytest, time
        pytestmark = pytest.mark.parallelizable("children")
        def test_a():
            for i in range(20): print(f"A{i}", end=" "); time.sleep(0.001)
            print()
        def test_b():
            for i in range(20): print(f"B{i}", end=" "); time.sleep(0.001)
            print()
        """
    )
    result = pytester.runpytest_subprocess("--threadpool", "2", "-s")
    result.assert_outcomes(passed=2)
    lines = result.stdout.str().splitlines()
    a_line = " ".join(f"A{i}" for i in range(20))
    b_line = " ".join(f"B{i}" for i in range(20))
    assert any(line.strip() == a_line for line in lines), lines
    assert any(line.strip() == b_line for line in lines), lines


def test_current_test_env_var_names_the_test(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import os, threading, pytest
        pytestmark = pytest.mark.parallelizable("children")
        barrier = threading.Barrier(2, timeout=20)

        def test_a():
            barrier.wait()
            assert os.environ["PYTEST_CURRENT_TEST"].endswith("::test_a (call)")
        def test_b():
            barrier.wait()
            assert os.getenv("PYTEST_CURRENT_TEST").endswith("::test_b (call)")
        """
    )
    pytester.runpytest("--threadpool", "2").assert_outcomes(passed=2)


def test_fd_level_output_is_kept_off_the_terminal_and_reported_once(pytester: pytest.Pytester):
    # os.write and subprocesses of a passing pool test go to its (unshown) sections, as
    # sequentially; C code writing to fd 1 cannot be attributed and is reported after the run.
    pytester.makepyfile(
        """
        import ctypes, os, subprocess, sys, pytest
        pytestmark = pytest.mark.parallelizable("children")
        def test_fd():
            os.write(1, b"RAW-FD-WRITE\\n")
            subprocess.run([sys.executable, "-c", "print('FROM-CHILD')"], check=True)
            ctypes.CDLL(None).write(1, b"C-FD-WRITE\\n", 11)
        def test_other(): print("python-level")
        """
    )
    result = pytester.runpytest_subprocess("--threadpool", "2", "-v")
    result.assert_outcomes(passed=2)
    text = result.stdout.str()
    assert "RAW-FD-WRITE" not in text and "FROM-CHILD" not in text
    assert text.count("C-FD-WRITE") == 1
    section = text.split("fd-level stdout not attributable")[1]
    assert "C-FD-WRITE" in section
    assert "python-level" not in text


def test_output_of_threads_started_by_a_test_belongs_to_it(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import threading, pytest
        pytestmark = pytest.mark.parallelizable("children")
        def test_spawns():
            t = threading.Thread(target=lambda: print("from helper thread"))
            t.start(); t.join()
            assert 0
        def test_quiet(): pass
        """
    )
    result = pytester.runpytest("--threadpool", "2")
    result.assert_outcomes(passed=1, failed=1)
    section = result.stdout.str().split("Captured stdout call")[1]
    assert "from helper thread" in section


def test_capteesys_reads_and_reports(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import pytest
        pytestmark = pytest.mark.parallelizable("children")
        def test_tee(capteesys):
            print("teed line")
            assert capteesys.readouterr().out == "teed line\\n"
            assert 0
        def test_other(): print("other")
        """
    )
    result = pytester.runpytest("--threadpool", "2")
    result.assert_outcomes(passed=1, failed=1)
    section = result.stdout.str().split("Captured stdout call")[1]
    assert "teed line" in section
    assert result.stdout.lines.count("teed line") == 1


def test_assertion_diffs_survive_concurrent_tests_finishing(pytester: pytest.Pytester):
    # test_late's protocol starts only once test_early runs (so its assertion hooks were set
    # first), and fails after test_early finished (and restored its hooks).
    pytester.makeconftest(
        """
        import threading, pytest
        early_running = threading.Event()
        early_done = threading.Event()

        @pytest.hookimpl(wrapper=True, tryfirst=True)
        def pytest_runtest_protocol(item):
            if item.name == "test_late":
                assert early_running.wait(20)
            try:
                return (yield)
            finally:
                if item.name == "test_early":
                    early_done.set()
        """
    )
    pytester.makepyfile(
        """
        import conftest, pytest
        pytestmark = pytest.mark.parallelizable("all")

        def test_early():
            conftest.early_running.set()

        def test_late():
            assert conftest.early_done.wait(20)
            assert [1, 2, 3] == [1, 2, 4]
        """
    )
    result = pytester.runpytest_subprocess("--threadpool", "2")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*At index 2 diff: 3 != 4*"])


def test_pool_tests_can_weakly_reference_sys_stdout(pytester: pytest.Pytester):
    """Libraries key per-stream state weakly by sys.stdout (structlog's write locks)."""
    pytester.makepyfile(
        """
        import sys, weakref, pytest
        pytestmark = pytest.mark.parallelizable("children")
        LOCKS = weakref.WeakKeyDictionary()

        @pytest.mark.parametrize("n", range(4))
        def test_weak_keys(n):
            LOCKS.setdefault(sys.stdout, object())
            LOCKS.setdefault(sys.stderr.buffer, object())
            assert weakref.ref(sys.stdout)() is sys.stdout
            print("out", n)
        """
    )
    result = pytester.runpytest("--threadpool", "2", "-rP")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["out 3"])
