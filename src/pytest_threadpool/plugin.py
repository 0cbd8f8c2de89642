"""pytest entry point (``-p no:threadpool`` disables it): registers options, markers and hooks,
and hands the test loop to the threaded runner when ``--threadpool`` asks for more than one
thread. Without ``--threadpool`` pytest runs as if the plugin were absent."""

from __future__ import annotations

import os
import shlex
import sys
from typing import TYPE_CHECKING

import pytest

from pytest_threadpool import _engine, hookspecs, options, pytest_compat, xdist_support
from pytest_threadpool.markers import MARKER_LINES, MARKER_PARALLEL_ONLY, PytestThreadpoolWarning

if TYPE_CHECKING:
    from pytest_threadpool.runner import ThreadedSession

SETTINGS_KEY = pytest.StashKey[options.Settings]()
MISSING_KEY = pytest.StashKey[list[str]]()
SESSION_KEY = pytest.StashKey[object]()
PLANNER_KEY = pytest.StashKey[object]()
FREE_THREADED = _engine.FREE_THREADED

# Options whose output or interaction assumes one test at a time on the main thread: dest ->
# (its spellings, the value that needs it (None: any true value), why).
_SEQUENTIAL_OPTIONS: dict[str, tuple[tuple[str, ...], str | None, str]] = {
    "usepdb": (("--pdb",), None, "it debugs failures interactively"),
    "trace": (("--trace",), None, "it debugs each test interactively"),
    "setuponly": (("--setup-only",), None, "it prints fixture setup and teardown in order"),
    "setupshow": (("--setup-show",), None, "it prints fixture setup and teardown in order"),
    "setupplan": (("--setup-plan",), None, "it prints fixture setup and teardown in order"),
    "stepwise": (("--sw", "--stepwise"), None, "it stops at the first failure and records it"),
    "stepwise_skip": (
        ("--sw-skip", "--stepwise-skip"),
        None,
        "it stops at the second failure and records it",
    ),
    "stepwise_reset": (
        ("--sw-reset", "--stepwise-reset"),
        None,
        "it stops at the first failure and records it",
    ),
    # pytest-cov: coverage has one current context for the whole process.
    "cov_context": (("--cov-context",), "test", "it switches coverage's one context per test"),
}


def _sequential_option(config: pytest.Config) -> tuple[str, str] | None:
    """The first option in use that needs tests to run one at a time: (the option as the user
    typed it, why), or None."""
    for dest, (spellings, needs, why) in _SEQUENTIAL_OPTIONS.items():
        value = config.getoption(dest, None)
        if not value or (needs is not None and value != needs):
            continue
        typed = spellings[0]
        given = [
            *map(str, config.invocation_params.args),
            *shlex.split(os.environ.get("PYTEST_ADDOPTS", "")),
            *config.getini("addopts"),
        ]
        for arg in given:
            flag = arg.partition("=")[0]
            if flag in spellings:
                typed = flag
                break
        return (typed if needs is None else f"{typed}={needs}"), why
    return None


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    options.addoption(parser)


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKER_LINES:
        config.addinivalue_line("markers", line)
    config.addinivalue_line("markers", "thread_unsafe: run this test alone even under --threadpool")
    settings = options.load(config)
    config.stash[SETTINGS_KEY] = settings
    if not settings.parallel:
        return
    missing = pytest_compat.missing()
    if missing:
        # A pytest without something the runner needs: run as pytest would, and say why
        # (a header line, so that suites turning warnings into errors still run).
        config.stash[MISSING_KEY] = missing
        config.stash[SETTINGS_KEY] = settings.sequential()
        return
    if xdist_support.is_worker(config) or xdist_support.is_controller(config):
        # -n N --threadpool M: each xdist worker runs what it receives in M threads.
        settings = xdist_support.settings_for_xdist(config, settings)
        config.stash[SETTINGS_KEY] = settings
        if not settings.parallel or xdist_support.is_controller(config):
            return  # the controller runs no tests
    sequential = _sequential_option(config)
    if sequential is not None:
        flag, why = sequential
        config.issue_config_time_warning(
            PytestThreadpoolWarning(
                f"{flag} needs tests to run one at a time on the main thread ({why}): "
                "--threadpool is ignored for this session"
            ),
            stacklevel=2,
        )
        config.stash[SETTINGS_KEY] = settings.sequential()
        return
    # pytest-timeout's signal/thread methods cannot work in a pool: our watchdog enforces its
    # settings instead (see timeouts.py).
    timeout_plugin = config.pluginmanager.get_plugin("timeout")
    if timeout_plugin is not None:
        config.pluginmanager.unregister(timeout_plugin)
    config.addinivalue_line(
        "markers", "timeout(seconds): fail the test if it runs longer (enforced by --threadpool)"
    )
    # What runs pool items and the runner's modules load only for threaded sessions: without
    # --threadpool, pytest's per-test hook calls and start-up are those of a session without us.
    # Imported by full name (not `from pytest_threadpool import ...`): that form would take a
    # stale package attribute after pytester's in-process runs drop the module from sys.modules,
    # while the runner imports a fresh copy with its own thread context.
    import pytest_threadpool.execution as execution
    import pytest_threadpool.timeouts as timeouts

    config.pluginmanager.register(execution, "threadpool-execution")
    config.pluginmanager.register(timeouts, "threadpool-timeouts")
    # Thread-aware capsys/capsysbinary/capteesys, registered before collection so that they
    # override pytest's (which swap process-wide streams).
    from pytest_threadpool.capture_integration import CaptureFixtures

    config.pluginmanager.register(CaptureFixtures(), "threadpool-capture-fixtures")


