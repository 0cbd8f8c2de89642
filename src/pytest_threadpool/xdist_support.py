"""``--threadpool`` under pytest-xdist (``-n N --threadpool M``): the controller only
schedules; each worker runs the tests it receives in its own pool of M threads.

xdist's worker loop runs one test at a time, and holds one received test back until the next
index (or "shutdown") arrives, since a test's teardown depends on the test after it. The loop
here does the same with batches: it takes every index received so far, keeps the last one back
(its scopes stay open), runs the rest as one threaded session over that sub-list of
``session.items`` (grouping, markers, capture and reporting as in a session of their own), and
starts again with the held-back test and whatever arrived meanwhile. Shared scopes live across
batches, so a module or session fixture is set up once per worker process. Each test's reports
reach the controller through xdist's own hooks (on the main thread, as xdist expects), and
"runtest_protocol_complete" follows each test's last report, so the controller keeps
scheduling while the batch runs.

Nothing here imports xdist: the worker side of xdist runs as a module executed over execnet,
reached through its interactor plugin."""

from __future__ import annotations

import dataclasses
import os
import shlex
from typing import TYPE_CHECKING, Any

import pytest

from pytest_threadpool.options import Settings, usable_cpus

if TYPE_CHECKING:
    from pytest_threadpool.grouping import Planner

_environ_get = os.environ.get
_split = shlex.split


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def is_controller(config: pytest.Config) -> bool:
    """This process hands tests to xdist workers (``-n N``, or ``--dist`` with ``--tx``), as
    xdist decides it: ``--dist`` alone, ``-n 0`` or ``--collect-only`` run no workers."""
    return (
        not is_worker(config)
        and config.getoption("dist", "no") != "no"
        and bool(config.getoption("tx", None))
        and not config.getoption("collectonly", False)
    )


def worker_count(config: pytest.Config) -> int:
    """How many xdist workers share this machine's CPUs."""
    if is_worker(config):
        return max(1, int(config.workerinput.get("workercount", 1)))  # type: ignore[attr-defined]
    numprocesses = config.getoption("numprocesses", None)
    if isinstance(numprocesses, int) and numprocesses > 0:
        return numprocesses
    specs = config.getoption("tx", None) or []
    return max(1, len(specs))


def threadpool_given(
    config: pytest.Config, flag_name: str = "--threadpool", ini_name: str = "threadpool"
) -> tuple[str, str] | None:
    """How an option was set, as the user wrote it: (the flag and value, or the ini line; the
    value); None when it was not set (or not in a way we can read back). The last flag wins,
    as in pytest: ini addopts, then PYTEST_ADDOPTS, then the command line."""
    given = [
        *config.getini("addopts"),
        *_split(_environ_get("PYTEST_ADDOPTS", "")),
        *map(str, config.invocation_params.args),
    ]
    found: tuple[str, str] | None = None
    for position, arg in enumerate(given):
        flag, equals, value = arg.partition("=")
        if flag != flag_name:
            continue
        if not equals:
            value = given[position + 1] if position + 1 < len(given) else ""
        found = (f"{flag_name} {value}", value)
    if found is not None:
        return found
    raw = config.getini(ini_name)
    if raw:
        return (f"ini {ini_name} = {raw}", str(raw).strip())
    return None


