"""Process-wide patches found where they are written (the test, or any fixture it reaches),
unsafe fixtures requested through other fixtures, fixtures declared safe, and options that make
a session sequential. Real freezegun, time-machine, pytest-flask, pytest-benchmark, pytest-cov."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

# Imported by the generated suites: records, per test (setup to teardown), the most tests that
# were running at once, and lets tests meet at a barrier when TP_MEET asks for one (concurrency
# is proven by meeting, never by timing; a sequential run does not meet).
PROBE = """
import os, threading, time

_lock = threading.Lock()
running = set()
peak = 0
overlap = {}
_parties = int(os.environ.get("TP_MEET", "0"))
_barrier = threading.Barrier(_parties, timeout=20) if _parties > 1 else None

def enter(name):
    global peak
    with _lock:
        running.add(name)
        peak = max(peak, len(running))
        for other in running:
            overlap[other] = max(overlap.get(other, 0), len(running))

def leave(name):
    with _lock:
        running.discard(name)

def meet():
    if _barrier is not None:
        _barrier.wait()
"""

PROBE_CONFTEST = """
import time, pytest, probe

@pytest.fixture(autouse=True)
def _overlap(request):
    probe.enter(request.node.name)
    time.sleep(0.02)  # a window in which another test would show up
    yield
    probe.leave(request.node.name)

def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"PEAK={probe.peak}")
    for name, most in sorted(probe.overlap.items()):
        terminalreporter.write_line(f"OVERLAP {name}={most}")
"""

ALONE = "test(s) ran with nothing else running"
SEQUENTIAL_LINE = "needs tests to run one at a time on the main thread"


def suite(pytester: pytest.Pytester, conftest: str = "", **files: str) -> None:
    pytester.makepyfile(probe=PROBE, **files)
    pytester.makeconftest(PROBE_CONFTEST + conftest)
    pytester.syspathinsert()


def run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, *args: str, meet: int = 0
) -> tuple[pytest.RunResult, int, dict[str, int]]:
    """Run the suite in a fresh process: (result, peak concurrency, test name -> overlap)."""
    if meet:
        monkeypatch.setenv("TP_MEET", str(meet))
    else:
        monkeypatch.delenv("TP_MEET", raising=False)
    if "flask" not in args:
        # pytest-flask's autouse fixtures request monkeypatch in every session it is loaded
        # in; only the pytest-flask suite below wants it.
        args = ("-p", "no:flask", *args)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    peaks = [line for line in result.outlines if line.startswith("PEAK=")]
    assert peaks, result.outlines
    overlap = {}
    for line in result.outlines:
        if line.startswith("OVERLAP "):
            name, _, most = line.removeprefix("OVERLAP ").rpartition("=")
            overlap[name] = int(most)
    return result, int(peaks[-1].removeprefix("PEAK=")), overlap


def outcomes(result: pytest.RunResult) -> dict[str, int]:
    """The outcome counts, less warnings (a sequential session warns once about why)."""
    counts = result.parseoutcomes()
    counts.pop("warnings", None)
    counts.pop("warning", None)
    return counts


def test_fixture_two_levels_deep_that_patches_makes_its_tests_run_alone(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    """test -> service -> patched_env, which patches with mock.patch.object in a conftest:
    both tests using service run alone, as does one whose fixture starts a patcher; a fixture
    calling an HTTP-style client.patch(...) is no patch, so its test meets a neighbour."""
    suite(
        pytester,
        """
import os
from unittest import mock

@pytest.fixture
def patched_env():
    with mock.patch.object(os, "getcwd", return_value="/patched"):
        yield

@pytest.fixture
def service(patched_env):
    return os.getcwd

@pytest.fixture
def patcher():
    started = mock.patch("os.getpid", return_value=-1)
    yield started.start()
    started.stop()

class Client:
    def patch(self, url):
        return url

@pytest.fixture
def api():
    return Client().patch("/items/1")
""",
        test_service="""
import os, pytest, probe
pytestmark = pytest.mark.parallelizable("children")

def test_service_a(service):
    assert service() == "/patched"

def test_service_b(service):
    assert os.getcwd() == "/patched"

def test_patcher(patcher):
    assert os.getpid() == -1

def test_http_client(api):
    assert api == "/items/1"
    probe.meet()

