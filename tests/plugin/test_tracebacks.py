"""Tracebacks of pool-run tests show the user's code, never the plugin's own frames (pytest hides
its machinery with ``__tracebackhide__``; ours does the same)."""

from __future__ import annotations

import pytest

from pytest_threadpool.pytest_compat import GROUP_TRACEBACKS_FILTERED

ERRORS = """
import pytest
pytestmark = pytest.mark.parallelizable("children")

@pytest.fixture
def teardown_one():
    yield 1
    raise RuntimeError("teardown one")

@pytest.fixture
def teardown_two():
    yield 1
    raise RuntimeError("teardown two")

@pytest.fixture
def setup_fails():
    raise ValueError("setup fails")

@pytest.fixture(scope="module")
def module_setup_fails():
    raise OSError("module fixture setup fails")

@pytest.fixture(scope="module")
def module_teardown_fails():
    yield 1
    raise KeyError("module teardown fails")

@pytest.fixture
def finalizer_fails(request):
    request.addfinalizer(lambda: 1 / 0)

@pytest.fixture
def dynamic(request):
    return request.getfixturevalue("module_setup_fails")

def test_group(teardown_one, teardown_two): pass
def test_setup(setup_fails): pass
def test_module_setup(module_setup_fails): pass
def test_module_setup_again(module_setup_fails): pass
def test_module_teardown(module_teardown_fails): pass
def test_finalizer(finalizer_fails): pass
def test_dynamic(dynamic): pass
def test_fails(): assert 1 == 2

class TestSetupMethod:
    def setup_method(self, method):
        raise RuntimeError("setup_method fails")
    def test_x(self): pass

class TestSetupClass:
    @classmethod
    def setup_class(cls):
        raise RuntimeError("setup_class fails")
    def test_y(self): pass
"""

MESSAGES = (
    "teardown one",
    "teardown two",
    "setup fails",
    "module fixture setup fails",
    "module teardown fails",
    "ZeroDivisionError",
    "assert 1 == 2",
    "setup_method fails",
    "setup_class fails",
)


@pytest.mark.parametrize("style", ["long", "short", "auto"])
def test_no_plugin_frames_in_tracebacks(pytester: pytest.Pytester, style: str) -> None:
    pytester.makepyfile(test_errors=ERRORS)
    sequential = pytester.runpytest(f"--tb={style}", "-p", "no:cacheprovider")
    threaded = pytester.runpytest(f"--tb={style}", "-p", "no:cacheprovider", "--threadpool", "4")
    outcomes = sequential.parseoutcomes()
    assert threaded.parseoutcomes() == outcomes
    text = threaded.stdout.str()
    plugin_frames = [line for line in text.splitlines() if "pytest_threadpool" + "/" in line]
    if GROUP_TRACEBACKS_FILTERED:
        assert not plugin_frames, plugin_frames
    else:  # pytest < 9.2 prints exception groups natively, every frame included (its own too)
        assert all(line.lstrip().startswith("|") for line in plugin_frames), plugin_frames
    for message in MESSAGES:
        assert message in text, message
    # The user's frames are still shown where the error was raised.
    for line in ('raise RuntimeError("teardown one")', 'raise KeyError("module teardown fails")'):
        if style != "short":
            assert line in text, line
