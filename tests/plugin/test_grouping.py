"""Which tests run together: markers, levels, precedence, default scope."""

from __future__ import annotations

import pytest

# A probe module the generated suites import: it records how many tests overlap.
PROBE = """
import threading, time

_lock = threading.Lock()
active = 0
peak = 0

def enter():
    global active, peak
    with _lock:
        active += 1
        peak = max(peak, active)

def leave():
    global active
    with _lock:
        active -= 1

def hold(seconds=0.15):
    enter()
    try:
        time.sleep(seconds)
    finally:
        leave()
"""


@pytest.fixture
def probe(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(probe=PROBE)
    pytester.syspathinsert()


def peak_after(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, int]:
    pytester.makeconftest(
        """
        import probe
        def pytest_terminal_summary(terminalreporter):
            terminalreporter.write_line(f"PEAK={probe.peak}")
        """
    )
    result = pytester.runpytest_subprocess(*args)
    peak = [line for line in result.outlines if line.startswith("PEAK=")]
    assert peak, result.outlines
    return result, int(peak[-1].split("=")[1])


def test_children_on_class_runs_tests_concurrently(pytester: pytest.Pytester, probe: None):
    pytester.makepyfile(
        """
        import threading
        import pytest
        from pytest_threadpool import parallelizable

        barrier = threading.Barrier(3, timeout=20)

        @parallelizable("children")
        class TestTogether:
            def test_a(self): barrier.wait()
            def test_b(self): barrier.wait()
            def test_c(self): barrier.wait()
        """
    )
    result = pytester.runpytest("--threadpool", "3")
    result.assert_outcomes(passed=3)


def test_without_markers_tests_run_one_at_a_time(pytester: pytest.Pytester, probe: None):
    pytester.makepyfile(
        """
        import probe
        def test_a(): probe.hold()
        def test_b(): probe.hold()
        def test_c(): probe.hold()
        """
    )
    result, peak = peak_after(pytester, "--threadpool", "4")
    result.assert_outcomes(passed=3)
    assert peak == 1


def test_not_parallelizable_wins_over_class_marker(pytester: pytest.Pytester, probe: None):
    pytester.makepyfile(
        """
        import probe
        from pytest_threadpool import parallelizable, not_parallelizable

        @parallelizable("children")
        class TestMixed:
            @not_parallelizable
            def test_alone(self):
                probe.hold()
                assert probe.peak == 1

            def test_x(self): pass
        """
    )
    result, _peak = peak_after(pytester, "--threadpool", "4")
    result.assert_outcomes(passed=2)


def test_module_not_parallelizable_under_parallel_package(pytester: pytest.Pytester, probe: None):
    pkg = pytester.mkpydir("pkg")
    (pkg / "__init__.py").write_text(
        "import pytest\npytestmark = pytest.mark.parallelizable('children')\n"
    )
    (pkg / "test_parallel.py").write_text(
        "import threading\nb = threading.Barrier(2, timeout=20)\n"
        "def test_p1(): b.wait()\ndef test_p2(): b.wait()\n"
    )
    (pkg / "test_serial.py").write_text(
        "import pytest, probe\npytestmark = pytest.mark.not_parallelizable\n"
        "def test_s1(): probe.hold()\ndef test_s2(): probe.hold()\n"
    )
    result, peak = peak_after(pytester, "--threadpool", "4", "-p", "no:randomly")
    result.assert_outcomes(passed=4)
    assert peak == 1


def test_parameters_scope_runs_variants_concurrently(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import threading
        import pytest
        from pytest_threadpool import parallelizable

        barrier = threading.Barrier(3, timeout=20)

        @parallelizable("parameters")
        @pytest.mark.parametrize("n", [1, 2, 3])
        def test_variant(n):
            barrier.wait()
        """
    )
    pytester.runpytest("--threadpool", "3").assert_outcomes(passed=3)


def test_scope_given_as_keyword_and_enum(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import threading
        import pytest
        from pytest_threadpool import ParallelScope, parallelizable

        b1 = threading.Barrier(2, timeout=20)
        b2 = threading.Barrier(2, timeout=20)

        @parallelizable(scope="children")
        class TestKeyword:
            def test_a(self): b1.wait()
            def test_b(self): b1.wait()

        @parallelizable(ParallelScope.ALL)
        class TestEnum:
            def test_a(self): b2.wait()
            def test_b(self): b2.wait()
        """
    )
    pytester.runpytest("--threadpool", "2").assert_outcomes(passed=4)


def test_children_keeps_parameters_of_one_function_in_order(pytester: pytest.Pytester, probe: None):
    pytester.makepyfile(
        """
        import pytest, probe, threading
        from pytest_threadpool import parallelizable

        seen = []

        @parallelizable("children")
        class TestChildren:
            @pytest.mark.parametrize("n", range(4))
            def test_param(self, n):
                seen.append(n)
                probe.hold(0.05)

        def test_order_checked_last():
            assert seen == [0, 1, 2, 3]
        """
    )
    pytester.runpytest("--threadpool", "4").assert_outcomes(passed=5)


def test_all_on_module_groups_classes_and_parameters(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import threading
        import pytest

        pytestmark = pytest.mark.parallelizable("all")
        barrier = threading.Barrier(4, timeout=20)

        class TestOne:
            @pytest.mark.parametrize("n", [1, 2])
            def test_p(self, n): barrier.wait()

        class TestTwo:
            def test_q(self): barrier.wait()

        def test_r(): barrier.wait()
        """
    )
    pytester.runpytest("--threadpool", "4").assert_outcomes(passed=4)


CONFTEST_CLASS_FIXTURES = """
import itertools, pytest

made = itertools.count(1)

@pytest.fixture(scope="class")
def labelled(request):
    request.cls.label = request.cls.__name__  # arrow's conftest does this

@pytest.fixture(scope="class")
def instance(request):
    return next(made)

@pytest.fixture(scope="module")
def module_instance():
    return object()
"""


def test_classes_sharing_a_conftest_class_fixture_do_not_overlap(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    """pytest keeps one instance per fixture definition and hands the cached one out until its
    class is torn down: a second class running meanwhile got the first class's instance (arrow:
    189 of 235 locale tests failed with AttributeError). Tests of one class still overlap (they
    meet); the classes take turns; functions outside a class get an instance each."""
    pytester.makeconftest(CONFTEST_CLASS_FIXTURES)
    pytester.makepyfile(
        test_classes="""
        import os, threading, pytest
        pytestmark = pytest.mark.parallelizable("children")
        SEEN = {}
        MEET = {name: threading.Barrier(2, timeout=20) for name in ("TestA", "TestB", "TestC")}

        def check(test, instance):
            name = type(test).__name__
            assert test.label == name
            assert SEEN.setdefault(name, instance) == instance
            assert list(SEEN.values()).count(instance) == 1  # no other class has it
            if os.environ.get("TP_MEET"):
                MEET[name].wait()  # the class's two tests run together

        @pytest.mark.usefixtures("labelled")
        class TestA:
            def test_1(self, instance): check(self, instance)
            def test_2(self, instance): check(self, instance)

        @pytest.mark.usefixtures("labelled")
        class TestB:
            def test_1(self, instance): check(self, instance)
            def test_2(self, instance): check(self, instance)

        @pytest.mark.usefixtures("labelled")
        class TestC:
            def test_1(self, instance): check(self, instance)
            def test_2(self, instance): check(self, instance)

        FUNCTION_INSTANCES = []

        def test_f1(instance): FUNCTION_INSTANCES.append(instance)
        def test_f2(instance): FUNCTION_INSTANCES.append(instance)
        def test_f3(instance):
            FUNCTION_INSTANCES.append(instance)
            assert len(set(FUNCTION_INSTANCES)) == 3  # one per test, as sequentially
        """
    )
    pytester.runpytest().assert_outcomes(passed=9)
    monkeypatch.setenv("TP_MEET", "1")
    for args in (("--threadpool", "4"), ("--threadpool", "4", "--threadpool-scope", "all")):
        # no history: on GIL builds tests found CPU-bound before run on the main thread
        pytester.runpytest("-p", "no:cacheprovider", *args).assert_outcomes(passed=9)


def test_modules_sharing_a_conftest_module_fixture_under_a_package_group(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    """The same for module fixtures when a package's pytestmark groups several modules."""
    pytester.makeconftest(CONFTEST_CLASS_FIXTURES)
    package = pytester.mkpydir("pkg")
    (package / "__init__.py").write_text(
        "import pytest\npytestmark = pytest.mark.parallelizable('all')\n"
    )
    body = """
import os, threading
from pkg import shared
barrier = threading.Barrier(2, timeout=20)

def meet():
    if os.environ.get("TP_MEET"):
        barrier.wait()

def test_1(module_instance):
    assert shared.setdefault(__name__, module_instance) is module_instance
    meet()

def test_2(module_instance):
    assert shared.setdefault(__name__, module_instance) is module_instance
    meet()

def test_distinct():
    assert len({id(value) for value in shared.values()}) == len(shared)
"""
    (package / "__init__.py").write_text(
        "import pytest\npytestmark = pytest.mark.parallelizable('all')\nshared = {}\n"
    )
    for name in ("test_m1.py", "test_m2.py", "test_m3.py"):
        (package / name).write_text(body)
    pytester.runpytest().assert_outcomes(passed=9)
    monkeypatch.setenv("TP_MEET", "1")
    pytester.runpytest("-p", "no:cacheprovider", "--threadpool", "4").assert_outcomes(passed=9)


def test_default_scope_from_ini_parallelizes_unmarked_tests(pytester: pytest.Pytester):
    pytester.makeini("[pytest]\nthreadpool_scope = all\n")
    pytester.makepyfile(
        """
        import threading
        barrier = threading.Barrier(2, timeout=20)
        def test_a(): barrier.wait()
        def test_b(): barrier.wait()
        """
    )
    pytester.runpytest("--threadpool", "2").assert_outcomes(passed=2)


def test_default_scope_cli_and_not_parallelizable_still_wins(
    pytester: pytest.Pytester, probe: None
):
    pytester.makepyfile(
        """
        import probe
        from pytest_threadpool import not_parallelizable
        pytestmark = not_parallelizable
        def test_a(): probe.hold()
        def test_b(): probe.hold()
        """
    )
    result, peak = peak_after(pytester, "--threadpool", "2", "--threadpool-scope", "all")
    result.assert_outcomes(passed=2)
    assert peak == 1


def test_unknown_scope_is_a_one_line_error_naming_the_test(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        from pytest_threadpool import parallelizable
        @parallelizable("everything")
        def test_bad(): pass
        """
    )
    result = pytester.runpytest("--threadpool", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: *test_bad*invalid parallelizable scope 'everything'*children, parameters, all*"]
    )
    assert "Traceback" not in result.stderr.str()


def test_children_on_function_warns(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        from pytest_threadpool import parallelizable
        @parallelizable("children")
        def test_plain(): pass
        """
    )
    result = pytester.runpytest("--threadpool", "2")
    assert result.parseoutcomes()["passed"] == 1
    result.stdout.fnmatch_lines(["*parallelizable('children') on the function test_plain*"])
    # The warning class is importable from the package, so a suite can filter it by name.
    quiet = pytester.runpytest(
        "--threadpool", "2", "-W", "ignore::pytest_threadpool.PytestThreadpoolWarning"
    )
    assert quiet.parseoutcomes() == {"passed": 1}
    assert "test_plain" not in "\n".join(quiet.outlines[:-1])  # the last: end-of-run line


def test_parallel_only(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import pytest
        @pytest.mark.parallel_only
        def test_needs_pool(): pass
        """
    )
    pytester.runpytest().assert_outcomes(skipped=1)
    pytester.runpytest("--threadpool", "2").assert_outcomes(passed=1)


def test_run_alone_marks_apply_from_class_and_module_levels(pytester: pytest.Pytester, probe: None):
    """thread_unsafe on a class and filterwarnings on a module make each of their tests run
    alone, as if marked one by one; a sibling class without them still runs concurrently."""
    pytester.makepyfile(
        test_levels="""
        import threading, pytest, probe
        pytestmark = pytest.mark.parallelizable("children")
        barrier = threading.Barrier(2, timeout=10)

        @pytest.mark.thread_unsafe
        class TestUnsafe:
            def test_u1(self): probe.hold()
            def test_u2(self): probe.hold()

        class TestSafe:
            def test_s1(self): barrier.wait()
            def test_s2(self): barrier.wait()
        """,
        test_filters="""
        import pytest, probe
        pytestmark = [
            pytest.mark.parallelizable("children"),
            pytest.mark.filterwarnings("ignore::DeprecationWarning"),
        ]
        def test_f1(): probe.hold()
        def test_f2(): probe.hold()
        """,
    )
    result, peak = peak_after(pytester, "--threadpool", "3", "-v")
    result.assert_outcomes(passed=6)
    import sys

    # filterwarnings is per-thread only with context-aware warnings (3.14t; -X on 3.14): then
    # test_f1 and test_f2 may overlap (only the thread_unsafe class must not).
    context_aware = bool(getattr(sys.flags, "context_aware_warnings", False))
    assert peak <= 2 if context_aware else peak == 1
    alone = 2 if context_aware else 4
    result.stdout.fnmatch_lines([f"*{alone} test(s) ran with nothing else running:*"])
    result.stdout.fnmatch_lines(["*TestUnsafe::test_u1 (marked thread_unsafe)*"])


def test_tests_rerun_by_rerunfailures_run_alone_and_get_their_reruns(pytester: pytest.Pytester):
    """pytest-rerunfailures reruns a failed test from its own pytest_runtest_protocol, which
    needs the main thread with nothing else running: such tests run alone, with the same
    outcomes (and rerun reports) as sequentially; the others still run in the pool."""
    pytester.makepyfile(
        """
        import pytest
        pytestmark = pytest.mark.parallelizable("children")
        attempts = []

        @pytest.mark.flaky(reruns=2)
        def test_flaky():
            attempts.append(1)
            assert len(attempts) >= 2

        def test_plain_a(): pass
        def test_plain_b(): pass
        """
    )
    sequential = pytester.runpytest("-p", "no:threadpool", "-p", "no:cacheprovider")
    parallel = pytester.runpytest("--threadpool", "2", "-p", "no:cacheprovider", "-v")
    assert sequential.parseoutcomes() == {"passed": 3, "rerun": 1}
    assert parallel.parseoutcomes() == {"passed": 3, "rerun": 1}
    parallel.stdout.fnmatch_lines(
        [
            "*1 test(s) ran with nothing else running: 1 rerun on failure by pytest-rerunfailures",
            "*test_flaky (rerun on failure by pytest-rerunfailures)*",
        ]
    )


def test_tests_patching_with_unittest_mock_run_alone(pytester: pytest.Pytester, probe: None):
    """mock.patch changes a module attribute for every thread: a test whose own source patches
    (decorator, with-statement, patch.object) runs alone, as does one using pytest-mock's
    ``mocker``; an HTTP-style client.patch(...) call is not a patch, so that test still runs in
    the pool beside its neighbour."""
    pytester.makepyfile(
        test_patching="""
        import os, threading, pytest, probe
        from unittest import mock
        from unittest.mock import patch
        pytestmark = pytest.mark.parallelizable("children")
        barrier = threading.Barrier(2, timeout=10)

        class Client:
            def patch(self, url): return url

        @patch("os.getcwd", return_value="/patched")
        def test_decorator(getcwd):
            probe.hold()
            assert os.getcwd() == "/patched"

        def test_context_manager():
            with patch("os.getpid", return_value=-1):
                probe.hold()
                assert os.getpid() == -1

        def test_object():
            with mock.patch.object(os, "getppid", return_value=-2):
                probe.hold()
                assert os.getppid() == -2

        @pytest.fixture
        def mocker():  # stands in for pytest-mock's fixture, unsafe by default
            return mock

        def test_mocker(mocker):
            probe.hold()

        def test_http_client():
            assert Client().patch("/items/1") == "/items/1"
            barrier.wait()

        def test_neighbour():
            barrier.wait()
        """
    )
    result, peak = peak_after(pytester, "--threadpool", "3", "-v")
    result.assert_outcomes(passed=6)
    assert peak == 1
    result.stdout.fnmatch_lines(
        [
            "*4 test(s) ran with nothing else running: 3 uses mock.patch (patches are "
            "process-wide); 1 uses mocker",
            "*test_decorator (uses mock.patch*",
        ]
    )
    result.stdout.no_fnmatch_line("*test_http_client (*")
