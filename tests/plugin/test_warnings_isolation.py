"""``catch_warnings()`` blocks that libraries enter on a pool test's thread (pytest-asyncio around
its event-loop calls, pytest for importorskip) change only that thread's filters: warnings
that concurrent tests raise meanwhile, or after such blocks were left in any order, still
reach the warnings summary. The overlap is forced with events (with timeouts), never timed."""

from __future__ import annotations

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
    """(test, warning line) of each entry of the warnings summary."""
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if "warnings summary" in line)
    entries = []
    test = ""
    for line in lines[start + 1 :]:
        if line.startswith("-- Docs") or line.startswith("==="):
            break
        if line and not line.startswith(" "):
            test = line
        elif "Warning: " in line:
            entries.append((test, line.split(": ", 1)[1]))
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
