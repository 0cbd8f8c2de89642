"""How the runner feeds the pool: longest-first from recorded durations, a bounded number of
tests in flight, and no per-test garbage left for the cyclic GC."""

from __future__ import annotations

import ast
import collections
import json
import textwrap

import pytest

# Shrinks the runner's submission window for one pytester session (conftest.py is imported
# before the session starts).
SMALL_WINDOW = """
import pytest_threadpool.runner as runner
runner.WINDOW_MIN = {window}
runner.WINDOW_PER_WORKER = 1
"""

EVENTS_PLUGIN = """
EVENTS = []

def pytest_sessionfinish(session):
    with open("events.txt", "w") as f:
        f.write(repr(EVENTS))
"""


def _events(pytester: pytest.Pytester) -> list:
    return ast.literal_eval((pytester.path / "events.txt").read_text())


def test_longest_known_test_starts_first_on_the_next_run(pytester: pytest.Pytester):
    """A long test last in collection order runs alongside the first tests once its duration is
    known, even with a submission window (2) smaller than the group. On that run each quick
    test waits for the long one to have started: were it still queued behind them, the two
    quick tests in the window would wait in vain and fail."""
    pytester.makeconftest(
        SMALL_WINDOW.format(window=2)
        + EVENTS_PLUGIN
        + textwrap.dedent(
            """
            import os, threading
            LONG_STARTED = threading.Event()
            HISTORY = os.path.exists(".pytest_cache/v/threadpool/durations")
            """
        )
    )
    quick = "".join(
        f"def test_quick_{i}(): note('quick_{i}'); wait_for_long(); time.sleep(0.01)\n"
        for i in range(8)
    )
    header = textwrap.dedent(
        """
        import time, pytest
        from conftest import EVENTS, HISTORY, LONG_STARTED
        pytestmark = pytest.mark.parallelizable("children")

        def note(name):
            EVENTS.append(name)

        def wait_for_long():
            if HISTORY:
                assert LONG_STARTED.wait(10), "test_long was not started alongside"
        """
    )
    module = pytester.makepyfile(
        header + quick + "def test_long(): LONG_STARTED.set(); note('long'); time.sleep(0.3)\n"
    )
    pytester.runpytest_subprocess("--threadpool", "2").assert_outcomes(passed=9)
    # First run, collection order: test_long is submitted once 7 others have finished.
    assert "long" not in _events(pytester)[:7]
    # Durations as that run would have recorded them (written, not measured: no dependence on
    # this machine's timing).
    recorded = {f"{module.name}::test_quick_{i}": 0.01 for i in range(8)}
    recorded[f"{module.name}::test_long"] = 0.3
    cache = pytester.path / ".pytest_cache" / "v" / "threadpool" / "durations"
    cache.write_text(json.dumps(recorded))
    pytester.runpytest_subprocess("--threadpool", "2").assert_outcomes(passed=9)


def test_later_scopes_are_set_up_as_earlier_tests_finish(pytester: pytest.Pytester):
    """At most ``window`` tests are in the pool: in one parallel group, the next class's shared
    fixture is set up only when all but ``window - 1`` tests before it have finished, rather
    than every scope of the group being set up at once. Also with recorded durations that send
    one long test ahead and would put class B's short tests (recorded a little longer than
    class A's) before class A's: short tests keep collection order."""
    pytester.makeconftest(SMALL_WINDOW.format(window=4) + EVENTS_PLUGIN)
    classes = "".join(
        textwrap.dedent(
            f"""
            class Test{name.upper()}:
                @pytest.fixture(scope="class")
                @classmethod
                def shared(cls):
                    EVENTS.append("setup {name}")
                    yield
                    EVENTS.append("teardown {name}")
            """
        )
        + "".join(
            f"    def test_{i}(self, shared): time.sleep(0.005); EVENTS.append('done {name}')\n"
            for i in range(20)
        )
        for name in ("a", "b")
    )
    header = textwrap.dedent(
        """
        import time, pytest
        from conftest import EVENTS
        pytestmark = pytest.mark.parallelizable("all")
        """
    )
    module = pytester.makepyfile(header + classes)
    # Durations as a previous run would have recorded them (written, not measured, so the
    # test does not depend on this machine's timing).
    recorded = {
        f"{module.name}::Test{name.upper()}::test_{i}": (
            1.0 if (name, i) == ("a", 9) else 0.002 if name == "b" else 0.001
        )
        for name in ("a", "b")
        for i in range(20)
    }
    for history in (None, recorded):
        if history is not None:
            cache = pytester.path / ".pytest_cache" / "v" / "threadpool" / "durations"
            cache.write_text(json.dumps(history))
        pytester.runpytest_subprocess("--threadpool", "2").assert_outcomes(passed=40)
        events = _events(pytester)
        setup_b = events.index("setup b")
        assert events[:setup_b].count("done a") >= 17, events
        assert events.index("teardown a") > max(i for i, e in enumerate(events) if e == "done a")
        assert events.index("teardown b") > max(i for i, e in enumerate(events) if e == "done b")
        assert events.count("setup a") == events.count("setup b") == 1