def test_neighbour():
    assert os.getcwd() != "/patched"
    probe.meet()
""",
    )
    sequential, _, _ = run(pytester, monkeypatch)
    result, peak, overlap = run(pytester, monkeypatch, "--threadpool", "3", "-v", meet=2)
    assert outcomes(result) == outcomes(sequential) == {"passed": 5}
    assert peak == 2  # the two neighbours met
    assert overlap["test_service_a"] == overlap["test_service_b"] == 1
    assert overlap["test_patcher"] == 1
    result.stdout.fnmatch_lines(
        [
            f"*3 {ALONE}: 2 fixture patched_env uses mock.patch (patches are process-wide); "
            "1 fixture patcher uses mock.patch (patches are process-wide)",
            "*test_service_a (fixture patched_env uses mock.patch*",
        ]
    )
    result.stdout.no_fnmatch_line("*test_http_client (*")


def test_freezegun_in_a_fixture_an_override_or_the_test_runs_alone(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    """freeze_time in a conftest fixture, in the fixture a module override requests, and as the
    test's own decorator: each of those tests runs alone; the neighbours meet."""
    suite(
        pytester,
        """
import freezegun

@pytest.fixture
def frozen_clock():
    with freezegun.freeze_time("2020-01-01") as frozen:
        yield frozen

@pytest.fixture
def clock():
    with freezegun.freeze_time("2021-06-01") as frozen:
        yield frozen
""",
        test_clock="""
import datetime, pytest, probe
from freezegun import freeze_time
pytestmark = pytest.mark.parallelizable("children")

@pytest.fixture
def clock(clock):  # overrides the conftest one, which still freezes the clock
    return clock

def test_fixture(frozen_clock):
    assert datetime.date.today() == datetime.date(2020, 1, 1)

def test_override(clock):
    assert datetime.date.today() == datetime.date(2021, 6, 1)

@freeze_time("2019-02-03")
def test_decorator():
    assert datetime.date.today() == datetime.date(2019, 2, 3)

def test_n1():
    assert datetime.date.today().year > 2022
    probe.meet()

def test_n2():
    assert datetime.date.today().year > 2022
    probe.meet()
""",
    )
    sequential, _, _ = run(pytester, monkeypatch)
    result, peak, overlap = run(pytester, monkeypatch, "--threadpool", "3", "-v", meet=2)
    assert outcomes(result) == outcomes(sequential) == {"passed": 5}
    assert peak == 2
    assert overlap["test_fixture"] == overlap["test_override"] == overlap["test_decorator"] == 1
    result.stdout.fnmatch_lines(
        [
            f"*3 {ALONE}: 1 fixture clock uses freezegun (process-wide patch); "
            "1 fixture frozen_clock uses freezegun (process-wide patch); "
            "1 uses freezegun (process-wide patch)",
        ]
    )


