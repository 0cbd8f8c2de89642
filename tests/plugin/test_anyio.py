"""anyio's pytest plugin under the pool.

The plugin keeps one test runner (one event loop) for the whole process while any test or
async fixture holds it, so two of its async tests running at once drove one loop from two
threads ("Non-thread-safe operation invoked on an event loop other than the current one", anyio's
own suite: most of its 4,700 tests failed). Its async tests, and tests with a function-scoped
async fixture, run alone; sync tests of the same modules still run in the pool.
"""

from __future__ import annotations

import pytest

pytest.importorskip("anyio")

SUITE = """
import threading
import anyio
import pytest

pytestmark = pytest.mark.anyio
meet = threading.Barrier(2, timeout=20)
order = []

@pytest.fixture
def anyio_backend():
    return "asyncio"

@pytest.fixture
async def resource():
    await anyio.sleep(0.01)
    yield "resource"
    await anyio.sleep(0.01)

@pytest.mark.parametrize("n", range(6))
async def test_async(n):
    async with anyio.create_task_group() as group:
        group.start_soon(anyio.sleep, 0.02)
    order.append(n)

async def test_async_with_fixture(resource):
    assert resource == "resource"

def test_sync_with_async_fixture(anyio_backend, resource):
    assert resource == "resource"

def test_sync_1(request):
    if request.config.getoption("threadpool", None):
        meet.wait()

def test_sync_2(request):
    if request.config.getoption("threadpool", None):
        meet.wait()
"""


def test_anyio_tests_run_alone_and_match_sequential(pytester: pytest.Pytester):
    pytester.makepyfile(test_anyio_suite=SUITE)
    sequential = pytester.runpytest("-p", "no:cacheprovider")
    sequential.assert_outcomes(passed=10)
    threaded = pytester.runpytest(
        "-p", "no:cacheprovider", "--threadpool", "4", "--threadpool-scope", "all"
    )
    threaded.assert_outcomes(passed=10)  # the sync tests met: they ran together
    threaded.stdout.fnmatch_lines(
        [
            "*8 test(s) ran with nothing else running: 1 fixture resource runs on anyio's event "
            "loop (its pytest plugin shares one among tests); 7 runs on anyio's event loop (its "
            "pytest plugin shares one among tests)*",
        ]
    )
