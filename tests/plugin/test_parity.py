"""Parity: each suite gives the same per-test outcomes and exit code sequentially and with
--threadpool 4 (outcomes read from junitxml)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

SUITES = {
    "outcomes": """
        import sys, warnings, pytest
        pytestmark = pytest.mark.parallelizable("children")

        def test_pass(): pass
        def test_fail(): assert 1 == 2
        def test_skip(): pytest.skip("no")
        @pytest.mark.xfail(reason="known")
        def test_xfail(): assert 0
        @pytest.mark.xfail(strict=True)
        def test_xpass_strict(): pass
        def test_applymarker(request):
            request.applymarker(pytest.mark.xfail(reason="dynamic"))
            assert 0
        def test_system_exit(): sys.exit(1)
        def test_warns():
            warnings.warn(UserWarning("careful"))
        @pytest.mark.parametrize("n", range(5))
        def test_param(n): assert n != 3
        def test_error_in_function_fixture(broken): pass
        def test_error_in_teardown(bad_teardown): pass

        @pytest.fixture
        def broken(): raise ValueError("setup boom")

        @pytest.fixture
        def bad_teardown():
            yield
            raise ValueError("teardown boom")
    """,
    "scopes": """
        import pytest

        @pytest.fixture(scope="module")
        def mod_ok():
            yield 1

        @pytest.fixture(scope="class")
        def class_broken():
            raise RuntimeError("class setup fails")

        @pytest.fixture(scope="class")
        def class_bad_teardown():
            yield
            raise RuntimeError("class teardown fails")

        @pytest.mark.parallelizable("children")
        class TestBrokenSetup:
            def test_a(self, class_broken): pass
            def test_b(self, class_broken): pass

        @pytest.mark.parallelizable("children")
        class TestBadTeardown:
            def test_a(self, class_bad_teardown, mod_ok): pass
            def test_b(self, class_bad_teardown, mod_ok): pass

        @pytest.mark.parallelizable("parameters")
        @pytest.mark.parametrize("x", [1, 2, 3])
        def test_mod(mod_ok, x): assert x < 3

        def test_sequential_after(mod_ok): pass
    """,
    "xunit": """
        import pytest

        def setup_module(module):
            module.ready = True

        @pytest.mark.parallelizable("all")
        class TestX:
            def setup_method(self, method):
                self.value = 41
            def teardown_method(self, method):
                if method.__name__ == "test_teardown_fails":
                    raise RuntimeError("method teardown")
            def test_ok(self): assert ready and self.value == 41
            def test_teardown_fails(self): pass
            @pytest.mark.parametrize("n", [1, 2])
            def test_p(self, n): assert n == 1
    """,
}


def outcomes_from_junit(path) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        key = f"{case.get('classname')}::{case.get('name')}"
        kinds = sorted(child.tag for child in case if child.tag in {"failure", "error", "skipped"})
        outcomes[key] = ",".join(kinds) or "passed"
    return outcomes


@pytest.mark.parametrize("with_history", [False, True], ids=["first-run", "second-run"])
@pytest.mark.parametrize("name", sorted(SUITES))
def test_parallel_run_matches_sequential(pytester: pytest.Pytester, name: str, with_history):
    """second-run: the threaded run before it left durations (and on a GIL build CPU shares)
    in the cache, so the scheduler reorders (and on a GIL build runs CPU-bound tests on the
    main thread)."""
    pytester.makepyfile(**{f"test_{name}": SUITES[name]})
    sequential = pytester.runpytest("--junitxml=seq.xml", "-p", "no:cacheprovider")
    cache = ["-p", "no:cacheprovider"]
    if with_history:
        cache = ["-o", "cache_dir=.threadpool-cache"]
        pytester.runpytest("--threadpool", "4", *cache)
        assert (pytester.path / ".threadpool-cache" / "v" / "threadpool" / "durations").is_file()
    parallel = pytester.runpytest("--threadpool", "4", "--junitxml=par.xml", *cache)
    assert parallel.ret == sequential.ret
    seq = outcomes_from_junit(pytester.path / "seq.xml")
    par = outcomes_from_junit(pytester.path / "par.xml")
    assert par == seq
    assert parallel.parseoutcomes() == sequential.parseoutcomes()
