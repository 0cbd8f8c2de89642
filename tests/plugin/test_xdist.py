"""``-n N --threadpool M``: pytest-xdist workers, each running what it receives in a pool of M
threads, with outcomes, fixture sharing and stops as in a sequential run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("xdist")

PARITY_FILES = {
    "test_mod_a": """
        import pytest
        from pytest_threadpool import parallelizable, not_parallelizable

        pytestmark = parallelizable("children")
        EVENTS = []

        @pytest.fixture(scope="module")
        def resource():
            EVENTS.append("setup")
            yield EVENTS
            EVENTS.append("teardown")

        @pytest.fixture
        def broken():
            raise RuntimeError("fixture setup fails")

        @pytest.fixture
        def bad_teardown():
            yield
            raise RuntimeError("fixture teardown fails")

        def test_pass(resource):
            assert resource.count("setup") == 1

        def test_fail():
            assert 1 == 2

        def test_skip():
            pytest.skip("not here")

        @pytest.mark.xfail(reason="known", strict=False)
        def test_xfail():
            assert False

        @pytest.mark.xfail(reason="unexpectedly fine", strict=True)
        def test_xpass_strict():
            pass

        def test_setup_error(broken):
            pass

        def test_teardown_error(bad_teardown):
            pass

        @pytest.mark.parametrize("n", range(8))
        def test_param(n, resource):
            assert n != 5

        @not_parallelizable
        def test_alone(resource):
            assert resource.count("setup") == 1

        @pytest.mark.xdist_group("g1")
        def test_grouped_one():
            pass

        @pytest.mark.xdist_group("g1")
        def test_grouped_two():
            assert 0, "grouped failure"
    """,
    "test_mod_b": """
        import pytest
        from pytest_threadpool import parallelizable

        @parallelizable("children")
        class TestChain:
            ORDER = []

            @pytest.mark.parametrize("i", range(6))
            def test_variant(self, i):
                self.ORDER.append(i)  # the variants of one function run one after another
                assert self.ORDER == sorted(self.ORDER)

            def test_other(self):
                pass

        @pytest.fixture(scope="class")
        def cls_value():
            return []

        @parallelizable("children")
        class TestShared:
            @pytest.mark.parametrize("k", range(5))
            def test_uses(self, cls_value, k):
                cls_value.append(k)
                assert k != 3

        @pytest.mark.xdist_group("g2")
        @pytest.mark.parametrize("j", range(4))
        def test_group_two(j):
            assert j % 2 == 0
    """,
    "test_mod_c": """
        import pytest

        @pytest.mark.parametrize("v", range(12))
        def test_many(v):
            if v == 7:
                pytest.skip("seven")
            assert v != 9

        def test_error_in_call():
            raise ValueError("boom")
    """,
}


def _outcomes(path: Path) -> dict[str, str]:
    """Per test (node id without xdist's "@group" suffix): its outcome in the junit XML."""
    results: dict[str, str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = re.sub(r"@[^\[\]]*$", "", case.get("name", ""))
        name = re.sub(r"@[^\[\]]*(?=\[)", "", name)
        key = f"{case.get('classname')}::{name}"
        kinds = sorted(child.tag for child in case if child.tag in ("failure", "error", "skipped"))
        results[key] = ",".join(kinds) or "passed"
    return results


def _case_count(path: Path) -> int:
    return len(list(ET.parse(path).getroot().iter("testcase")))


@pytest.mark.parametrize("dist", ["load", "loadscope", "loadfile", "loadgroup", "worksteal"])
def test_outcomes_match_a_sequential_run(pytester: pytest.Pytester, dist: str) -> None:
    pytester.makepyfile(**PARITY_FILES)
    sequential = pytester.runpytest_subprocess("-p", "no:xdist", "--junitxml=seq.xml")
    assert sequential.ret == pytest.ExitCode.TESTS_FAILED
    result = pytester.runpytest_subprocess(
        "-n", "2", "--dist", dist, "--threadpool", "2", "--junitxml=xdist.xml"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    expected = _outcomes(pytester.path / "seq.xml")
    assert len(expected) == 47
    assert _outcomes(pytester.path / "xdist.xml") == expected
    # each test reported once, as sequentially (no test run twice, none lost)
    assert _case_count(pytester.path / "xdist.xml") == _case_count(pytester.path / "seq.xml")
    result.stdout.fnmatch_lines(["*created: 2/2 workers*"])
    counts = sequential.parseoutcomes()
    counts.pop("warnings", None)  # without xdist, its xdist_group marker is unknown
    assert result.parseoutcomes() == counts


def test_tests_of_a_worker_overlap_in_its_threads(pytester: pytest.Pytester) -> None:
    """loadfile sends each worker a whole file: its two barrier tests only pass together,
    on two threads of that worker."""
    template = """
        import os, threading
        from pytest_threadpool import parallelizable

        pytestmark = parallelizable("children")
        BARRIER = threading.Barrier(2, timeout=60)

        def _record(name):
            with open({out!r}, "a") as out:
                worker = os.environ["PYTEST_XDIST_WORKER"]
                ident = threading.get_ident()
                out.write(f"{{__name__}} {{name}} {{worker}} {{os.getpid()}} {{ident}}\\n")

        def test_one():
            _record("one")
            BARRIER.wait()

        def test_two():
            _record("two")
            BARRIER.wait()

        def test_last():
            pass
    """
    out = str(pytester.path / "seen.txt")
    pytester.makepyfile(test_first=template.format(out=out), test_second=template.format(out=out))
    result = pytester.runpytest_subprocess("-n", "2", "--dist", "loadfile", "--threadpool", "2")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["threadpool: 2 threads in each pytest-xdist worker*"])
    lines = [line.split() for line in Path(out).read_text().splitlines()]
    assert len(lines) == 4
    by_file: dict[str, list[list[str]]] = {}
    for line in lines:
        by_file.setdefault(line[0], []).append(line)
    assert sorted(by_file) == ["test_first", "test_second"]
    for seen in by_file.values():
        assert sorted(line[1] for line in seen) == ["one", "two"]
        assert len({(line[2], line[3]) for line in seen}) == 1  # one worker process ran both
        assert seen[0][2].startswith("gw")
        assert seen[0][4] != seen[1][4]  # each on its own thread


def test_module_fixture_is_set_up_once_per_worker(pytester: pytest.Pytester) -> None:
    out = pytester.path / "fixture.txt"
    pytester.makepyfile(
        test_shared=f"""
        import os, pytest
        from pytest_threadpool import parallelizable

        pytestmark = parallelizable("children")

        @pytest.fixture(scope="module")
        def resource():
            with open({str(out)!r}, "a") as f:
                f.write(f"setup {{os.getpid()}}\\n")
            yield
            with open({str(out)!r}, "a") as f:
                f.write(f"teardown {{os.getpid()}}\\n")

        @pytest.mark.parametrize("n", range(60))
        def test_uses(resource, n):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-n", "2", "--threadpool", "2")
    result.assert_outcomes(passed=60)
    lines = out.read_text().split("\n")[:-1]
    pids = {line.split()[1] for line in lines}
    for pid in pids:
        assert lines.count(f"setup {pid}") == 1
        assert lines.count(f"teardown {pid}") == 1


@pytest.mark.parametrize(("stop", "failing"), [("-x", 1), ("--maxfail=2", 2)])
def test_x_and_maxfail_stop_the_worker(pytester: pytest.Pytester, stop: str, failing: int) -> None:
    fails = "".join(
        f"""
        def test_fails_{number}():
            assert False
        """
        for number in range(failing)
    )
    pytester.makepyfile(
        test_stop=f"""
        from pytest_threadpool import not_parallelizable, parallelizable

        pytestmark = parallelizable("children")
        {fails}
        @not_parallelizable
        def test_never_runs():
            pass
        """,
        test_other="""
        def test_elsewhere():
            pass
        """,
    )
    result = pytester.runpytest_subprocess(
        "-n", "2", "--dist", "loadfile", "--threadpool", "2", stop, "-rA"
    )
    # xdist ends a session stopped by -x as interrupted, with or without --threadpool.
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert result.parseoutcomes()["failed"] == failing
    result.stdout.fnmatch_lines([f"*stopping after {failing} failures*"])
    result.stdout.no_fnmatch_line("*test_never_runs*")


def test_worker_crash_names_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_crash="""
        import os

        def test_exits():
            os._exit(3)
        """,
        test_fine="""
        from pytest_threadpool import parallelizable

        pytestmark = parallelizable("children")

        def test_a():
            pass

        def test_b():
            pass
        """,
    )
    # --dist load: with loadfile, xdist itself re-runs a crashing file until it gives up.
    # The crashing test comes first, so it is the first pending on whichever worker gets it:
    # the one xdist names.
    result = pytester.runpytest_subprocess("-n", "2", "--dist", "load", "--threadpool", "2")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*crashed while running*test_crash.py::test_exits*"])
    result.assert_outcomes(passed=2, failed=1)


@pytest.mark.parametrize("how", ["option", "ini"])
def test_auto_divides_cpus_among_workers(pytester: pytest.Pytester, how: str) -> None:
    out = pytester.path / "threads.txt"
    pytester.makepyfile(
        test_count=f"""
        from pytest_threadpool import plugin

        def test_count(request):
            settings = request.config.stash[plugin.SETTINGS_KEY]
            with open({str(out)!r}, "a") as f:
                f.write(f"{{settings.workers}}\\n")
        """
    )
    args = ["-n", "2", "--dist", "each"]
    if how == "ini":
        pytester.makeini("[pytest]\nthreadpool = auto\n")
    else:
        args += ["--threadpool", "auto"]
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=2)
    expected = max(1, (os.process_cpu_count() or 1) // 2)
    assert out.read_text().split() == [str(expected)] * 2


@pytest.mark.parametrize(
    ("args", "ini", "setting"),
    [
        (["--threadpool-output", "live"], "", "--threadpool-output live"),
        ([], "threadpool_output = live", "ini threadpool_output = live"),
    ],
)
def test_live_output_under_xdist_is_refused_naming_what_was_set(
    pytester: pytest.Pytester, args: list[str], ini: str, setting: str
) -> None:
    pytester.makeini(f"[pytest]\nthreadpool = 2\n{ini}\n")
    pytester.makepyfile("def test_x(): pass\n")
    result = pytester.runpytest_subprocess("-n", "2", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: {setting} cannot be shown under pytest-xdist (-n 2)*drop it (or use classic)"]
    )
    assert "--threadpool " not in result.stderr.str()


def test_socket_worker_next_to_a_popen_worker(pytester: pytest.Pytester) -> None:
    """A loopback execnet socket gateway (the server bound to 127.0.0.1, serving one
    connection) next to a popen one, both running their tests in threads."""
    execnet = pytest.importorskip("execnet")
    script = Path(execnet.__file__).parent / "script" / "socketserver.py"
    pytester.makepyfile(
        test_many="""
        import pytest
        from pytest_threadpool import parallelizable

        pytestmark = parallelizable("children")

        @pytest.mark.parametrize("n", range(10))
        def test_n(n):
            assert n != 4
        """
    )
    server = subprocess.Popen(
        [sys.executable, "-u", str(script), "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=pytester.path,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        match = re.search(r"\('127\.0\.0\.1', (\d+)\)", line)
        assert match is not None, line
        port = match.group(1)
        result = pytester.runpytest_subprocess(
            "--tx",
            "popen",
            "--tx",
            f"socket=127.0.0.1:{port}//chdir={pytester.path}",
            "--dist",
            "loadfile",
            "--threadpool",
            "2",
            timeout=120,
        )
    finally:
        server.kill()
        server.wait(timeout=30)
    result.assert_outcomes(passed=9, failed=1)


REPO = Path(__file__).resolve().parents[2]
INTERPRETERS = {"3.13": REPO / ".venv-3.13/bin/python", "3.13t": REPO / ".venv-3.13t/bin/python"}

RECORDING_CONFTEST = """
    import json, os, sys, sysconfig, threading
    import pytest

    def _record(entry):
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        if worker is None:  # the sequential run records nothing
            return
        with open({out!r}, "a") as out:
            out.write(json.dumps({{"worker": worker, "pid": os.getpid(), **entry}}) + "\\n")

    @pytest.fixture(scope="session", autouse=True)
    def interpreter_record():
        import pytest_threadpool._engine as engine

        _record({{
            "kind": "session",
            "executable": sys.executable,
            "gil_enabled": sys._is_gil_enabled(),
            "py_gil_disabled": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
            "engine": engine.__file__,
        }})

    @pytest.fixture(autouse=True)
    def thread_record(request):
        _record({{
            "kind": "test",
            "thread": threading.current_thread().name,
            "nodeid": request.node.nodeid,
        }})
"""


def _both_interpreters() -> dict[str, Path]:
    missing = [f"{name} ({path})" for name, path in INTERPRETERS.items() if not path.exists()]
    if missing:
        pytest.skip(f"needs both repo venvs; missing: {', '.join(missing)} (run `make setup`)")
    for python in INTERPRETERS.values():
        probe = subprocess.run(
            [str(python), "-c", "import pytest_threadpool._engine, xdist, execnet"],
            capture_output=True,
            text=True,
        )
        assert probe.returncode == 0, (
            f"{python} cannot import pytest_threadpool's engine (run `make build`):\n{probe.stderr}"
        )
    return INTERPRETERS


class _SocketServers:
    """One execnet socket server per interpreter (loopback, one connection each): the
    gateways of ``--tx socket=...``, whose workers keep their own interpreter's sys.path."""

    def __init__(self, pythons: list[Path], cwd: Path) -> None:
        import execnet

        script = Path(execnet.__file__).parent / "script" / "socketserver.py"
        self.servers: list[subprocess.Popen[str]] = []
        self.ports: list[str] = []
        for python in pythons:
            server = subprocess.Popen(
                [str(python), "-u", str(script), "127.0.0.1:0"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=cwd,
            )
            self.servers.append(server)
            assert server.stdout is not None
            line = server.stdout.readline()
            match = re.search(r"\('127\.0\.0\.1', (\d+)\)", line)
            assert match is not None, line
            self.ports.append(match.group(1))

    def close(self) -> None:
        for server in self.servers:
            server.kill()
            server.wait(timeout=30)


def test_workers_on_a_gil_and_a_free_threaded_interpreter(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 3.13 and a 3.13t worker in one run: outcomes as in a sequential run, each worker on its
    own interpreter and engine build, running tests on its pool's threads.

    The workers are execnet socket gateways, each served by one of the interpreters: pytest-xdist
    3.8.0 hands popen workers the controller's sys.path (see the popen test below)."""
    pythons = _both_interpreters()
    # This suite may itself run under xdist: its worker's variables must not reach the
    # sequential run (the conftest records only where PYTEST_XDIST_WORKER is set).
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    out = pytester.path / "interpreters.jsonl"
    pytester.makeconftest(RECORDING_CONFTEST.format(out=str(out)))
    pytester.makepyfile(**PARITY_FILES)
    sequential = pytester.runpytest_subprocess("-p", "no:xdist", "--junitxml=seq.xml")
    assert sequential.ret == pytest.ExitCode.TESTS_FAILED
    assert not out.exists()
    servers = _SocketServers([pythons["3.13"], pythons["3.13t"]], pytester.path)
    try:
        result = pytester.runpytest_subprocess(
            *(
                arg
                for port in servers.ports
                for arg in ("--tx", f"socket=127.0.0.1:{port}//chdir={pytester.path}")
            ),
            *("--dist", "load", "--threadpool", "2", "--junitxml=xdist.xml"),
            timeout=180,
        )
    finally:
        servers.close()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    expected = _outcomes(pytester.path / "seq.xml")
    assert len(expected) == 47
    assert _outcomes(pytester.path / "xdist.xml") == expected
    assert _case_count(pytester.path / "xdist.xml") == _case_count(pytester.path / "seq.xml")
    result.stdout.fnmatch_lines(["*created: 2/2 workers*"])

    records = [json.loads(line) for line in out.read_text().splitlines()]
    sessions = {r["worker"]: r for r in records if r["kind"] == "session"}
    assert sorted(sessions) == ["gw0", "gw1"], records
    assert sessions["gw0"]["executable"] == str(pythons["3.13"])
    assert (sessions["gw0"]["gil_enabled"], sessions["gw0"]["py_gil_disabled"]) == (True, False)
    assert "cpython-313-" in sessions["gw0"]["engine"]
    assert sessions["gw1"]["executable"] == str(pythons["3.13t"])
    assert (sessions["gw1"]["gil_enabled"], sessions["gw1"]["py_gil_disabled"]) == (False, True)
    assert "cpython-313t-" in sessions["gw1"]["engine"]
    tests = [r for r in records if r["kind"] == "test"]
    assert len(tests) == 47  # each test's setup reached the autouse fixture once
    for worker, session in sessions.items():
        mine = [r for r in tests if r["worker"] == worker]
        assert {r["pid"] for r in mine} == {session["pid"]}
        threads = {r["thread"] for r in mine}
        assert any(name.startswith("threadpool-worker") for name in threads), (worker, threads)


@pytest.mark.xfail(
    strict=True,
    reason="pytest-xdist 3.8.0 gives popen workers the controller's sys.path (workermanage's "
    "change_sys_path, xdist PR #667): a worker on an interpreter with another stdlib fails to "
    "start, with or without --threadpool",
)
def test_popen_workers_on_two_interpreters(pytester: pytest.Pytester) -> None:
    pythons = _both_interpreters()
    pytester.makepyfile(**PARITY_FILES)
    result = pytester.runpytest_subprocess(
        *("--tx", f"popen//python={pythons['3.13']}"),
        *("--tx", f"popen//python={pythons['3.13t']}"),
        *("--dist", "load", "--threadpool", "2", "--max-worker-restart", "0"),
        timeout=120,
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    result.stdout.fnmatch_lines(["*created: 2/2 workers*"])
    assert result.parseoutcomes()["failed"] == 9


SLEEPING_MODULE = """
    import os, threading, time
    import pytest
    from pytest_threadpool import parallelizable

    pytestmark = parallelizable("children")

    def _sleep(name):
        thread = threading.current_thread().name
        seen = [os.environ["PYTEST_XDIST_WORKER"], str(os.getpid()), thread]
        with open(os.path.join({out!r}, f"{{__name__}}-{{name}}"), "w") as out:
            out.write(" ".join(seen))
        time.sleep(300)

    # separate functions (a function's parametrized variants run one after another)
    def test_one():
        _sleep("one")

    def test_two():
        _sleep("two")

    def test_three():
        _sleep("three")

    def test_four():
        _sleep("four")
"""

# The child restores SIGINT's default action before pytest starts: a shell that started this
# run in the background (`&`) ignores SIGINT, and an ignored signal stays ignored across exec.
SIGINT_DEFAULT_EXEC = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, '-m', 'pytest', *sys.argv[1:]])"
)


def _gone(pid: int) -> bool:
    """The process has exited (a zombie nobody reaped yet counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_ctrl_c_ends_the_run_and_its_workers(pytester: pytest.Pytester) -> None:
    """SIGINT to the run's process group (what Ctrl-C in a terminal sends) while every worker's
    pool is in a 300 s sleep: the run ends interrupted within 30 s and no worker is left."""
    started = pytester.path / "started"
    started.mkdir()
    pytester.makepyfile(
        test_sleep_a=SLEEPING_MODULE.format(out=str(started)),
        test_sleep_b=SLEEPING_MODULE.format(out=str(started)),
    )
    output = pytester.path / "output.txt"
    pytest_args = ["-p", "no:cacheprovider", "-n", "2", "--dist", "loadfile", "--threadpool", "2"]
    with output.open("wb") as sink:
        run = subprocess.Popen(
            [sys.executable, "-c", SIGINT_DEFAULT_EXEC, *pytest_args],
            cwd=pytester.path,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal's foreground job
        )
    try:
        deadline = time.monotonic() + 120
        seen: list[list[str]] = []
        while time.monotonic() < deadline and run.poll() is None:
            seen = [path.read_text().split() for path in started.iterdir()]
            # both workers have two tests sleeping on their pool threads
            if len({(entry[0], entry[2]) for entry in seen if len(entry) == 3}) == 4:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"the tests did not start in both workers: {seen}\n{output.read_text()}")
        workers = {int(entry[1]) for entry in seen if len(entry) == 3}
        assert len(workers) == 2
        assert all(entry[2].startswith("threadpool-worker") for entry in seen if len(entry) == 3)

        sent = time.monotonic()
        os.killpg(run.pid, signal.SIGINT)
        try:
            returncode = run.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the run was still going 30 s after SIGINT:\n{output.read_text()}")
        elapsed = time.monotonic() - sent
        text = output.read_text()
        assert returncode == pytest.ExitCode.INTERRUPTED, text
        assert "KeyboardInterrupt" in text
        worker_deadline = time.monotonic() + 10
        while time.monotonic() < worker_deadline and not all(map(_gone, workers)):
            time.sleep(0.05)
        left = [pid for pid in workers if not _gone(pid)]
        assert not left, f"workers left behind: {left}"
        assert elapsed < 30
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        else:
            try:  # whatever of the group may be left
                os.killpg(run.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
