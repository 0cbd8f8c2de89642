"""pytest-asyncio suites under the pool: the same per-test outcomes as a sequential run.

pytest-asyncio swaps ``FixtureDef.func`` for a wrapper bound to the test's event loop while an
async fixture is set up; each thread must see its own swap (fixture_isolation). Tests on a
class/module/package/session loop share that loop and run alone (grouping).

Overlap is forced, never hoped for: a "first" test's async fixture waits inside its setup (its
loop running, its wrapper installed) until a "second" test, whose sync fixture waited for that
moment, has set up the same async fixture. Before per-thread definition attributes the second
test picked up the first one's wrapper and ran the first test's loop from its own thread
("This event loop is already running"). The waits only time out when the pool does not run the
two tests at once, which a broken plugin shows as a failure, not as a hang.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ASYNCIO = ("-p", "asyncio", "-p", "no:cacheprovider")
THREADED = ("--threadpool", "4", "--threadpool-scope", "all")

INI = """
    [pytest]
    asyncio_mode = strict
    asyncio_default_fixture_loop_scope = function
    asyncio_default_test_loop_scope = function
"""

# Handshake between two tests that set up one async fixture at the same time (threaded runs
# only; a sequential run never waits). ``first_inside`` is set by the first test's fixture from
# inside its setup, ``second_done`` when the second test has finished its setup.
HANDSHAKE = """
    import threading
    import pytest

    WAIT = 20
    first_inside = threading.Event()
    second_done = threading.Event()

    def threaded(request):
        return bool(request.config.getoption("threadpool", None))

    @pytest.fixture
    def first_waits_for_second(request):
        # Called by an async fixture from inside its setup.
        def wait():
            if threaded(request) and request.node.name.startswith("test_first"):
                first_inside.set()
                assert second_done.wait(WAIT), "the second test did not run meanwhile"
        return wait

    @pytest.fixture
    def after_first(request):
        if threaded(request):
            assert first_inside.wait(WAIT), "the first test did not start"
        yield
        second_done.set()
"""


def outcomes_from_junit(path: Path) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        key = f"{case.get('classname')}::{case.get('name')}"
        kinds = sorted(child.tag for child in case if child.tag in {"failure", "error", "skipped"})
        outcomes[key] = ",".join(kinds) or "passed"
    return outcomes


def run_both(pytester: pytest.Pytester) -> tuple[dict[str, str], dict[str, str]]:
    """Per-test outcomes of a sequential and a threaded run of the project."""
    sequential = pytester.runpytest(*ASYNCIO, "--junitxml=seq.xml")
    threaded = pytester.runpytest(*ASYNCIO, *THREADED, "--junitxml=par.xml")
    assert threaded.ret == sequential.ret, threaded.stdout.str()[-4000:]
    assert threaded.parseoutcomes() == sequential.parseoutcomes()
    return (
        outcomes_from_junit(pytester.path / "seq.xml"),
        outcomes_from_junit(pytester.path / "par.xml"),
    )


PROJECT_CONFTEST = (
    HANDSHAKE
    + """
    import asyncio
    import pytest_asyncio

    @pytest.fixture(scope="session")
    def settings():
        return {"name": "svc"}

    @pytest_asyncio.fixture
    async def client(settings, first_waits_for_second):
        await asyncio.sleep(0)
        first_waits_for_second()
        c = {"loop": asyncio.get_running_loop(), "closed": False, "name": settings["name"]}
        yield c
        assert asyncio.get_running_loop() is c["loop"]
        c["closed"] = True

    @pytest_asyncio.fixture
    async def token():
        await asyncio.sleep(0)
        return "tok-%d" % id(asyncio.get_running_loop())