def settings_for_xdist(config: pytest.Config, settings: Settings) -> Settings:
    """``--threadpool auto`` under xdist: the usable CPUs divided among the workers (at least
    one thread each), in the controller (for its header) and in every worker."""
    if getattr(settings, "output", None) == "live":
        output = threadpool_given(config, "--threadpool-output", "threadpool_output")
        setting = output[0] if output is not None else "--threadpool-output live"
        raise pytest.UsageError(
            f"{setting} cannot be shown under pytest-xdist ({xdist_setting(config)}): its "
            "workers' output never reaches the terminal; drop it (or use classic)"
        )
    if is_worker(config) and getattr(settings, "output", None) == "auto":
        settings = dataclasses.replace(settings, output="classic")  # nothing is drawn there
    given = threadpool_given(config)
    if given is None or given[1].lower() != "auto":
        return settings
    threads = max(1, usable_cpus() // worker_count(config))
    return dataclasses.replace(settings, workers=threads)


def xdist_setting(config: pytest.Config) -> str:
    """The xdist option the user set, as typed: ``-n 2``, ``--dist load``, ``--tx ...``."""
    numprocesses = config.getoption("numprocesses", None)
    if numprocesses:
        return f"-n {numprocesses}"
    specs = config.getoption("tx", None)
    if specs:
        return f"--tx {specs[0]}"
    return f"--dist {config.getoption('dist', 'no')}"


# -- worker side -------------------------------------------------------------------------


class _WorkerEvents:
    """Registered in a worker for threaded runs: tells xdist's interactor which test a report
    belongs to (it sends ``item_index`` with each report) and sends its
    ``runtest_protocol_complete`` after each test's last report."""

    def __init__(self, interactor: Any) -> None:
        self.interactor = interactor
        self.index_of: dict[str, int] = {}
        self.duration = 0.0

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logstart(self, nodeid: str) -> None:
        index = self.index_of.get(nodeid)
        if index is not None:
            self.interactor.item_index = index
        self.duration = 0.0

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.duration += report.duration

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        index = self.index_of.get(nodeid)
        if index is None:
            return
        self.interactor.sendevent(
            "runtest_protocol_complete", item_index=index, duration=self.duration
        )


def _interactor(config: pytest.Config) -> Any:
    for plugin in config.pluginmanager.get_plugins():
        if type(plugin).__name__ == "WorkerInteractor" and hasattr(plugin, "torun"):
            return plugin
    raise pytest.UsageError(
        "--threadpool in a pytest-xdist worker: xdist's worker plugin was not found "
        "(unsupported pytest-xdist version); run without -n or without --threadpool"
    )


def run_worker(
    session: pytest.Session, settings: Settings, planner: Planner | None, session_key: Any
) -> None:
    """The worker's test loop (instead of xdist's): batches of received tests, each run by a
    threaded session, until the controller says "shutdown" or the session must stop."""
    from pytest_threadpool.runner import ThreadedSession
    from pytest_threadpool.setupstate import SharedScopes

    config = session.config
    interactor = _interactor(config)
    shutdown = interactor.handle_command.__func__.__globals__["Marker"].SHUTDOWN
    queue = interactor.torun

    def handle_command(command: Any) -> None:
        """xdist's handler, except that a command's tests are queued at once: a batch taken
        while they arrive holds all of them or none (a file sent whole runs as one batch)."""
        if command is not shutdown and command[0] in ("runtests", "runtests_all"):
            name, kwargs = command
            indices = kwargs["indices"] if name == "runtests" else range(len(session.items))
            with queue.lock() as pending:
                pending.extend(indices)
            return
        interactor.handle_command(command)

    interactor.channel.setcallback(handle_command, endmarker=shutdown)
    events = _WorkerEvents(interactor)
    config.pluginmanager.register(events, "threadpool-xdist-events")
    items = session.items
    shared = SharedScopes()
    hung: list[str] = []
    try:
        first = queue.get()
        if first is shutdown:
            return
        held: int = first
        while True:
            indices = [held]
            received = [queue.get()]  # the held-back test's successor (or "shutdown")
            with queue.lock() as pending:
                while pending:
                    received.append(pending.popleft())
            final = shutdown in received
            if final:
                received = received[: received.index(shutdown)]
            indices.extend(received)
            nextitem = None
            if not final:
                held = indices.pop()
                nextitem = items[held]
            batch = [items[index] for index in indices]
            events.index_of = {
                item.nodeid: index for index, item in zip(indices, batch, strict=True)
            }
            # Reported from the main thread, where xdist's worker plugin runs its hooks and
            # sends over its channel (its interactor's per-test state is not thread-aware).
            threaded = ThreadedSession(
                session,
                settings,
                planner,
                items=batch,
                shared=shared,
                nextitem=nextitem,
                reporting_lane=False,
            )
            config.stash[session_key] = threaded
            try:
                threaded.run()
            except (session.Failed, session.Interrupted):
                # -x / --maxfail: end as xdist's worker loop does (the controller reads
                # shouldfail/shouldstop from the worker's output; an exit status of 2 would
                # read as a keyboard interrupt there).
                hung.extend(threaded.hung)
                break
            hung.extend(threaded.hung)
            if final or session.shouldfail or session.shouldstop:
                break
    finally:
        config.pluginmanager.unregister(events)
        shared.teardown_all()
        if hung and session.exitstatus == pytest.ExitCode.OK:
            session.testsfailed = max(session.testsfailed, len(hung))
