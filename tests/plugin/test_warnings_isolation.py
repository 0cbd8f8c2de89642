"""``catch_warnings()`` blocks that libraries enter on a pool test's thread (pytest-asyncio around
its event-loop calls, pytest for importorskip) change only that thread's filters: warnings
that concurrent tests raise meanwhile, or after such blocks were left in any order, still
reach the warnings summary. The overlap is forced with events (with timeouts), never timed."""

from __future__ import annotations

import sys

import pytest

# A library helper (in its own module: a test whose source calls catch_warnings runs alone).
HELPER = """
import threading, warnings

TIMEOUT = 30
a_inside = threading.Event()
b_inside = threading.Event()
a_left = threading.Event()
b_left = threading.Event()
warned = threading.Event()


def wait(event):
    if not event.wait(TIMEOUT):
        raise RuntimeError("the other test did not come")


def silenced(name, entered, go_on, left):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", "noise", UserWarning)
        entered.set()
        wait(go_on)
        warnings.warn(DeprecationWarning(f"silenced in {name}"))
        warnings.warn(UserWarning(f"noise from {name}"))
        warnings.warn(UserWarning(f"shown from {name}"))  # not what its block ignores
    left.set()
"""

TESTS = """
import warnings, pytest, helper
pytestmark = pytest.mark.parallelizable("children")

def test_block_a():
    helper.silenced("a", helper.a_inside, helper.warned, helper.a_left)

def test_block_b():
    helper.wait(helper.a_inside)
    # entered after a's block, left after it: the wrong order for process-wide filters
    helper.silenced("b", helper.b_inside, helper.a_left, helper.b_left)

def test_deprecation():
    helper.wait(helper.a_inside)
    helper.wait(helper.b_inside)
    warnings.warn(DeprecationWarning("raised while both blocks are open"))
    helper.warned.set()
    helper.wait(helper.b_left)
    warnings.warn(DeprecationWarning("raised after both blocks were left"))
"""


def _summary(result: pytest.RunResult) -> list[tuple[str, str]]:
    """(test, warning line) of each entry of the warnings summary (an entry lists every test
    that raised the same warning at the same place)."""
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if "warnings summary" in line)
    entries = []
    tests: list[str] = []
    for line in lines[start + 1 :]:
        if line.startswith("-- Docs") or line.startswith("==="):
            break
        if not line:
            tests = []
        elif not line.startswith(" "):
            tests.append(line)
        elif "Warning: " in line:
            entries.extend((test, line.split(": ", 1)[1]) for test in tests)
    return sorted(entries)


def test_ignore_blocks_on_pool_threads_keep_to_their_thread(pytester: pytest.Pytester):
    """Two tests in a library's catch_warnings() + "ignore" block (left in the wrong order for
    process-wide filters), a third warning meanwhile and afterwards: each block silences only
    what its own thread raises; every other warning is in the summary, with its test."""
    pytester.makepyfile(helper=HELPER, test_a=TESTS)
    pytester.syspathinsert()
    result = pytester.runpytest_subprocess("--threadpool", "3", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, warnings=4)
    assert _summary(result) == [
        ("test_a.py::test_block_a", "UserWarning: shown from a"),
        ("test_a.py::test_block_b", "UserWarning: shown from b"),
        ("test_a.py::test_deprecation", "DeprecationWarning: raised after both blocks were left"),
        ("test_a.py::test_deprecation", "DeprecationWarning: raised while both blocks are open"),
    ]


ASYNCIO_CONFTEST = """
import asyncio, threading

inside = threading.Event()
warned = threading.Event()
_set_event_loop_policy = asyncio.set_event_loop_policy


def set_event_loop_policy(policy):
    # pytest-asyncio calls it in a catch_warnings() block that ignores DeprecationWarning when
    # it sets up a test's function-scoped loop, on the test's thread: hold the async test's
    # first block open until the sync test has warned.
    if threading.current_thread() is not threading.main_thread() and not inside.is_set():
        inside.set()
        if not warned.wait(30):
            raise RuntimeError("the sync test did not warn")
    return _set_event_loop_policy(policy)


asyncio.set_event_loop_policy = set_event_loop_policy
"""

ASYNCIO_TESTS = """
import warnings, pytest, conftest
pytestmark = pytest.mark.parallelizable("children")

@pytest.mark.asyncio
async def test_async():
    pass

def test_sync():
    if not conftest.inside.wait(30):
        raise RuntimeError("the async test did not set up its loop")
    warnings.warn(DeprecationWarning("raised while pytest-asyncio sets up a loop"))
    conftest.warned.set()
"""