"""
)

PROJECT_API = """
    import asyncio
    import contextvars
    import pytest
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def broken():
        await asyncio.sleep(0)
        raise RuntimeError("fixture broke")

    @pytest_asyncio.fixture
    async def session_obj(client, token):
        yield (client, token)
        await asyncio.sleep(0)

    @pytest.mark.asyncio
    async def test_first(client):
        assert client["loop"] is asyncio.get_running_loop()

    @pytest.mark.asyncio
    async def test_second(after_first, client):
        assert client["loop"] is asyncio.get_running_loop()

    @pytest.mark.asyncio
    async def test_token(token):
        assert token == "tok-%d" % id(asyncio.get_running_loop())

    @pytest.mark.asyncio
    async def test_session_obj(session_obj):
        c, t = session_obj
        assert c["loop"] is asyncio.get_running_loop()

    @pytest.mark.asyncio
    async def test_fails(client):
        assert client["name"] == "other"

    @pytest.mark.asyncio
    async def test_broken_fixture(broken):
        pass

    @pytest.mark.asyncio
    @pytest.mark.parametrize("n", [1, 2, 3, 4])
    async def test_param(client, n):
        await asyncio.sleep(0)
        assert client["loop"] is asyncio.get_running_loop()

    def test_sync(settings):
        assert settings["name"] == "svc"

    def test_sync_two():
        assert 1 + 1 == 2

    @pytest.mark.asyncio
    async def test_gather(client, token):
        assert await asyncio.gather(*(asyncio.sleep(0, i) for i in range(5))) == list(range(5))

    @pytest.mark.asyncio
    async def test_skip(client):
        pytest.skip("not today")

    @pytest.mark.asyncio
    @pytest.mark.xfail(reason="known")
    async def test_xfail(token):
        assert False

    @pytest_asyncio.fixture
    async def echo_server():
        async def echo(reader, writer):
            writer.write(await reader.readline())
            await writer.drain()
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        yield server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()

    @pytest.mark.asyncio
    async def test_echo(echo_server):
        reader, writer = await asyncio.open_connection("127.0.0.1", echo_server)
        writer.write(b"ping\\n")
        assert await reader.readline() == b"ping\\n"
        writer.close()
        await writer.wait_closed()

    current_user = contextvars.ContextVar("current_user", default=None)

    @pytest_asyncio.fixture
    async def logged_in():
        current_user.set("alice")
        yield

    @pytest.mark.asyncio
    async def test_contextvar_from_fixture(logged_in):
        assert current_user.get() == "alice"
"""

PROJECT_MODULE_LOOP = """
    import asyncio
    import pytest
    import pytest_asyncio

    pytestmark = pytest.mark.asyncio(loop_scope="module")
    loops = []

    @pytest_asyncio.fixture(scope="module", loop_scope="module")
    async def db():
        d = {"loop": asyncio.get_running_loop(), "rows": []}
        yield d
        assert asyncio.get_running_loop() is d["loop"]

    @pytest_asyncio.fixture(loop_scope="module")
    async def row(db):
        db["rows"].append(1)
        yield len(db["rows"])
        db["rows"].pop()

    async def test_one(db):
        loops.append(asyncio.get_running_loop())
        assert db["loop"] is asyncio.get_running_loop()

    async def test_two(db, row):
        loops.append(asyncio.get_running_loop())
        assert row == 1

    async def test_three(db, row):
        loops.append(asyncio.get_running_loop())
        assert row == 1

    @pytest.mark.parametrize("k", range(3))
    async def test_many(db, k):
        loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0)

    async def test_same_loop():
        assert len(set(map(id, loops))) == 1
"""

PROJECT_CLASS_LOOP = """
    import asyncio
    import pytest
    import pytest_asyncio

    @pytest_asyncio.fixture(scope="class", loop_scope="class")
    async def conn():
        yield {"loop": asyncio.get_running_loop()}

    @pytest.mark.asyncio(loop_scope="class")
    class TestShared:
        loop = None

        async def test_a(self, conn):
            assert conn["loop"] is asyncio.get_running_loop()
            TestShared.loop = asyncio.get_running_loop()

        async def test_b(self, conn):
            assert TestShared.loop is asyncio.get_running_loop()

        async def test_c(self, conn):
            await asyncio.sleep(0)
            assert conn["loop"] is asyncio.get_running_loop()

    class TestFunctionLoops:
        @pytest.mark.asyncio
        async def test_x(self, client):
            assert client["loop"] is asyncio.get_running_loop()

        @pytest.mark.asyncio
        async def test_y(self, token):
            await asyncio.sleep(0)

        def test_z(self):
            pass
