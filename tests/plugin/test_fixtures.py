"""Fixture semantics under the pool: private function fixtures, shared wider scopes."""

from __future__ import annotations

import pytest


def test_function_fixtures_are_private_and_torn_down_on_the_worker(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import threading
        import pytest
        from pytest_threadpool import parallelizable

        barrier = threading.Barrier(2, timeout=20)
        torn = []

        @pytest.fixture
        def box(request):
            value = {"owner": request.node.name, "thread": threading.current_thread().name}
            yield value
            assert threading.current_thread().name == value["thread"]
            torn.append(value["owner"])

        @parallelizable("children")
        class TestBoxes:
            def test_a(self, box):
                barrier.wait()
                assert box["owner"] == "test_a"
                assert box["thread"].startswith("threadpool-worker")
            def test_b(self, box, request):
                barrier.wait()
                assert box["owner"] == "test_b"
                assert request.getfixturevalue("box") is box

        def test_teardowns_ran():
            assert sorted(torn) == ["test_a", "test_b"]
        """
    )
    pytester.runpytest("--threadpool", "2").assert_outcomes(passed=3)


def test_getfixturevalue_fixture_is_private_per_test(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import threading
        import pytest
        from pytest_threadpool import parallelizable

        barrier = threading.Barrier(2, timeout=20)

        @pytest.fixture
        def dynamic(request):
            return object()

        seen = []

        @parallelizable("parameters")
        @pytest.mark.parametrize("n", [1, 2])
        def test_dynamic(request, n):
            value = request.getfixturevalue("dynamic")
            barrier.wait()
            assert request.getfixturevalue("dynamic") is value
            seen.append(id(value))

        def test_distinct():
            assert len(set(seen)) == 2
        """
    )
    pytester.runpytest("--threadpool", "2").assert_outcomes(passed=3)


def test_request_addfinalizer_in_test_body_runs(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import pytest
        from pytest_threadpool import parallelizable
        done = []

        @parallelizable("parameters")
        @pytest.mark.parametrize("n", [1, 2, 3])
        def test_fin(request, n):
            request.addfinalizer(lambda: done.append(n))

        def test_check():
            assert sorted(done) == [1, 2, 3]
        """
    )
    pytester.runpytest("--threadpool", "3").assert_outcomes(passed=4)


def test_shared_fixtures_set_up_once_on_main_thread_and_torn_down_after_last_user(
    pytester: pytest.Pytester,
):
    pytester.makepyfile(
        """
        import threading
        import pytest
        from pytest_threadpool import parallelizable

        events = []
        barrier = threading.Barrier(3, timeout=20)

        @pytest.fixture(scope="module")
        def resource():
            events.append(("setup", threading.current_thread() is threading.main_thread()))
            yield "r"
            events.append(("teardown", threading.current_thread() is threading.main_thread()))

        @pytest.fixture(scope="class")
        def per_class():
            events.append(("class-setup", threading.current_thread() is threading.main_thread()))
            yield
            events.append(("class-teardown", None))

        @parallelizable("children")
        class TestUsers:
            def test_a(self, resource, per_class):
                barrier.wait(); events.append("a")
            def test_b(self, resource, per_class):
                barrier.wait(); events.append("b")
            def test_c(self, resource, per_class):
                barrier.wait(); events.append("c")

        def test_after():
            assert events[0] == ("setup", True)
            assert events[1] == ("class-setup", True)
            assert sorted(events[2:5]) == ["a", "b", "c"]
            assert events[5] == ("class-teardown", None)
            assert ("teardown", True) not in events  # module still alive for this test

        def test_module_teardown_happened_later(request):
            pass
        """
    )
    pytester.runpytest("--threadpool", "3").assert_outcomes(passed=5)


def test_xunit_setup_module_and_class(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import threading
        from pytest_threadpool import parallelizable
        calls = []

        def setup_module(module):
            calls.append("setup_module")

        def teardown_module(module):
            calls.append("teardown_module")

        @parallelizable("children")
        class TestX:
            @classmethod
            def setup_class(cls):
                calls.append("setup_class")
            @classmethod
            def teardown_class(cls):
                calls.append("teardown_class")
            def setup_method(self, method):
                calls.append("setup_method")
            def test_a(self): pass
            def test_b(self): pass

        def test_last():
            assert calls == ["setup_module", "setup_class", "setup_method", "setup_method",
                             "teardown_class"]
        """
    )
    pytester.runpytest("--threadpool", "2").assert_outcomes(passed=3)