def test_pytest_asyncio_loop_setup_does_not_hide_other_tests_warnings(
    pytester: pytest.Pytester,
):
    pytest.importorskip("pytest_asyncio")
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest(ASYNCIO_CONFTEST)
    pytester.makepyfile(test_a=ASYNCIO_TESTS)
    pytester.syspathinsert()
    result = pytester.runpytest_subprocess(
        "-p", "asyncio", "--threadpool", "2", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=2, warnings=1)
    assert _summary(result) == [
        ("test_a.py::test_sync", "DeprecationWarning: raised while pytest-asyncio sets up a loop")
    ]


# Every way a test's warnings are filtered or recorded, for a sequential and a threaded run to
# be compared. test_plain and test_marked meet at a Barrier when they run on pool threads (a
# sequential run runs them on the main thread, one after the other): both warn meanwhile.
CONTEXT_SUITE_INI = """
[pytest]
filterwarnings =
    ignore:ini silenced:UserWarning
"""

CONTEXT_SUITE_CONFTEST = """
import sys

def pytest_report_header():
    return f"context_aware_warnings={sys.flags.context_aware_warnings}"
"""

CONTEXT_SUITE = """
import threading, warnings, pytest
pytestmark = pytest.mark.parallelizable("children")
both_warning = threading.Barrier(2, timeout=30)


def overlap():
    if threading.current_thread() is not threading.main_thread():
        both_warning.wait()


def warn_twice(text):
    for _ in range(2):
        warnings.warn(UserWarning(text))  # "default" action: once per test


@pytest.fixture(scope="module")
def shared():
    warnings.warn(UserWarning("module fixture set up"))
    yield
    warnings.warn(UserWarning("module fixture torn down"))


def test_plain(shared):
    overlap()
    warn_twice("repeated")
    warnings.warn(DeprecationWarning("deprecated in plain"))
    warnings.warn(UserWarning("ini silenced"))
    warnings.warn(UserWarning("cli silenced"))
    overlap()


@pytest.mark.filterwarnings("ignore:marked:UserWarning")
@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_marked(shared):
    overlap()
    warn_twice("repeated")
    warnings.warn(UserWarning("marked silenced"))
    with pytest.raises(RuntimeWarning):
        warnings.warn(RuntimeWarning("an error by its mark"))
    overlap()
    warnings.warn(DeprecationWarning("deprecated in marked"))


def test_pytest_warns(shared):
    with pytest.warns(UserWarning, match="^wanted"):
        warnings.warn(UserWarning("wanted"))
        warnings.warn(UserWarning("not matched, raised again"))


def test_catch_warnings_blocks(shared):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.warn(UserWarning("silenced by the block"))
    with warnings.catch_warnings(record=True) as log:
        warnings.simplefilter("always")
        warnings.warn(UserWarning("recorded by the block"))
    assert [str(w.message) for w in log] == ["recorded by the block"]
    warnings.warn(UserWarning("after the blocks"))
"""


@pytest.mark.skipif(
    not hasattr(sys.flags, "context_aware_warnings"),
    reason="context-aware warnings (sys.flags.context_aware_warnings) need Python 3.14+",
)
def test_context_aware_warnings_summary_as_sequentially(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    """With context-aware warnings (filters per context: the default of 3.14t), a threaded
    run's warnings summary is a sequential run's: warnings.warn, a repeated warning once per
    test, -W and ini filters, filterwarnings marks, pytest.warns, catch_warnings blocks, a
    module fixture's set-up and tear-down warnings, with two tests warning concurrently."""
    monkeypatch.setenv("PYTHON_CONTEXT_AWARE_WARNINGS", "1")
    pytester.makeini(CONTEXT_SUITE_INI)
    pytester.makeconftest(CONTEXT_SUITE_CONFTEST)
    pytester.makepyfile(test_ctx=CONTEXT_SUITE)
    args = ("-W", "ignore:cli silenced:UserWarning", "-p", "no:cacheprovider")
    sequential = pytester.runpytest_subprocess(*args)
    threaded = pytester.runpytest_subprocess("--threadpool", "4", *args)
    expected = [
        ("test_ctx.py::test_catch_warnings_blocks", "UserWarning: after the blocks"),
        ("test_ctx.py::test_catch_warnings_blocks", "UserWarning: module fixture torn down"),
        ("test_ctx.py::test_marked", "DeprecationWarning: deprecated in marked"),
        ("test_ctx.py::test_marked", "UserWarning: repeated"),
        ("test_ctx.py::test_plain", "DeprecationWarning: deprecated in plain"),
        ("test_ctx.py::test_plain", "UserWarning: module fixture set up"),
        ("test_ctx.py::test_plain", "UserWarning: repeated"),
        ("test_ctx.py::test_pytest_warns", "UserWarning: not matched, raised again"),
    ]
    for result in (sequential, threaded):
        result.stdout.fnmatch_lines(["context_aware_warnings=1"])
        result.assert_outcomes(passed=4, warnings=len(expected))
        assert _summary(result) == expected
    assert "ran with nothing else running" not in threaded.stdout.str()
