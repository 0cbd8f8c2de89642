"""Reporting from a thread of its own (reporting_lane): every reporting hook still sees each
test whole, one test at a time, file by file, as in a sequential run; hook errors, -x and the
"tear everything down" rule behave as they did when the main thread reported."""

from __future__ import annotations

import json
import textwrap
from collections import Counter

import pytest

RECORDER = """
import json, threading

_events = []


def _record(hook, nodeid, when=None, outcome=None):
    _events.append([hook, nodeid, when, outcome, threading.current_thread().name])


def pytest_runtest_logstart(nodeid, location):
    _record("logstart", nodeid)


def pytest_runtest_logreport(report):
    _record("logreport", report.nodeid, report.when, report.outcome)


def pytest_runtest_logfinish(nodeid, location):
    _record("logfinish", nodeid)


def pytest_sessionfinish(session):
    with open({out!r}, "w") as out:
        json.dump(_events, out)
"""

SLEEPY_MODULE = """
import time
import pytest

pytestmark = pytest.mark.parallelizable("children")


@pytest.fixture(scope="module")
def resource():
    yield "r"
    print("module resource torn down")


{tests}
"""


def _suite(pytester: pytest.Pytester, out: str) -> None:
    pytester.makeconftest(RECORDER.format(out=out))
    for name in ("a", "b", "c"):
        tests = "\n".join(
            f"def test_{i}(resource):\n"
            f"    time.sleep({(i * 7 % 5) * 0.004})\n"
            f"    assert {i} % 9 != 4\n"
            for i in range(20)
        )
        tests += textwrap.dedent("""
            class TestGrouped:
                def test_one(self):
                    pass

                def test_two(self):
                    pytest.skip("not here")
            """)
        pytester.makepyfile(**{f"test_{name}": SLEEPY_MODULE.format(tests=tests)})


def _events(path) -> list[list]:
    with open(path) as source:
        return json.load(source)


def test_hooks_see_each_test_whole_in_file_order(pytester: pytest.Pytester) -> None:
    seq_out = str(pytester.path / "seq.json")
    _suite(pytester, seq_out)
    sequential = pytester.runpytest("-p", "no:threadpool", "-p", "no:cacheprovider")
    sequential.assert_outcomes(passed=57, failed=6, skipped=3)

    threaded_out = str(pytester.path / "threaded.json")
    pytester.makeconftest(RECORDER.format(out=threaded_out))
    threaded = pytester.runpytest("--threadpool", "4", "-p", "no:cacheprovider")
    threaded.assert_outcomes(passed=57, failed=6, skipped=3)

    events = _events(threaded_out)
    # One test at a time: logstart, its three reports, logfinish, with nothing in between.
    position = 0
    threads: Counter[str] = Counter()
    order: list[str] = []
    while position < len(events):
        block = events[position : position + 5]
        nodeid = block[0][1]
        assert [(e[0], e[1], e[2]) for e in block] == [
            ("logstart", nodeid, None),
            ("logreport", nodeid, "setup"),
            ("logreport", nodeid, "call"),
            ("logreport", nodeid, "teardown"),
            ("logfinish", nodeid, None),
        ], block
        assert len({e[4] for e in block}) == 1, block  # one thread per test
        threads[block[0][4]] += 1
        order.append(nodeid)
        position += 5
    # Every test reported once, with the outcomes a sequential run reports.
    assert sorted(order) == sorted({e[1] for e in _events(seq_out)})
    assert sorted(map(tuple, (e[:4] for e in events))) == sorted(
        map(tuple, (e[:4] for e in _events(seq_out)))
    )
    # File by file, as sequentially (the terminal prints each file's name once).
    files = [nodeid.split("::")[0] for nodeid in order]
    assert [f for i, f in enumerate(files) if i == 0 or files[i - 1] != f] == [
        "test_a.py",
        "test_b.py",
        "test_c.py",
    ]
    # The main thread reports only tests that close scopes with something to tear down
    # (each module's last test here); the rest is the reporting thread's.
    assert threads["MainThread"] == 3, threads
    assert set(threads) == {"MainThread", "threadpool-reporter-0"}, threads
    # The module fixture's teardown output joined the last test of each module, as in a
    # sequential run (junitxml would show it there; the terminal shows a failure's).
    threaded.stdout.no_fnmatch_line("*INTERNALERROR*")


def test_a_reporting_hook_error_ends_the_run_as_sequentially(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
        def pytest_runtest_logreport(report):
            if report.when == "call" and report.nodeid.endswith("test_3"):
                raise RuntimeError("hook broke")
    """)
    pytester.makepyfile("""
        import time
        import pytest
        pytestmark = pytest.mark.parallelizable("children")

        def test_1(): pass
        def test_2(): pass
        def test_3(): pass
        def test_4(): time.sleep(60)
        def test_5(): pass
    """)
    sequential = pytester.runpytest("-p", "no:threadpool", "-p", "no:cacheprovider")
    threaded = pytester.runpytest("--threadpool", "2", "-p", "no:cacheprovider")
    for result in (sequential, threaded):
        assert result.ret == pytest.ExitCode.INTERNAL_ERROR
        output = pytest.LineMatcher(result.outlines + result.errlines)
        output.fnmatch_lines(["INTERNALERROR> RuntimeError: hook broke"])
    # test_4 was running: the run ended without waiting for its 60 s sleep.
    assert threaded.duration < 30


def test_exitfirst_with_reports_given_back_keeps_teardown_rule(pytester: pytest.Pytester) -> None:
    """-x: reports already handed to the reporting thread when a failure stops the session come
    back to the main thread; the last test reported still tears everything down (pytest's rule
    when a session stops), with the module fixture's teardown error in its teardown report."""
    pytester.makeconftest("""
        import threading, time
        import pytest
        from pytest_threadpool.plugin import SESSION_KEY

        a_logging = threading.Event()
        c_started = threading.Event()
        CONFIG = []

        def pytest_configure(config):
            CONFIG.append(config)

        @pytest.hookimpl(wrapper=True)  # around pytest's own, which stops the session
        def pytest_runtest_logreport(report):
            # test_a's failure is being logged; hold it until test_b's result is queued
            # behind it and test_c runs (test_c closes the module: it waits for test_b).
            if report.when == "call" and report.nodeid.endswith("test_a"):
                a_logging.set()
                threaded = CONFIG[0].stash[SESSION_KEY]
                deadline = time.monotonic() + 30
                while not (c_started.is_set() and threaded.lane.outstanding >= 2):
                    assert time.monotonic() < deadline, (
                        c_started.is_set(), threaded.lane.outstanding
                    )
                    time.sleep(0.005)
            return (yield)
    """)
    pytester.makepyfile("""
        import pytest
        from conftest import a_logging, c_started
        pytestmark = pytest.mark.parallelizable("children")

        @pytest.fixture(scope="module")
        def resource():
            yield
            raise RuntimeError("module teardown fails")

        def test_a(resource): assert False
        def test_b(resource):
            assert a_logging.wait(30)
        def test_c(resource):
            c_started.set()
    """)
    result = pytester.runpytest("--threadpool", "3", "-x", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at teardown of test_c*", "*RuntimeError: module teardown fails*"]
    )