def test_shared_fixture_setup_error_is_reported_per_test(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import pytest
        from pytest_threadpool import parallelizable

        @pytest.fixture(scope="module")
        def broken():
            raise RuntimeError("module fixture failed")

        @parallelizable("children")
        class TestBroken:
            def test_a(self, broken): pass
            def test_b(self, broken): pass
        """
    )
    result = pytester.runpytest("--threadpool", "2")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        ["*ERROR at setup of TestBroken.test_a*", "*module fixture failed*"]
    )
    assert "INTERNALERROR" not in result.stdout.str()


def test_shared_fixture_teardown_error_attached_to_last_test(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import pytest
        from pytest_threadpool import parallelizable

        @pytest.fixture(scope="class")
        def fragile():
            yield
            raise RuntimeError("class teardown failed")

        @parallelizable("children")
        class TestFragile:
            def test_a(self, fragile): pass
            def test_b(self, fragile): pass
            def test_c(self, fragile): pass
        """
    )
    result = pytester.runpytest("--threadpool", "2")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of TestFragile.test_c*"])
    assert "INTERNALERROR" not in result.stdout.str()


def test_parametrized_module_fixture_instances_do_not_overlap(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import pytest
        from pytest_threadpool import parallelizable
        live = set()

        @pytest.fixture(scope="module", params=["x", "y"])
        def db(request):
            live.add(request.param)
            yield request.param
            live.discard(request.param)

        @parallelizable("children")
        class TestDb:
            def test_a(self, db): assert live == {db}
            def test_b(self, db): assert live == {db}
        """
    )
    pytester.runpytest("--threadpool", "2").assert_outcomes(passed=4)


def test_doctests_run_sequentially_and_correctly(pytester: pytest.Pytester):
    pytester.makepyfile(
        mod='''
        def add(a, b):
            """
            >>> add(1, 2)
            3
            """
            return a + b
        '''
    )
    pytester.makepyfile(
        test_x="""
        import pytest
        pytestmark = pytest.mark.parallelizable("children")
        def test_a(): pass
        def test_b(): pass
        """
    )
    result = pytester.runpytest("--threadpool", "2", "--doctest-modules")
    result.assert_outcomes(passed=3)


def test_tmp_path_first_use_by_concurrent_tests(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import threading, pytest
        pytestmark = pytest.mark.parallelizable("all")
        barrier = threading.Barrier(4, timeout=20)
        seen = []

        @pytest.fixture
        def synced():
            barrier.wait()

        @pytest.mark.parametrize("n", range(4))
        def test_tmp(synced, tmp_path, n):
            (tmp_path / "f").write_text(str(n))
            seen.append(tmp_path.parent)

        def test_one_basetemp():
            assert len(set(seen)) == 1
        """
    )
    pytester.runpytest("--threadpool", "4").assert_outcomes(passed=5)