def test_click_cli_runner_and_assigned_std_streams_run_alone(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    """click's CliRunner.invoke assigns sys.stdin/stdout/stderr (and click's globals) for the
    call and puts back what it found: overlapping invokes left each other's streams installed
    (click's own suite: 143 failures). A runner made in a fixture, in the test, or at module
    level (the test only calls invoke), and a test assigning sys.stdout by hand, run alone;
    CliRunner(capture="fd") points fd 1 at a file of its own and gets the fd-level writes and
    its children's output."""
    suite(
        pytester,
        """
from click.testing import CliRunner

@pytest.fixture
def runner():
    return CliRunner()
""",
        commands="""
import os, subprocess, click

@click.command()
@click.argument("name")
def hello(name):
    click.echo(f"hello {name}")
    print(f"printed {name}")

@click.command()
def fd_level():
    click.echo("python level")
    os.write(1, b"fd level\\n")
    subprocess.run(["echo", "child level"], check=True)
""",
        test_fixture_cli="""
import pytest
from commands import hello
pytestmark = pytest.mark.parallelizable("children")

@pytest.mark.parametrize("name", ["a", "b", "c"])
def test_fixture_runner(runner, name):
    result = runner.invoke(hello, [name])
    assert result.output == f"hello {name}\\nprinted {name}\\n"
""",
        test_cli="""
import io, sys, pytest, probe
from click.testing import CliRunner
from commands import fd_level, hello
pytestmark = pytest.mark.parallelizable("children")
MODULE_RUNNER = CliRunner()

def test_module_runner():
    assert MODULE_RUNNER.invoke(hello, ["m"]).output == "hello m\\nprinted m\\n"

def test_fd_capture():
    result = CliRunner(capture="fd").invoke(fd_level)
    assert result.stdout == "python level\\nfd level\\nchild level\\n"

def test_assigns_stdout():
    saved, sys.stdout = sys.stdout, io.StringIO()
    try:
        print("mine")
        text = sys.stdout.getvalue()
    finally:
        sys.stdout = saved
    assert text == "mine\\n"

def test_neighbour_1():
    print("neighbour output " * 20)
    probe.meet()

def test_neighbour_2():
    print("neighbour output " * 20)
    probe.meet()
""",
    )
    sequential, _, _ = run(pytester, monkeypatch)
    result, peak, overlap = run(pytester, monkeypatch, "--threadpool", "3", "-v", meet=2)
    assert outcomes(result) == outcomes(sequential) == {"passed": 8}
    assert peak == 2  # the neighbours met
    assert all(overlap[f"test_fixture_runner[{name}]"] == 1 for name in "abc")
    assert overlap["test_module_runner"] == overlap["test_fd_capture"] == 1
    assert overlap["test_assigns_stdout"] == 1
    result.stdout.fnmatch_lines(
        [
            f"*6 {ALONE}: 3 fixture runner uses click's CliRunner (it swaps "
            "sys.stdout/stderr/stdin process-wide); 1 replaces sys.stdout/stderr/stdin "
            "(process-wide); 2 uses click's CliRunner (it swaps sys.stdout/stderr/stdin "
            "process-wide)",
        ]
    )


def test_fake_file_systems_and_http_mocks_run_alone_and_the_runner_keeps_the_real_fs(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    """pyfakefs (its fs fixture, a Patcher in the test) fakes os/open/pathlib for the whole
    process, requests-mock's fixture mocks every requests session, responses' activate patches
    requests' transport: such tests run alone. While a fake file system is installed the
    runner's own captures and fds keep the real one (they failed with "Bad file descriptor" and
    left the fake installed for the tests after it)."""
    suite(
        pytester,
        test_fakes="""
import os, pathlib, pytest, probe, requests
from pyfakefs.fake_filesystem_unittest import Patcher
pytestmark = pytest.mark.parallelizable("children")

def test_fs_fixture(fs):
    fs.create_file("/fake/only.txt", contents="fake")
    print("printed while faking")
    assert pathlib.Path("/fake/only.txt").read_text() == "fake"

def test_patcher_in_the_test():
    with Patcher() as patcher:
        patcher.fs.create_file("/fake/other.txt")
        assert os.path.exists("/fake/other.txt")

def test_requests_mock(requests_mock):
    requests_mock.get("http://example.invalid/x", text="mocked")
    assert requests.get("http://example.invalid/x").text == "mocked"

def test_neighbour_1(tmp_path):
    (tmp_path / "real.txt").write_text("real")
    assert not os.path.exists("/fake/only.txt")
    probe.meet()

def test_neighbour_2(tmp_path):
    assert (tmp_path / "x").mkdir() is None and not os.path.exists("/fake")
    probe.meet()
""",
        test_http_mocks="""
import pytest
import responses
pytestmark = pytest.mark.parallelizable("children")

@responses.activate
def test_responses_decorator():
    assert responses.patched

def test_no_mock():
    assert not responses.patched
""",
        responses="""
# A stand-in for the responses library: activate() patches process-wide, as it does.
import functools
patched = False

def activate(function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        global patched
        patched = True
        try:
            return function(*args, **kwargs)
        finally:
            patched = False
    return wrapper
""",
    )
    sequential, _, _ = run(pytester, monkeypatch, "-rP")
    result, peak, overlap = run(pytester, monkeypatch, "--threadpool", "3", "-rP", meet=2)
    assert outcomes(result) == outcomes(sequential) == {"passed": 7}
    assert peak == 2  # the neighbours met
    for name in ("test_fs_fixture", "test_patcher_in_the_test", "test_requests_mock"):
        assert overlap[name] == 1, name
    assert overlap["test_responses_decorator"] == 1
    result.stdout.fnmatch_lines(
        [
            f"*4 {ALONE}: 1 mocks HTTP with responses/respx (patches are process-wide); "
            "1 uses fs; 1 uses pyfakefs (patches the file system process-wide); "
            "1 uses requests_mock",
        ]
    )
    result.stdout.fnmatch_lines(
        ["*_ test_fs_fixture _*", "*- Captured stdout call -*", "printed while faking"]
    )


def test_blockbuster_in_a_fixture_makes_its_tests_run_alone(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    """blockbuster (anyio's suite activates it in an autouse fixture) wraps blocking functions
    of the whole process; overlapping activations restored each other's wrappers and left one
    installed, which then failed or hung the tests after them (anyio: 15 tests)."""
    suite(
        pytester,
        """
from blockbuster import blockbuster_ctx

@pytest.fixture
def guarded():
    with blockbuster_ctx("app") as bb:
        yield bb
""",
        blockbuster="""
# A stand-in for blockbuster: activation wraps time.sleep for the whole process.
import contextlib, time

@contextlib.contextmanager
def blockbuster_ctx(scanned_modules=None):
    original = time.sleep
    def guarded_sleep(seconds):
        raise RuntimeError("blocking call")
    time.sleep = guarded_sleep
    try:
        yield guarded_sleep
    finally:
        time.sleep = original
""",
        test_guarded="""
import time, pytest, probe
pytestmark = pytest.mark.parallelizable("children")

def test_guarded_1(guarded):
    assert time.sleep is guarded

def test_guarded_2(guarded):
    assert time.sleep is guarded

def test_free_1():
    time.sleep(0)
    probe.meet()

def test_free_2():
    time.sleep(0)
    probe.meet()
""",
    )
    sequential, _, _ = run(pytester, monkeypatch)
    result, peak, overlap = run(pytester, monkeypatch, "--threadpool", "3", meet=2)
    assert outcomes(result) == outcomes(sequential) == {"passed": 4}
    assert peak == 2 and overlap["test_guarded_1"] == overlap["test_guarded_2"] == 1
    result.stdout.fnmatch_lines(
        [
            f"*2 {ALONE}: 2 fixture guarded uses blockbuster (it patches blocking functions "
            "process-wide)",
        ]
    )


def test_freezer_and_time_machine_fixtures_and_markers_run_alone(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    """The freezer fixture (pytest-freezer's name; a stand-in here) and time-machine's
    time_machine fixture are unsafe by name, also when another fixture requests them; the
    time_machine marker (which time-machine turns into the fixture after collection) and
    time_machine.travel in the test's source make tests run alone too."""
    pytester.makepyfile(
        clocks="""
from freezegun import freeze_time

def start():
    frozen = freeze_time("2020-01-01")
    frozen.start()
    return frozen
"""
    )
    suite(
        pytester,
        """
import clocks

@pytest.fixture
def freezer():  # stands in for pytest-freezer's fixture: unsafe by its name
    frozen = clocks.start()
    yield frozen
    frozen.stop()

@pytest.fixture
def epoch(time_machine):
    time_machine.move_to(0, tick=False)
""",
        test_travel="""
import datetime, time, pytest, probe
import time_machine
pytestmark = pytest.mark.parallelizable("children")

def test_freezer(freezer):
    assert datetime.date.today() == datetime.date(2020, 1, 1)

def test_time_machine_fixture(time_machine):
    time_machine.move_to(100, tick=False)
    assert time.time() == 100

def test_through_a_fixture(epoch):
    assert time.time() == 0

@pytest.mark.time_machine(200, tick=False)
class TestMarked:
    def test_marked(self):
        assert time.time() == 200

def test_travel():
    with time_machine.travel(300, tick=False):
        assert time.time() == 300

def test_n1():
    assert time.time() > 1_000_000
    probe.meet()

def test_n2():
    assert time.time() > 1_000_000
    probe.meet()
""",
    )
    sequential, _, _ = run(pytester, monkeypatch)
    result, peak, overlap = run(pytester, monkeypatch, "--threadpool", "3", "-v", meet=2)
    assert outcomes(result) == outcomes(sequential) == {"passed": 7}
    assert peak == 2
    alone = [
        "test_freezer",
        "test_time_machine_fixture",
        "test_through_a_fixture",
        "test_marked",
        "test_travel",
    ]
    assert {name: overlap[name] for name in alone} == dict.fromkeys(alone, 1)
    result.stdout.fnmatch_lines(
        [
            f"*5 {ALONE}: 1 uses freezer; 1 uses time-machine (process-wide patch); "
            "2 uses time_machine; 1 uses time_machine (via epoch)",
        ]
    )


def test_benchmark_fixture_runs_alone(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """pytest-benchmark's timings mean nothing beside other tests: its tests run alone."""
    suite(
        pytester,
        test_bench="""
import pytest, probe
pytestmark = pytest.mark.parallelizable("children")

def test_bench(benchmark):
    assert benchmark.pedantic(sum, args=([1, 2, 3],), rounds=2, iterations=1) == 6

def test_n1():
    probe.meet()

def test_n2():
    probe.meet()
""",
    )
    sequential, _, _ = run(pytester, monkeypatch)
    result, peak, overlap = run(pytester, monkeypatch, "--threadpool", "3", meet=2)
    assert outcomes(result) == outcomes(sequential) == {"passed": 3}
    assert peak == 2
    assert overlap["test_bench"] == 1
    result.stdout.fnmatch_lines([f"*1 {ALONE}: 1 uses benchmark"])


def test_safe_fixtures_vouch_for_what_they_request_and_call(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    """A fixture declared safe may request monkeypatch or patch: tests reaching those only
    through it run in the pool; a test that also requests monkeypatch itself, or reaches it
    through another fixture, still runs alone."""
    suite(
        pytester,
        """
from unittest import mock

@pytest.fixture
def settings(monkeypatch):  # declared safe: changes only what its own test gets
    mine = {}
    monkeypatch.setitem(mine, "debug", True)
    return mine

@pytest.fixture
def quiet():  # declared safe although its source patches
    with mock.patch("warnings.showwarning"):
        yield

@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("TP_SAFE", "1")
""",
        test_safe="""
import pytest, probe
pytestmark = pytest.mark.parallelizable("children")

def test_settings(settings):
    assert settings["debug"]
    probe.meet()

def test_quiet(quiet, settings):
    probe.meet()

def test_settings_and_monkeypatch(settings, monkeypatch):
    pass

def test_settings_and_env(settings, env):
    pass
""",
    )
    pytester.makeini(
        """
        [pytest]
        threadpool_safe_fixtures =
            settings
            quiet
        """
    )
    sequential, _, _ = run(pytester, monkeypatch)
    result, peak, overlap = run(pytester, monkeypatch, "--threadpool", "3", "-v", meet=2)
    assert outcomes(result) == outcomes(sequential) == {"passed": 4}
    assert peak == 2
    assert overlap["test_settings_and_monkeypatch"] == overlap["test_settings_and_env"] == 1
    result.stdout.fnmatch_lines([f"*2 {ALONE}: 1 uses monkeypatch; 1 uses monkeypatch (via env)"])


FLASK_APP = """
import flask

@pytest.fixture
def app():  # one app per test: nothing of it is shared
    app = flask.Flask(__name__)

    @app.route("/ping")
    def ping():
        return flask.jsonify(ping="pong")

    return app
"""

FLASK_TESTS = """
import flask, pytest, probe
pytestmark = pytest.mark.parallelizable("children")

def test_json(client):
    assert client.get("/ping").json == {"ping": "pong"}  # pytest-flask's response class
    probe.meet()

def test_url_for(client):
    assert flask.url_for("ping") == "/ping"  # pytest-flask's request context
    probe.meet()

@pytest.mark.options(debug=True)
def test_options(app):
    assert app.debug  # pytest-flask's options marker
    probe.meet()
"""


def test_pytest_flask_suite_runs_in_parallel_once_its_fixtures_are_declared_safe(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    """pytest-flask's autouse fixtures request monkeypatch, so every test of a session with
    pytest-flask loaded runs alone; declaring them safe (as the README shows) lets the tests
    run in the pool again, with the same outcomes."""
    # Installed, its autouse fixtures would be in every session of this suite: it may be kept
    # out of the venvs (PYTHONPATH a directory holding it to run this test).
    pytest.importorskip("pytest_flask")
    suite(pytester, FLASK_APP, test_app=FLASK_TESTS)
    sequential, _, _ = run(pytester, monkeypatch, "-p", "flask")
    alone, alone_peak, _ = run(pytester, monkeypatch, "-p", "flask", "--threadpool", "3")
    assert outcomes(alone) == outcomes(sequential) == {"passed": 3}
    assert alone_peak == 1
    alone.stdout.fnmatch_lines(
        [
            f"*3 {ALONE}: 3 uses monkeypatch "
            "(via _configure_application, _monkeypatch_response_class)"
        ]
    )
    pytester.makeini(
        """
        [pytest]
        threadpool_safe_fixtures =
            _monkeypatch_response_class
            _configure_application
        """
    )
    pooled, peak, _ = run(pytester, monkeypatch, "-p", "flask", "--threadpool", "3", meet=3)
    assert outcomes(pooled) == {"passed": 3}
    assert peak == 3  # all three met
    pooled.stdout.no_fnmatch_line(f"*{ALONE}*")


FLASK_MIXED_TESTS = """
import pytest, probe
pytestmark = pytest.mark.parallelizable("children")

def test_plain_a():
    probe.meet()

def test_plain_b():
    probe.meet()

def test_with_app(app):
    assert app.name

def test_with_client(client):  # client requests app
    assert client.get("/ping").json == {"ping": "pong"}
"""

FLASK_OVERRIDE_CONFTEST = """
import pytest

@pytest.fixture
def _configure_application(monkeypatch):  # ours, not pytest-flask's: judged as usual
    monkeypatch.setenv("TP_CONFIGURED", "1")
"""

FLASK_OVERRIDE_TESTS = """
import pytest
pytestmark = pytest.mark.parallelizable("children")

def test_overridden():
    pass
"""


def test_pytest_flask_fixtures_make_only_tests_using_app_run_alone(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    """pytest-flask's autouse fixtures request monkeypatch but use it only for tests that use
    its ``app`` fixture: with pytest-flask loaded and no ini setting, the other tests run in
    the pool; tests using ``app`` (themselves or through ``client``) run alone, and so does a
    test reaching a user's fixture of the same name that requests monkeypatch."""
    pytest.importorskip("pytest_flask")
    suite(pytester, FLASK_APP, test_mixed=FLASK_MIXED_TESTS)
    pytester.mkdir("sub")
    (pytester.path / "sub" / "conftest.py").write_text(FLASK_OVERRIDE_CONFTEST)
    (pytester.path / "sub" / "test_override.py").write_text(FLASK_OVERRIDE_TESTS)
    sequential, _, _ = run(pytester, monkeypatch, "-p", "flask")
    result, peak, overlap = run(
        pytester, monkeypatch, "-p", "flask", "--threadpool", "3", "-v", meet=2
    )
    assert outcomes(result) == outcomes(sequential) == {"passed": 5}
    assert peak == 2  # the two plain tests met
    assert overlap["test_plain_a"] == overlap["test_plain_b"] == 2
    assert overlap["test_with_app"] == overlap["test_with_client"] == 1
    assert overlap["test_overridden"] == 1
    result.stdout.fnmatch_lines(
        [
            f"*3 {ALONE}: 1 uses monkeypatch (via _configure_application); "
            "2 uses monkeypatch (via _configure_application, _monkeypatch_response_class)"
        ]
    )


STEPWISE_TESTS = """
import pathlib, pytest
pytestmark = pytest.mark.parallelizable("children")

def test_a(): pass

def test_b():  # fails on the first run only
    marker = pathlib.Path("b-failed-once")
    if not marker.exists():
        marker.write_text("x")
        pytest.fail("first run")

def test_c(): pass

def test_d(): assert False, "always"

def test_e(): pass
"""


def test_stepwise_makes_the_session_sequential_and_records_the_same_failures(
    pytester: pytest.Pytester,
):
    """--sw stops at the first failure and remembers it for the next run: with --threadpool the
    session says so in one line and runs sequentially; two runs in a row give the outcomes and
    the recorded failure of two sequential ones."""
    suite(pytester, test_steps=STEPWISE_TESTS)

    def pair(*threadpool: str) -> list[tuple[dict[str, int], object, int, list[str]]]:
        for leftover in (".pytest_cache", "b-failed-once"):
            path = pytester.path / leftover
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        runs = []
        for flag in ("--sw", "--stepwise"):
            result = pytester.runpytest_subprocess("-p", "no:flask", flag, *threadpool)
            cache = pytester.path / ".pytest_cache" / "v" / "cache" / "stepwise"
            recorded = json.loads(cache.read_text())
            peak = next(int(line[5:]) for line in result.outlines if line.startswith("PEAK="))
            lines = [line for line in result.outlines if SEQUENTIAL_LINE in line]
            runs.append((outcomes(result), recorded["last_failed"], peak, lines))
        return runs

    sequential = pair()
    threaded = pair("--threadpool", "3")
    assert [(o, failed) for o, failed, _, _ in threaded] == [
        (o, failed) for o, failed, _, _ in sequential
    ]
    assert [(o, failed) for o, failed, _, _ in sequential] == [
        ({"failed": 1, "passed": 1}, "test_steps.py::test_b"),
        ({"failed": 1, "passed": 2, "deselected": 1}, "test_steps.py::test_d"),
    ]
    assert [peak for _, _, peak, _ in threaded] == [1, 1]
    assert [lines for _, _, _, lines in sequential] == [[], []]
    first, second = (lines for _, _, _, lines in threaded)
    assert len(first) == len(second) == 1
    assert "--sw needs tests to run one at a time on the main thread" in first[0]
    assert "--stepwise needs tests to run one at a time on the main thread" in second[0]
    assert first[0].endswith("--threadpool is ignored for this session")


def test_stepwise_skip_is_named_as_typed(pytester: pytest.Pytester):
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest("--threadpool", "2", "--stepwise-skip")
    result.assert_outcomes(passed=1, warnings=1)
    lines = [line for line in result.outlines if SEQUENTIAL_LINE in line]
    assert len(lines) == 1 and "--stepwise-skip needs tests" in lines[0], result.outlines


@pytest.mark.xfail(
    sys.version_info >= (3, 14),
    reason="on 3.14+ (coverage's sys.monitoring core) a failing test's line lacks its context "
    "in the --threadpool run; not investigated yet (see the round-2 note)",
    strict=True,
)
def test_cov_context_test_makes_the_session_sequential_with_right_contexts(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    """pytest-cov's --cov-context=test switches coverage's one context at each test phase:
    the session runs sequentially (one line says why) and each line is attributed to the test
    that ran it, as in a sequential run."""
    import coverage

    pytester.makepyfile(
        shapes="""
def square(n):
    return n * n

def cube(n):
    return n * n * n
"""
    )
    suite(
        pytester,
        test_shapes="""
import pytest, shapes
pytestmark = pytest.mark.parallelizable("children")

def test_square(): assert shapes.square(3) == 9
def test_cube(): assert shapes.cube(2) == 8
def test_fails(): assert shapes.square(2) == 5
""",
    )

    def contexts(*args: str) -> tuple[pytest.RunResult, int, dict[int, set[str]]]:
        result, peak, _ = run(pytester, monkeypatch, "--cov=shapes", "--cov-context", "test", *args)
        data = coverage.CoverageData(basename=str(pytester.path / ".coverage"))
        data.read()
        (measured,) = [f for f in data.measured_files() if f.endswith("shapes.py")]
        by_line = {line: set(found) for line, found in data.contexts_by_lineno(measured).items()}
        return result, peak, by_line

    sequential, _, expected = contexts()
    result, peak, found = contexts("--threadpool", "3")
    assert outcomes(result) == outcomes(sequential) == {"passed": 2, "failed": 1}
    assert peak == 1
    assert found == expected
    source = (pytester.path / "shapes.py").read_text().splitlines()
    square = source.index("    return n * n") + 1
    cube = source.index("    return n * n * n") + 1
    assert expected[square] == {
        "test_shapes.py::test_square|run",
        "test_shapes.py::test_fails|run",
    }
    assert expected[cube] == {"test_shapes.py::test_cube|run"}
    lines = [line for line in result.outlines if SEQUENTIAL_LINE in line]
    assert len(lines) == 1 and "--cov-context=test needs tests" in lines[0], result.outlines