GARBAGE_PLUGIN = """
import gc

def _name(obj):
    if type(obj).__name__ == "function":
        return obj.__module__ or "", obj.__qualname__
    return getattr(type(obj), "__module__", "") or "", type(obj).__qualname__

def pytest_sessionstart(session):
    gc.collect()
    gc.disable()  # every cycle made during the session is still there at its end

def pytest_sessionfinish(session):
    gc.set_debug(gc.DEBUG_SAVEALL)
    gc.collect()
    gc.set_debug(0)
    names = [_name(obj) for obj in gc.garbage]
    ours = sorted(name for module, name in names if module.startswith("pytest_threadpool"))
    with open("garbage.txt", "w") as f:
        f.write(repr(ours))
"""


def test_finished_tests_leave_no_cyclic_garbage(pytester: pytest.Pytester):
    """Per-test bookkeeping is freed by reference counting when a test is reported: nothing of
    ours waits for the cyclic GC (which, on a big suite, runs rarely and lets memory pile up).
    Checked by comparing what the GC finds after 10 and after 60 passing tests: the same."""
    pytester.makeconftest(GARBAGE_PLUGIN)
    header = textwrap.dedent(
        """
        import pytest
        pytestmark = pytest.mark.parallelizable("children")

        @pytest.fixture
        def own():
            yield 1

        def test_fails(own): assert own == 2
        """
    )
    found = []
    for count in (10, 60):
        tests = "".join(
            f"def test_{i}(own, tmp_path): print('out'); assert own\n" for i in range(count)
        )
        pytester.makepyfile(test_garbage=header + tests)
        # (No cache: each run is a first run, the tests all go to the pool.)
        result = pytester.runpytest_subprocess("--threadpool", "2", "-p", "no:cacheprovider")
        result.assert_outcomes(passed=count, failed=1)
        found.append(
            collections.Counter(ast.literal_eval((pytester.path / "garbage.txt").read_text()))
        )
    # Session-wide objects (output dispatchers, patched accessors) and the failed test's run
    # (its traceback keeps its frames in a cycle, as in a sequential session) appear in both.
    assert found[0] == found[1], found
    assert found[1]["ItemRun"] <= 1, found


def test_children_variants_keep_collection_order_when_a_later_one_is_longest(
    pytester: pytest.Pytester,
):
    """``children`` runs the variants of one function one after another in collection order,
    also from the second run on, when recorded durations would put a later variant first."""
    pytester.makepyfile(
        """
        import time, pytest
        pytestmark = pytest.mark.parallelizable("children")
        DONE = []

        @pytest.mark.parametrize("n", [0, 1, 2, 3])
        def test_step(n):
            assert DONE == list(range(n))
            time.sleep(0.3 if n == 3 else 0.02)
            DONE.append(n)

        def test_other_a(): time.sleep(0.05)
        def test_other_b(): time.sleep(0.05)
        """
    )
    for _ in range(2):
        pytester.runpytest_subprocess("--threadpool", "2").assert_outcomes(passed=6)


def test_shared_setup_output_belongs_to_the_first_collected_test_on_the_next_run(
    pytester: pytest.Pytester,
):
    """Tests are submitted longest-known first, but shared scopes are still set up in
    collection order: a module fixture's setup output lands in the sections of the first
    collected test, as in a sequential run, also when a later test is the longest."""
    pytester.makeconftest(
        """
        def pytest_runtest_logreport(report):
            test = report.nodeid.split("::")[-1]
            with open("sections.txt", "a") as f:
                for title, content in report.sections:
                    f.write(f"{test} {report.when}: {title}: {content!r}\\n")
        """
    )
    pytester.makepyfile(
        """
        import time, pytest
        pytestmark = pytest.mark.parallelizable("children")

        @pytest.fixture(scope="module")
        def shared():
            print("SHARED SETUP")
            yield

        def test_a(shared): time.sleep(0.01)
        def test_b(shared): time.sleep(0.01)
        def test_z(shared): time.sleep(0.3)
        """
    )
    sections = pytester.path / "sections.txt"

    def sections_of(*args: str) -> list[str]:
        if sections.exists():
            sections.unlink()
        pytester.runpytest_subprocess(*args).assert_outcomes(passed=3)
        return sorted(sections.read_text().splitlines())

    sequential = sections_of("-p", "no:threadpool", "-p", "no:cacheprovider")
    assert sequential and all(line.startswith("test_a ") for line in sequential), sequential
    for _ in range(2):  # the second run knows test_z is the longest and submits it first
        assert sections_of("--threadpool", "2") == sequential
