"""Subtests (unittest's subTest, pytest's subtests fixture): reports a test logs from inside its
body. In a pool they are kept with the test and logged with its reports, on the thread that logs
them, so reporting plugins (terminal, junitxml) see what a sequential run shows them; tests using
the subtests fixture, whose capture is process-wide, run alone."""

from __future__ import annotations

import json

import pytest

RECORDER = """
import json, threading

_events = []


def pytest_runtest_logreport(report):
    context = getattr(report, "context", None)
    _events.append([
        report.nodeid,
        report.when,
        type(report).__name__,
        report.outcome,
        repr(getattr(context, "kwargs", None)),
        [title for title, _ in report.sections],
        threading.current_thread().name,
    ])


def pytest_sessionfinish(session):
    with open({out!r}, "w") as out:
        json.dump(_events, out)
"""

UNITTEST_MODULE = """
import time
import unittest

import pytest

pytestmark = pytest.mark.parallelizable("children")


class TestSteps(unittest.TestCase):
{methods}
"""

METHOD = """
    def test_{i}(self):
        for step in range(25):
            with self.subTest(step=step):
                time.sleep({pause})
                print("step", step)
                self.assertNotEqual(step, {bad})
"""


def _run_both(pytester: pytest.Pytester, *args: str) -> tuple[list, list, str, str]:
    """Sequential and threaded runs of the same files: their logreport events and the
    junitxml files' text."""
    results = []
    for name, mode in (("seq", ["-p", "no:threadpool"]), ("thr", ["--threadpool", "4"])):
        out = str(pytester.path / f"{name}.json")
        pytester.makeconftest(RECORDER.format(out=out))
        xml = pytester.path / f"{name}.xml"
        pytester.runpytest_subprocess(
            *mode,
            "-p",
            "no:cacheprovider",
            f"--junitxml={xml}",
            "-o",
            "junit_logging=all",
            "-W",
            "ignore::pytest.PytestUnknownMarkWarning",
            *args,
        )
        with open(out) as source:
            results.append((json.load(source), xml.read_text()))
    (seq, seq_xml), (thr, thr_xml) = results
    return seq, thr, seq_xml, thr_xml


def _per_test(events: list) -> tuple[dict[str, list], list[str]]:
    """Each test's events without the thread, and the order tests were reported in."""
    per_test: dict[str, list] = {}
    order: list[str] = []
    for event in events:
        nodeid = event[0]
        per_test.setdefault(nodeid, []).append(event[1:6])
        if not order or order[-1] != nodeid:
            order.append(nodeid)
    return per_test, order


def test_unittest_subtests_are_logged_with_their_test(pytester: pytest.Pytester) -> None:
    for module in ("one", "two"):
        methods = "".join(
            METHOD.format(i=i, pause=0.001 * (i % 3), bad=(i * 7) % 30) for i in range(8)
        )
        pytester.makepyfile(**{f"test_{module}": UNITTEST_MODULE.format(methods=methods)})
    seq, thr, seq_xml, thr_xml = _run_both(pytester)

    seq_tests, _ = _per_test(seq)
    thr_tests, thr_order = _per_test(thr)
    # Each test's reports, its subtests' included, in the same order and with the same
    # outcomes and sections as sequentially; each test's reports together (no other test's in
    # between), every test once.
    assert thr_tests == seq_tests
    assert len(thr_order) == len(set(thr_order)) == 16
    # Logged only by the threads that log reports, never by the workers running the tests.
    threads = {event[6] for event in thr}
    assert threads <= {"MainThread", "threadpool-reporter-0"}, threads
    # junitxml counted every subtest (its counters are not thread-safe).
    for attribute in ("tests", "failures", "errors", "skipped"):
        seq_value = seq_xml.split(f' {attribute}="')[1].split('"')[0]
        thr_value = thr_xml.split(f' {attribute}="')[1].split('"')[0]
        assert (attribute, thr_value) == (attribute, seq_value)


def test_subtests_fixture_tests_run_alone_with_their_own_output(pytester: pytest.Pytester) -> None:
    """pytest's subtests fixture captures each subtest like capfd (fds 1 and 2, sys.stdout of
    the process): a test running beside it would lose its output to the subtest."""
    pytester.makepyfile(
        test_mixed="""
        import time
        import pytest

        pytestmark = pytest.mark.parallelizable("children")


        def test_with_subtests(subtests):
            for k in range(3):
                with subtests.test(k=k):
                    time.sleep(0.2)
                    print("subtest output", k)
                    assert k != 1


        @pytest.mark.parametrize("i", range(4))
        def test_beside(i):
            time.sleep(0.1)
            print("beside output", i)
            assert i != 2
        """
    )
    seq, thr, seq_xml, thr_xml = _run_both(pytester, "-rA")
    seq_tests, _ = _per_test(seq)
    thr_tests, _ = _per_test(thr)
    assert thr_tests == seq_tests
    assert thr_xml.count("<testcase") == seq_xml.count("<testcase")
    for i in range(4):
        assert thr_xml.count(f"beside output {i}") == seq_xml.count(f"beside output {i}") > 0
    for k in range(3):
        assert thr_xml.count(f"subtest output {k}") == seq_xml.count(f"subtest output {k}")