"""


def test_realistic_project_matches_sequential(pytester: pytest.Pytester):
    """30 tests: async tests and async yield fixtures on function, class and module loops, a
    failing test, a failing async fixture, parametrized async tests, skip/xfail, sync tests."""
    pytester.makeini(INI)
    pytester.makeconftest(PROJECT_CONFTEST)
    pytester.makepyfile(
        test_api=PROJECT_API,
        test_module_loop=PROJECT_MODULE_LOOP,
        test_class_loop=PROJECT_CLASS_LOOP,
    )
    sequential, threaded = run_both(pytester)
    assert len(sequential) == 30
    assert list(sequential.values()).count("passed") == 26
    assert threaded == sequential


def test_concurrent_async_fixtures_each_run_on_their_own_loop(pytester: pytest.Pytester):
    """The second test sets up ``resource`` while the first one's setup is running its loop:
    each gets a value made on its own loop, on its own thread, and tears it down there."""
    pytester.makeini(INI)
    pytester.makeconftest(HANDSHAKE)
    pytester.makepyfile(
        """
        import asyncio
        import threading
        import pytest
        import pytest_asyncio

        torn = []

        @pytest_asyncio.fixture
        async def resource(request, first_waits_for_second):
            first_waits_for_second()
            value = (asyncio.get_running_loop(), threading.current_thread())
            yield value
            assert (asyncio.get_running_loop(), threading.current_thread()) == value
            torn.append(request.node.name)

        @pytest.mark.asyncio
        async def test_first(resource):
            assert resource == (asyncio.get_running_loop(), threading.current_thread())

        @pytest.mark.asyncio
        async def test_second(after_first, resource):
            assert resource == (asyncio.get_running_loop(), threading.current_thread())

        @pytest.mark.not_parallelizable  # after the others
        def test_both_torn_down():
            assert sorted(torn) == ["test_first", "test_second"]
        """
    )
    result = pytester.runpytest(*ASYNCIO, *THREADED)
    result.assert_outcomes(passed=3)
    result.stdout.no_fnmatch_line("*ran with nothing else running*")


def test_async_yield_fixture_teardown_under_concurrency(pytester: pytest.Pytester):
    """Async yield fixtures of concurrent tests are torn down once each, on the loop that set
    them up and before that loop's runner closes; a failing async teardown is reported for its
    own test only."""
    pytester.makeini(INI)
    pytester.makeconftest(HANDSHAKE)
    pytester.makepyfile(
        """
        import asyncio
        import pytest
        import pytest_asyncio

        events = []

        @pytest_asyncio.fixture
        async def conn(request, first_waits_for_second):
            first_waits_for_second()
            loop = asyncio.get_running_loop()
            events.append(("open", request.node.name))
            yield loop
            await asyncio.sleep(0)
            assert asyncio.get_running_loop() is loop and not loop.is_closed()
            events.append(("close", request.node.name))
            if request.node.name == "test_second_bad_teardown":
                raise RuntimeError("teardown of the second")

        @pytest.mark.asyncio
        async def test_first(conn):
            assert conn is asyncio.get_running_loop()

        @pytest.mark.asyncio
        async def test_second_bad_teardown(after_first, conn):
            assert conn is asyncio.get_running_loop()

        @pytest.mark.not_parallelizable  # after the others
        def test_each_closed_once():
            names = ["test_first", "test_second_bad_teardown"]
            assert sorted(e for e in events if e[0] == "open") == [("open", n) for n in names]
            assert sorted(e for e in events if e[0] == "close") == [("close", n) for n in names]
        """
    )
    result = pytester.runpytest(*ASYNCIO, *THREADED)
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_second_bad_teardown*"])


def test_module_loop_tests_never_overlap(pytester: pytest.Pytester):
    """Tests on one module-scoped loop (by marker, and through a function-scoped async fixture
    on the module loop) run one at a time, and each on the same loop as in a sequential run;
    function-loop and sync tests of the module still run in the pool. The first test gives
    the others ample time to start: a pool running them at once fails it."""
    pytester.makeini(INI)
    pytester.makepyfile(
        """
        import asyncio
        import threading
        import pytest
        import pytest_asyncio

        lock = threading.Lock()
        active = []
        entered = threading.Event()
        loops = set()

        @pytest_asyncio.fixture(loop_scope="module")
        async def on_module_loop():
            return asyncio.get_running_loop()

        class Track:
            def __init__(self, name):
                self.name = name
            def __enter__(self):
                with lock:
                    active.append(self.name)
                    overlap = list(active)
                entered.set()
                loops.add(asyncio.get_running_loop())
                assert overlap == [self.name], f"running at once: {overlap}"
            def __exit__(self, *exc):
                with lock:
                    active.remove(self.name)

        @pytest.mark.asyncio(loop_scope="module")
        async def test_a_first():
            with Track("a"):
                entered.clear()
                # Long enough for every other test of the group to have started.
                await asyncio.to_thread(entered.wait, 2)
                assert not entered.is_set(), "another module-loop test started meanwhile"

        @pytest.mark.asyncio(loop_scope="module")
        @pytest.mark.parametrize("n", range(3))
        async def test_b(n):
            with Track(f"b{n}"):
                await asyncio.sleep(0)

        @pytest.mark.asyncio
        async def test_c_fixture_on_module_loop(on_module_loop):
            loop = on_module_loop
            assert loop is not asyncio.get_running_loop()
            with lock:
                assert not active
            loops.add(loop)

        @pytest.mark.asyncio
        async def test_d_function_loop():
            await asyncio.sleep(0)

        def test_e_sync():
            pass

        def test_f_one_module_loop():
            assert len(loops) == 1
        """
    )
    result = pytester.runpytest(*ASYNCIO, *THREADED, "-v")
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(
        [
            "*5 test(s) ran with nothing else running: 1 fixture on_module_loop runs on a "
            "module-scoped asyncio event loop*; 4 runs on a module-scoped asyncio event loop*",
        ]
    )


def test_async_fixture_failure_traceback_hides_the_plugin(pytester: pytest.Pytester):
    """A failing async fixture (setup) and failing sync and async teardowns, defined in a
    conftest (so pytest does not cut the traceback at the test's file): the same tracebacks
    as a sequential run, without pytest_threadpool frames."""
    pytester.makeini(INI)
    pytester.makeconftest(
        """
        import asyncio
        import pytest
        import pytest_asyncio

        @pytest_asyncio.fixture
        async def bad_setup():
            await asyncio.sleep(0)
            raise RuntimeError("async setup broke")

        @pytest_asyncio.fixture
        async def bad_async_teardown():
            yield 1
            raise RuntimeError("async teardown broke")

        @pytest.fixture
        def bad_sync_teardown():
            yield 1
            raise ValueError("sync teardown broke")
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.asyncio
        async def test_a(bad_setup):
            pass

        @pytest.mark.asyncio
        async def test_b(bad_async_teardown):
            pass

        def test_c(bad_sync_teardown):
            pass
        """
    )
    for tb in ("short", "long"):
        sequential = pytester.runpytest(*ASYNCIO, f"--tb={tb}")
        threaded = pytester.runpytest(*ASYNCIO, *THREADED, f"--tb={tb}")
        outcomes = threaded.parseoutcomes()
        assert outcomes == sequential.parseoutcomes()
        assert (outcomes["passed"], outcomes["errors"]) == (2, 3)
        frames = _error_sections(threaded)
        assert frames == _error_sections(sequential)
        assert len(frames) == 3
        assert all(frame_list for frame_list in frames.values())
        assert "pytest_threadpool/" not in threaded.stdout.str()


def _error_sections(result: pytest.RunResult) -> dict[str, list[tuple[str, str]]]:
    """The frames (file name, line) of each "ERROR at ..." section, by its title (sections
    follow completion order in a threaded run)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    frames: list[tuple[str, str]] = []
    for line in result.stdout.lines:
        if line.startswith("_") and " ERROR at " in line:
            frames = sections[line.strip("_ ")] = []
        elif line.startswith("="):
            frames = []
        else:
            match = FRAME.match(line)
            if match:
                frames.append((Path(match[1]).name, match[2]))
    return sections


FRAME = re.compile(r"^\s*(\S+\.py):(\d+)")