def test_unittest_testcase_classes_run_in_the_pool(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import threading, unittest, pytest

        barrier = threading.Barrier(2, timeout=20)

        @pytest.mark.parallelizable("children")
        class TestUnit(unittest.TestCase):
            @classmethod
            def setUpClass(cls):
                cls.on_main = threading.current_thread() is threading.main_thread()

            def setUp(self):
                self.value = 1

            def test_a(self):
                barrier.wait()
                self.assertTrue(self.on_main)

            def test_b(self):
                barrier.wait()
                self.assertEqual(self.value, 1)

            def test_fail(self):
                self.assertEqual([1, 2], [1, 3])

            @unittest.skip("not today")
            def test_skip(self):
                pass
        """
    )
    result = pytester.runpytest("--threadpool", "2")
    result.assert_outcomes(passed=2, failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*Lists differ*"])


def test_tmp_path_names_match_a_sequential_run(pytester: pytest.Pytester):
    """Numbered tmp_path directories (scanned by the engine in threaded runs) get the names a
    sequential run gives them, also when truncated names collide (variants of one function
    run in order under "children", so the numbering is deterministic)."""
    long_name = "test_" + "x" * 40
    pytester.makepyfile(
        f"""
        import pytest
        pytestmark = pytest.mark.parallelizable("children")

        @pytest.mark.parametrize("n", range(3))
        def test_p(tmp_path, tmp_path_factory, n):
            extra = tmp_path_factory.mktemp("shared")
            print("NAMES", tmp_path.name, extra.name)

        @pytest.mark.parametrize("n", range(2))
        def {long_name}(tmp_path, n):
            print("NAMES", tmp_path.name)
        """
    )

    def names(*args: str) -> list[str]:
        result = pytester.runpytest("-s", "-p", "no:cacheprovider", *args)
        result.assert_outcomes(passed=5)
        # -s: sequential pytest writes progress dots on the same lines as the prints
        return sorted(line[line.index("NAMES") :] for line in result.outlines if "NAMES" in line)

    assert names("--threadpool", "2") == names()


def test_finished_tests_keep_no_more_requests_alive_than_a_sequential_run(
    pytester: pytest.Pytester,
):
    """A finished test's fixture requests (and all they refer to: its fixture closure, values,
    the item's request) live no longer than in a sequential run. The ``request`` fixture's
    definition (made anew for every request) used to be kept per worker thread until the
    session ended, holding every finished test's requests (here: 182 definitions and 100
    requests alive at the end, against 61 requests sequentially)."""
    pytester.makepyfile(
        """
        import collections
        import gc
        import pytest

        pytestmark = pytest.mark.parallelizable("children")

        @pytest.fixture
        def tracked(request):
            yield request.node.name

        @pytest.mark.parametrize("n", range(20))
        def test_uses(tracked, request, tmp_path, n):
            assert request.getfixturevalue("tracked") == tracked

        def ours(obj, session):
            # The requests of this session's tests (pytester runs sessions in-process).
            if type(obj).__name__ == "RequestFixtureDef":
                obj = obj.func()  # pytest makes it with func=lambda: request
            return obj._pyfuncitem.session is session

        @pytest.mark.not_parallelizable
        def test_zz_count_live_requests(request):
            gc.collect()
            live = collections.Counter(
                type(obj).__name__
                for obj in gc.get_objects()
                if type(obj).__name__ in ("RequestFixtureDef", "SubRequest")
                and ours(obj, request.session)
            )
            with open("live.txt", "w") as f:
                f.write(repr(sorted(live.items())))
        """
    )
    live = {}
    for mode, args in (("sequential", ["-p", "no:threadpool"]), ("pool", ["--threadpool", "2"])):
        pytester.runpytest(*args).assert_outcomes(passed=21)
        live[mode] = (pytester.path / "live.txt").read_text()
    assert live["pool"] == live["sequential"]


def test_threads_keep_no_state_for_finished_function_fixtures(pytester: pytest.Pytester):
    """Function fixtures keep their value and finalizers per thread while a test uses them; a
    thread keeps nothing for a fixture once its test finished (each directly parametrized
    function has its own fixture definitions, so a long-lived worker would otherwise hold an
    entry for every one it ever ran). Every test checks its own thread at setup: with 12 tests
    on 2 workers, some worker runs a test after another."""
    pytester.makeconftest(
        """
        import pytest
        from pytest_threadpool import fixture_isolation

        @pytest.fixture(autouse=True)
        def no_leftovers():
            leftovers = [
                fixturedef.argname
                for fixturedef, (value, finalizers) in fixture_isolation._per_thread.state.items()
                if value is None and not finalizers
            ]
            assert leftovers == []
        """
    )
    pytester.makepyfile(
        "import pytest\n"
        "pytestmark = pytest.mark.parallelizable('children')\n"
        + "".join(
            f"@pytest.mark.parametrize('x{i}', [{i}])\ndef test_{i}(x{i}, tmp_path): pass\n"
            for i in range(12)
        )
    )
    pytester.runpytest("--threadpool", "2").assert_outcomes(passed=12)


def test_attributes_a_plugin_sets_on_a_function_fixture_definition_are_per_thread(
    pytester: pytest.Pytester,
):
    """A hook wrapper around pytest_fixture_setup that swaps ``fixturedef.func`` and adds an
    attribute for the time of the setup (as pytest-asyncio swaps func): each thread sees only
    its own swap. The first test's setup waits, its swap installed, until the second test has
    set up the same fixture; the attributes are gone from the thread once the test is done."""
    pytester.makeconftest(
        """
        import threading
        import pytest
        from pytest_threadpool import fixture_isolation

        first_inside = threading.Event()
        second_done = threading.Event()

        @pytest.hookimpl(wrapper=True)
        def pytest_fixture_setup(fixturedef, request):
            if fixturedef.argname != "tagged":
                return (yield)
            name = request.node.name
            assert not hasattr(fixturedef, "setup_tag"), fixturedef.setup_tag
            original = fixturedef.func
            assert original.__name__ == "tagged"
            fixturedef.func = lambda: name
            fixturedef.setup_tag = name
            try:
                if name == "test_first" and request.config.getoption("threadpool", None):
                    first_inside.set()
                    assert second_done.wait(20), "the second test did not run meanwhile"
                assert fixturedef.func() == fixturedef.setup_tag == name
                return (yield)
            finally:
                fixturedef.func = original
                del fixturedef.setup_tag

        @pytest.fixture
        def after_first(request):
            if request.config.getoption("threadpool", None):
                assert first_inside.wait(20), "the first test did not start"
            yield
            second_done.set()

        @pytest.fixture(autouse=True)
        def no_leftover_attributes():
            # Every definition the thread keeps attributes for is one it still has state for.
            state = fixture_isolation._per_thread.state
            assert set(getattr(fixture_isolation._per_thread, "fields", {})) <= set(state)
        """
    )
    pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.parallelizable("children")

        @pytest.fixture
        def tagged():
            return "undecorated"

        def test_first(tagged):
            assert tagged == "test_first"

        def test_second(after_first, tagged):
            assert tagged == "test_second"

        @pytest.mark.parametrize("n", range(4))
        def test_more(tagged, n):
            assert tagged.startswith("test_more")
        """
    )
    pytester.runpytest("--threadpool", "2").assert_outcomes(passed=6)
    pytester.runpytest("-p", "no:threadpool").assert_outcomes(passed=6)