def pytest_report_header(config: pytest.Config) -> str | None:
    settings = config.stash.get(SETTINGS_KEY, None)
    if settings is None or not settings.enabled:
        return None
    missing = config.stash.get(MISSING_KEY, None)
    if missing:
        return (
            f"threadpool: running sequentially: pytest {pytest.__version__} lacks "
            f"{', '.join(missing)}, which --threadpool needs; use a pytest that "
            "pytest-threadpool supports (8.4 to 9.2 are tested)"
        )
    mode = f"{settings.workers} threads" if settings.parallel else "sequential (1 thread)"
    if xdist_support.is_controller(config):
        mode += " in each pytest-xdist worker"
    if FREE_THREADED:
        return f"threadpool: {mode}, free-threaded build"
    # A header line, not a warning: suites that turn warnings into errors must still run here.
    return (
        f"threadpool: {mode}, GIL build: the GIL limits parallel speedup (I/O-bound tests "
        "overlap; CPU-bound tests need a free-threaded Python such as python3.14t to speed up)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    settings = config.stash[SETTINGS_KEY]
    if settings.enabled:
        if settings.parallel:
            # Decide (and validate markers) now, so a bad scope is reported before anything
            # runs and marker warnings land in the collection phase.
            from pytest_threadpool.grouping import Planner

            planner = Planner(
                settings.default_scope, settings.unsafe_fixtures, settings.safe_fixtures
            )
            for item in items:
                planner.decide(item)
            config.stash[PLANNER_KEY] = planner
        return
    skip = pytest.mark.skip(reason="parallel_only: run with --threadpool to execute this test")
    for item in items:
        if item.get_closest_marker(MARKER_PARALLEL_ONLY) is not None:
            item.add_marker(skip)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    settings = session.config.stash[SETTINGS_KEY]
    if not settings.parallel or xdist_support.is_controller(session.config):
        return None
    if xdist_support.is_worker(session.config):
        planner = session.config.stash.get(PLANNER_KEY, None)
        xdist_support.run_worker(session, settings, planner, SESSION_KEY)
        return True
    if session.testsfailed and not session.config.option.continue_on_collection_errors:
        raise session.Interrupted(
            f"{session.testsfailed} error{'s' if session.testsfailed != 1 else ''} "
            "during collection"
        )
    if session.config.option.collectonly:
        return True
    from pytest_threadpool.runner import ThreadedSession

    threaded = ThreadedSession(session, settings, session.config.stash.get(PLANNER_KEY, None))
    session.config.stash[SESSION_KEY] = threaded
    gil_before = _gil_enabled()
    try:
        threaded.run()
        if threaded.hung and session.exitstatus == pytest.ExitCode.OK:
            session.testsfailed = max(session.testsfailed, len(threaded.hung))
    finally:
        if FREE_THREADED and not gil_before and _gil_enabled():
            session.config.issue_config_time_warning(
                PytestThreadpoolWarning(
                    "the GIL was re-enabled during the run (an extension module without "
                    "free-threading support was imported; see the RuntimeWarning naming it): "
                    "tests no longer ran in parallel from then on"
                ),
                stacklevel=2,
            )
    return True


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    threaded = config.stash.get(SESSION_KEY, None)
    if threaded is None:
        return
    if threaded.capture is not None:  # here, not at the run's end: the progress line is done
        threaded.capture.report_unattributed(terminalreporter)
    if threaded.interrupted:
        terminalreporter.write_sep("=", "threadpool: tests running when the session was aborted")
        for nodeid in threaded.interrupted:
            terminalreporter.write_line(f"INTERRUPTED {nodeid}")
    if threaded.hung:
        terminalreporter.write_sep("=", "threadpool: hung tests (workers abandoned)", red=True)
        for nodeid in threaded.hung:
            terminalreporter.write_line(f"HUNG {nodeid}")
    if threaded.state_watch.changes:
        terminalreporter.write_sep("-", "threadpool: process-wide state changed by tests")
        for change in threaded.state_watch.changes:
            terminalreporter.write_line(change.describe())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int):  # type: ignore[no-untyped-def]
    """Outermost: after pytest's own summary line, one line on how the pool was used."""
    result = yield
    threaded = session.config.stash.get(SESSION_KEY, None)
    terminal = session.config.pluginmanager.get_plugin("terminalreporter")
    if threaded is not None and terminal is not None and session.config.get_verbosity() > -2:
        terminal.write_line(end_of_run_line(threaded))
        if session.config.get_verbosity() > 0:
            for nodeid, reason in threaded.alone:
                terminal.write_line(f"  {nodeid} ({reason})")
    return result


def end_of_run_line(threaded: ThreadedSession) -> str:
    """Workers, how busy the pool was (worker-seconds of tests over workers x wall time),
    the longest test, and the tests that ran alone with why."""
    workers = threaded.settings.workers
    wall = threaded.ended_at - threaded.started_at
    parts = [f"threadpool: {workers} workers"]
    if wall > 0:
        parts.append(f"{min(threaded.busy / (workers * wall), 1.0):.0%} busy")
    seconds, nodeid = threaded.longest
    if nodeid:
        # One decimal: tools that read pytest's summary (pytester's parseoutcomes) take the
        # last line with a two-decimal duration for it.
        parts.append(f"longest {seconds:.1f}s {nodeid}")
    line = ", ".join(parts)
    if threaded.slow_lines:
        line += f"; {len(threaded.slow_lines)} SLOW line(s)"
    if threaded.alone:
        reasons: dict[str, int] = {}
        for _nodeid, reason in threaded.alone:
            reasons[reason] = reasons.get(reason, 0) + 1
        summary = "; ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
        line += f"; {len(threaded.alone)} test(s) ran with nothing else running: {summary}"
    return line


def _gil_enabled() -> bool:
    check = getattr(sys, "_is_gil_enabled", None)
    return True if check is None else bool(check())
