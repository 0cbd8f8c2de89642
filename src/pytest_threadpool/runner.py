"""The threaded test loop: the main thread prepares shared scopes, feeds the engine's pool,
reports results as they arrive and tears scopes down once their last test has finished."""

from __future__ import annotations

import collections
import contextlib
import sys
from collections.abc import Callable, Iterator
from traceback import format_exception as _format_exception

import pytest

from pytest_threadpool import _engine
from pytest_threadpool.assertion_hooks import per_thread_assertion_hooks
from pytest_threadpool.capture_integration import ThreadedCapture
from pytest_threadpool.clocks import pytest_timing_on_engine_clocks
from pytest_threadpool.context import acting_for
from pytest_threadpool.crash_notes import crash_attribution
from pytest_threadpool.dict_reads import SharedValuePins, lookup
from pytest_threadpool.environ import per_thread_current_test
from pytest_threadpool.execution import run_protocol
from pytest_threadpool.fake_fs import real_file_system_for_the_runner
from pytest_threadpool.fixture_isolation import isolated_function_fixtures
from pytest_threadpool.grouping import Group, Planner
from pytest_threadpool.hook_proxies import cached_hook_proxies
from pytest_threadpool.item_run import ItemRun
from pytest_threadpool.live_status import FRAME_INTERVAL, LiveStatus, wants_live
from pytest_threadpool.logging_capture import ThreadedLogging
from pytest_threadpool.options import Settings
from pytest_threadpool.process_state import StateWatch, snapshot
from pytest_threadpool.pytest_compat import (
    CallInfo,
    option_dest_map,
    renew_item_request,
    report_sections,
    set_report_sections,
    set_setupstate,
    setupstate,
)
from pytest_threadpool.redirects import per_test_redirects
from pytest_threadpool.reporting import Reporter
from pytest_threadpool.reporting_lane import ReportingLane
from pytest_threadpool.scheduling import TRACKS_CPU_SHARE, DurationHistory
from pytest_threadpool.setupstate import RoutingSetupState, SharedScopes, raise_teardown_errors
from pytest_threadpool.terminal_output import FLUSH_INTERVAL, TerminalFlusher
from pytest_threadpool.threads import inherited_capture
from pytest_threadpool.timeouts import (
    Timeouts,
    hung_message,
    interruptible_waits,
    main_thread_alarm,
)
from pytest_threadpool.tmp_paths import numbered_dir_scan_in_c, serialised_basetemp
from pytest_threadpool.unhandled import per_test_unhandled
from pytest_threadpool.warnings_capture import routed_warnings

_WAKE = object()  # posted into the pool's results by the reporting lane (see _wake)
_LOCATION = pytest.Item.location  # functools.cached_property
_EXIT = pytest.exit.Exception  # pytest.exit()'s exception (an Exception subclass)
WINDOW_MIN = 64
WINDOW_PER_WORKER = 2
LONG_TEST_SHARE = 0.1  # see _promotions
# Ctrl-C / pytest.exit: how long running tests get to stop before the run ends without them
# (a test blocked in sleep or a wait only sees the interrupt when it wakes up).
ABORT_GRACE = 0.5
# Results are reported file by file, as a sequential run reports them (see _file_turn); a
# result of another file waits at most HOLD_LIMIT seconds for the current file to finish.
HOLD_LIMIT = 2.0
HOLD_CHECK = 0.25
SLOW_CHECK = 0.5  # how often running tests are checked against threadpool_slow


class ThreadedSession:
    def __init__(
        self,
        session: pytest.Session,
        settings: Settings,
        planner: Planner | None = None,
        *,
        items: list[pytest.Item] | None = None,
        shared: SharedScopes | None = None,
        nextitem: pytest.Item | None = None,
        reporting_lane: bool = True,
    ) -> None:
        """``items``: the tests to run (the session's by default). ``shared`` and ``nextitem``
        (pytest-xdist workers, see xdist_support): scopes set up by an earlier run, and the
        test a later run starts with, whose scopes stay open when these tests end.
        ``reporting_lane``: pool tests are reported from a thread of their own (see
        reporting_lane); off, everything is reported from the main thread."""
        self.session = session
        self.items = session.items if items is None else items
        self.nextitem = nextitem
        self.config = session.config
        self.planner = planner or Planner(
            settings.default_scope, settings.unsafe_fixtures, settings.safe_fixtures
        )
        self.settings = settings
        self.shared = SharedScopes() if shared is None else shared
        self.reporter = Reporter(self.config)
        self.history = DurationHistory(self.config, self.items)
        self.timeouts = Timeouts(self.config, settings.timeout)
        self.hung: list[str] = []
        self.capturing = self.config.getoption("capture", "fd") != "no"
        # Main-thread dicts that pytest reads with dict.get on workers for every test.
        self.pins = SharedValuePins([sys.modules, option_dest_map(self.config)])
        self.pool: _engine.Pool | None = None
        self.lane: ReportingLane | None = None
        self.logging_now: ItemRun | None = None  # see _log_in_order
        self.use_lane = reporting_lane
        # Most tests submitted to the pool and not yet handled back (see _wait_for_room): enough
        # that workers never starve while the main thread reports, few enough that memory does
        # not grow with the size of a group.
        self.window = max(WINDOW_MIN, WINDOW_PER_WORKER * settings.workers)
        self.runs: dict[int, ItemRun] = {}  # task id -> run, until its result is handled
        self.parents: dict[pytest.Item, tuple[pytest.Node, ...]] = {}  # see _parents_of
        # Scope -> indexes (in session.items) of the tests under it that have not finished.
        self.pending_under: dict[pytest.Node, set[int]] = collections.defaultdict(set)
        # Chain key -> its last submitted task, while that task is unfinished.
        self.chain_tail: dict[object, int] = {}
        self.main_chains: set[object] = set()  # chains run on the main thread (GIL build)
        # Finished runs not reported yet: a test that closes scopes waits for the other tests
        # under those scopes, so their teardown (and its errors) can join its teardown report.
        self.ready: list[ItemRun] = []
        self.stopping = False
        self.aborting = False
        self.interrupted: list[str] = []  # tests still running when the session was aborted
        self.alone: list[tuple[str, str]] = []  # (nodeid, reason) of tests that ran alone
        self.state_watch = StateWatch()
        self.current_file: str | None = None  # the file whose results are being reported
        self.file_of_parent: dict[pytest.Node | None, str] = {}  # see _file_of
        self.left_in_file: collections.Counter[str] = collections.Counter(
            self._file_of(item) for item in self.items
        )
        self.capture: ThreadedCapture | None = None
        self.promoted: dict[pytest.Item, float] = {}  # see _promotions
        self.known: dict[pytest.Item, float] = {}  # seconds from the duration history
        self.live: LiveStatus | None = None  # --threadpool-output live
        self.slow_lines: list[str] = []  # SLOW lines printed (nodeids)
        # For the end-of-run line: worker-seconds the pool's tests took, the longest test.
        self.busy = 0.0
        self.longest: tuple[float, str] = (0.0, "")
        self.started_at = 0.0
        self.ended_at = 0.0

    # -- entry point -------------------------------------------------------------------

    def run(self) -> None:
        items = self.items
        groups, chains = self.planner.plan(items)
        self.promoted = self._promotions(items)
        if not _engine.FREE_THREADED:
            # pytest's cached Item.location, computed before any worker starts (free-threaded:
            # each worker computes its test's, see _execute). On the GIL build that is cheaper
            # here than amid the GIL hand-offs.
            for item in items:
                _ = item.location
        with contextlib.ExitStack() as stack:
            stack.enter_context(real_file_system_for_the_runner())
            stack.enter_context(pytest_timing_on_engine_clocks())
            stack.enter_context(isolated_function_fixtures(self.shared.fixture_lock))
            saved_state = setupstate(self.session)
            set_setupstate(self.session, RoutingSetupState(self.shared))
            stack.callback(set_setupstate, self.session, saved_state)
            capture = self.capture = stack.enter_context(ThreadedCapture(self.config))
            self.terminal = stack.enter_context(TerminalFlusher(self.config).installed())
            self.terminal.follow_terminal_width(capture.terminal_stdout_fd)
            stack.enter_context(crash_attribution(capture.terminal_stderr_fd))
            stack.enter_context(per_thread_current_test())
            stack.enter_context(routed_warnings(self.config))
            stack.enter_context(ThreadedLogging(self.config))
            stack.enter_context(inherited_capture())
            stack.enter_context(per_test_unhandled(self.config))
            stack.enter_context(serialised_basetemp())
            stack.enter_context(numbered_dir_scan_in_c())
            stack.enter_context(per_thread_assertion_hooks())
            stack.enter_context(cached_hook_proxies(self.session))
            stack.enter_context(interruptible_waits())
            stack.enter_context(per_test_redirects())
            # Registered before the pool, so it runs after the pool has shut down.
            stack.callback(self._teardown_after_abort)
            self.pool = _engine.Pool(self.settings.workers, name="threadpool-worker")
            self.pool.start()
            stack.callback(self._shutdown_pool)
            if self.use_lane:
                self.lane = ReportingLane(
                    self._log, self._session_stopping, self._stop, self._wake, self.window
                )
                self.lane.start()
                stack.callback(self.lane.shutdown)
            self._start_live(capture)
            stack.callback(self.terminal.stop_status)  # before the pool shuts down
            self.started_at = _engine.monotonic()
            stack.callback(self._ended)
            stack.callback(self.history.save)
            try:
                self._run_groups(groups, chains, items)
            except BaseException:
                self._abort()
                raise
        if self.session.shouldfail:
            raise self.session.Failed(self.session.shouldfail)
        if self.session.shouldstop:
            raise self.session.Interrupted(self.session.shouldstop)

    # -- scheduling ----------------------------------------------------------------------

    def _run_groups(self, groups: list[Group], chains: dict, items: list[pytest.Item]) -> None:
        for group in groups:
            if self._session_stopping():
                break
            if group.barrier_before or not group.parallel:
                self._drain()
                if self._session_stopping():
                    break
            if not group.parallel:
                for index, item in enumerate(group.items, group.start):
                    self._run_inline(self._new_run(item, index, items, group))
                    if self._session_stopping():
                        break
                continue
            self._run_parallel_group(group, chains, items)
        self._drain()
        if self.nextitem is None or self._session_stopping():
            self._finish_remaining_scopes()

    def _run_parallel_group(self, group: Group, chains: dict, items: list[pytest.Item]) -> None:
        order = self._submission_order(group, chains)  # indexes in session.items
        # Every test of the group holds its scopes open from the start: with tests submitted
        # out of collection order, the one that closes a scope may finish before the others
        # under that scope have been submitted.
        for index in order:
            self._hold_pending(index, items[index])
        on_main: list[ItemRun] = []
        # Shared scopes are set up in collection order, as a sequential run sets them up (their
        # output and errors belong to the first test that needs them), even when tests are
        # submitted out of that order: a test is prepared, with every test collected before it,
        # when its turn to be submitted comes.
        prepared: dict[int, ItemRun] = {}
        unprepared = iter(range(group.start, group.start + len(group.items)))
        for number, index in enumerate(order):
            self._wait_for_room(on_main)
            if self._session_stopping():
                for unstarted in order[number:]:
                    self._release_pending(unstarted, items[unstarted])
                break
            while index not in prepared:
                earlier = next(unprepared)
                prepared[earlier] = self._new_run(items[earlier], earlier, items, group)
                self._prepare(prepared[earlier])
            run = prepared.pop(index)
            chain_key = chains.get(run.item)
            if self._runs_on_main(run, chain_key):
                on_main.append(run)
            else:
                self._submit(run, chain_key)
                self._poll(0)
        for run in on_main:
            if self._session_stopping():
                self._release_pending(run.index, run.item)
                continue
            self._run_on_main(run)

    def _promotions(self, items: list[pytest.Item]) -> dict[pytest.Item, float]:
        """Tests to start ahead of collection order, with their known seconds: those that,
        started in collection order, would run past the session's known time per worker (the
        known time of the tests collected before them, spread over the workers, plus their
        own) by more than LONG_TEST_SHARE of it, and are at least that long. Only these:
        every other test runs, and is reported, file by file in collection order, as
        sequentially; promoting every long test interleaved all files (a 20-file suite
        printed 40 file names instead of 20 once durations were known)."""
        known = [self.history.priority(item) for item in items]
        self.known = dict(zip(items, known, strict=True))
        workers = self.settings.workers
        total = sum(known)
        cutoff = total / workers * LONG_TEST_SHARE
        promoted: dict[pytest.Item, float] = {}
        before = 0.0
        for item, seconds in zip(items, known, strict=True):
            overrun = (before + seconds * workers - total) / workers  # past the known end
            if seconds >= cutoff and overrun > cutoff:
                promoted[item] = seconds
            before += seconds
        return promoted

    def _submission_order(self, group: Group, chains: dict) -> list[int]:
        """Promoted tests first (longest first), the rest in collection order: with at most
        ``window`` tests in the pool at a time, a test that must start early must also be
        submitted early. Variants chained together (``children``) run in collection order: a
        chain's members take the places the ranking gave them, in collection order, and each
        depends on the one submitted before it."""
        promoted = self.promoted
        rank = [-promoted.get(item, 0.0) for item in group.items]
        ranked = sorted(range(len(group.items)), key=rank.__getitem__)  # offsets in the group
        keys = [chains.get(item) for item in group.items]
        members: dict[object, list[int]] = collections.defaultdict(list)
        for offset, key in enumerate(keys):  # collection order
            if key is not None:
                members[key].append(offset)
        queues = {key: iter(chained) for key, chained in members.items()}
        return [
            group.start + (offset if keys[offset] is None else next(queues[keys[offset]]))
            for offset in ranked
        ]

    def _wait_for_room(self, on_main: list[ItemRun]) -> None:
        """Block until fewer than ``window`` tests are in the pool. A test's run and scopes are
        created when it (or a test collected after it) is submitted, so memory follows the
        window rather than the size of the group. Tests waiting for the main thread (GIL build)
        run meanwhile."""
        while len(self.runs) >= self.window and not self._session_stopping():
            if on_main:
                self._run_on_main(on_main.pop(0))
            else:
                self._poll(None)

    def _new_run(
        self, item: pytest.Item, index: int, items: list[pytest.Item], group: Group
    ) -> ItemRun:
        nextitem = items[index + 1] if index + 1 < len(items) else self.nextitem
        needed = self._parents_of(nextitem) if nextitem is not None else ()
        closes = [node for node in reversed(self._parents_of(item)) if node not in needed]
        inline = not group.parallel
        run = ItemRun(item=item, nextitem=nextitem, index=index, closes=closes, inline=inline)
        run.alone_reason = group.alone_reason
        run.nodeid = item.nodeid  # a property (pytest 9 builds it): read once per test
        run.file = self._file_of(item)
        # Tests run on the main thread with -s print live, as in a sequential run.
        run.capture_enabled = not (inline and not self.capturing)
        if group.alone_reason is not None:
            self.alone.append((item.nodeid, group.alone_reason))
        return run

    def _prepare(self, run: ItemRun) -> None:
        """Main thread: collectors and shared fixtures the item needs, before it starts. Their
        output and logs belong to this item's setup, as in a sequential run."""
        if self.shared.nothing_to_prepare(run.item, self._parents_of(run.item)):
            return
        with acting_for(run, capture=run.capture_enabled):
            if self.shared.setup_collectors(run.item):
                self.shared.setup_shared_fixtures(run.item)

    def _submit(self, run: ItemRun, chain_key: object) -> None:
        assert self.pool is not None
        deps: tuple[int, ...] = ()
        if chain_key is not None and chain_key in self.chain_tail:
            deps = (self.chain_tail[chain_key],)  # variants of one function, one after another
        task_id = self.pool.submit(
            self._execute,
            run,
            priority=self.promoted.get(run.item, 0.0),  # the rest: first come, first served
            label=run.nodeid,
            timeout=self._timeout_for(run),
            deps=deps,
        )
        self.runs[task_id] = run
        if chain_key is not None:
            self.chain_tail[chain_key] = task_id
            run.chain_key = chain_key

    def _timeout_for(self, run: ItemRun) -> float:
        return self.timeouts.for_task(run.item)

    def _execute(self, run: ItemRun) -> None:  # on a worker
        run.started_at = _engine.monotonic()
        start = _engine.thread_time() if TRACKS_CPU_SHARE else 0.0
        if _engine.FREE_THREADED:
            _compute_location(run.item)
            self.pins.pin_from_this_thread()
            # A fresh fixture request, made on this thread (as pytest does for a re-run): the
            # one made at collection holds dicts owned by the main thread, and each of pytest's
            # dict.get calls on them from here waits on the dict's lock.
            renew_item_request(run.item)
        run.state_before = snapshot()
        try:
            run_protocol(run, self.shared, self._teardown_shared)
        finally:
            run.state_after = snapshot()
            if TRACKS_CPU_SHARE:
                run.cpu_time = _engine.thread_time() - start

    # -- CPU-bound tests on a GIL build ---------------------------------------------------

    def _runs_on_main(self, run: ItemRun, chain_key: object) -> bool:
        """GIL build: a test that computed on its own thread for most of its last run gains
        nothing from a worker and loses the GIL hand-offs; the main thread runs it after the
        group's other tests are started, so I/O-bound ones still overlap. Variants of one
        function stay together (on the main thread, or chained in the pool) so they still
        run one after another."""
        if _engine.FREE_THREADED:
            return False
        if chain_key is not None:
            if chain_key in self.main_chains:
                return True
            if chain_key in self.chain_tail:
                return False
        if not self.history.cpu_bound(run.item):
            return False
        if chain_key is not None:
            self.main_chains.add(chain_key)
        return True

    def _parents_of(self, item: pytest.Item) -> tuple[pytest.Node, ...]:
        """The collectors above ``item``, outermost first (its listchain, computed once)."""
        parents = self.parents.get(item)
        if parents is None:
            parents = self.parents[item] = tuple(item.listchain()[:-1])
        return parents

    def _hold_pending(self, index: int, item: pytest.Item) -> None:
        """Keep the item's scopes open until it has run (``index``: its place in the session)."""
        for node in self._parents_of(item):
            self.pending_under[node].add(index)

    def _release_pending(self, index: int, item: pytest.Item) -> None:
        """The item no longer keeps its scopes open (it finished, or will not run)."""
        for node in self._parents_of(item):
            pending = self.pending_under.get(node)
            if pending is not None:
                pending.discard(index)
                if not pending:
                    del self.pending_under[node]

    def _run_on_main(self, run: ItemRun) -> None:
        """A pool-style run (reports collected, shared scopes closed by ``_close_scopes``)
        executed on the main thread; then the results the pool produced meanwhile."""
        start = _engine.perf_counter()
        try:
            with self._on_main_thread(run):
                self._execute(run)
        except BaseException:
            if run.reports:
                self._settle()
                self.reporter.emit(run)
            raise
        finally:
            self._release_pending(run.index, run.item)
        run.run_time = _engine.perf_counter() - start  # recorded when it is logged
        self._make_ready(run)
        while self._poll(0):  # what the pool finished meanwhile
            pass

    def _run_inline(self, run: ItemRun) -> None:
        self._prepare(run)
        run.state_before = snapshot()
        start = _engine.perf_counter()
        try:
            with self._on_main_thread(run), self.terminal.immediate(not run.capture_enabled):
                run_protocol(run, self.shared, self._teardown_shared)
        finally:
            run.state_after = snapshot()
            self.state_watch.observe(run.item.nodeid, run.state_before, run.state_after)
            self._reset_streams()
        # pytest logged its reports itself (run.reports stays empty): time the protocol.
        run_time = _engine.perf_counter() - start
        self.history.record(run.item, run.reports, run_time)
        self._account(run.nodeid, run_time)
        self._reported(run)

    def _reset_streams(self) -> None:
        """With no test running, sys.stdout/stderr are the run's again, as pytest's capture
        puts its own back after every test: a test that replaced them without restoring (or
        overlapping redirect_stdout blocks that restored them out of order) does not take the
        output of every later test. The change is listed at the end (process_state)."""
        capture = self.capture
        if capture is None or capture.stdout is None or capture.stderr is None:
            return
        if sys.stdout is not capture.stdout:
            sys.stdout = capture.stdout
        if sys.stderr is not capture.stderr:
            sys.stderr = capture.stderr

    @contextlib.contextmanager
    def _on_main_thread(self, run: ItemRun) -> Iterator[None]:
        """What the pool does for its tasks: crash label and timeout (SIGALRM here)."""
        _engine.set_crash_label(run.item.nodeid)
        try:
            with main_thread_alarm(self._timeout_for(run)):
                yield
        finally:
            _engine.set_crash_label(None)

    # -- shared scopes ------------------------------------------------------------------

    def _teardown_shared(self, run: ItemRun) -> list[BaseException]:
        """Called from the item's teardown on its thread. A test on the main thread tears its
        scopes down right away (nothing else runs); for pool tests the main thread does it once
        every other test under those scopes has finished (see ``_close_scopes``)."""
        if not run.inline:
            return []
        nodes = self._nodes_to_close(run)
        if not nodes:
            return []
        return self.shared.teardown(nodes)

    def _nodes_to_close(self, run: ItemRun) -> list[pytest.Node]:
        if self._session_stopping() and not self._others_unreported(run):
            return list(reversed(self.shared.live))  # as pytest does when -x stops the session
        return run.closes

    def _others_unreported(self, run: ItemRun) -> bool:
        waiting = self.logging_now
        return bool(
            self.runs
            or self.ready
            or self._lane_busy()
            or (waiting is not None and waiting is not run)
        )

    def _close_scopes(self, run: ItemRun) -> None:
        """Main thread, just before ``run``'s teardown report is logged: tear down the scopes it
        closes, with output and errors joining that report as in a sequential run."""
        nodes = self._nodes_to_close(run)
        if not nodes:
            return
        # The engine's clocks: a test running meanwhile may have replaced the time module's.
        start = _engine.wall_time()
        precise_start = _engine.perf_counter()
        with acting_for(run, capture=run.capture_enabled):
            errors = self.shared.teardown(nodes)
        duration = _engine.perf_counter() - precise_start
        out, err = run.capture.take() if run.capture_enabled else ("", "")
        if not errors and not out and not err:
            return
        old = run.reports[-1]
        assert old.when == "teardown", old
        item = run.item
        before_out, before_err = lookup(run.outputs, "teardown", ("", ""))
        run.outputs["teardown"] = (before_out + out, before_err + err)
        if run.capture_enabled and self.capturing:
            set_report_sections(
                item,
                [
                    section
                    for section in report_sections(item)
                    if not (section[0] == "teardown" and section[1] in ("stdout", "stderr"))
                ],
            )
            item.add_report_section("teardown", "stdout", before_out + out)
            item.add_report_section("teardown", "stderr", before_err + err)
        item_errors = run.item_errors
        all_errors = item_errors + errors
        excinfo = None
        if all_errors:
            try:
                raise_teardown_errors(all_errors)
            except BaseException:
                excinfo = pytest.ExceptionInfo.from_current()
        call = CallInfo(
            None,
            excinfo,
            start=old.start,
            stop=start + duration,
            duration=old.duration + duration,
            when="teardown",
            _ispytest=True,
        )
        # pytest cleared item.funcargs when the item's protocol ended; sequentially this
        # makereport runs before that, and plugins read it (pytest-benchmark: funcargs.get).
        cleared = getattr(item, "funcargs", {}) is None
        if cleared:
            item.funcargs = {}  # type: ignore[attr-defined]
        try:
            run.reports[-1] = item.ihook.pytest_runtest_makereport(item=item, call=call)
        finally:
            if cleared:
                item.funcargs = None  # type: ignore[attr-defined]

    def _finish_remaining_scopes(self) -> None:
        """After a stop, scopes whose closing test never ran are torn down here."""
        errors = self.shared.teardown_all()
        if errors and self.reporter.terminal is not None:
            terminal = self.reporter.terminal
            terminal.write_sep("=", "errors tearing down shared fixtures after the run stopped")
            for error in errors:
                terminal.write_line(f"{type(error).__name__}: {error}")
            self.session.testsfailed += len(errors)

    # -- results -------------------------------------------------------------------------

    def _poll(self, timeout: float | None) -> bool:
        """Handle one thing from the pool; False if nothing arrived within ``timeout``."""
        assert self.pool is not None
        result = self.pool.next_result(0)
        if result is None:
            if timeout == 0:
                return False
            # About to wait: show what was reported so far. With the lane reporting, output
            # keeps coming meanwhile: flushed at most every FLUSH_INTERVAL (a flush is a system
            # call, and the main thread would make one for nearly every test).
            pending = False
            if self.lane is None:
                self.terminal.flush()
            else:
                pending = self.terminal.flush_due()
            holding = timeout is None and bool(self.ready)
            wait = HOLD_CHECK if holding else timeout
            tick = self._tick_interval()
            if pending and (tick is None or tick > FLUSH_INTERVAL):
                tick = FLUSH_INTERVAL
            if tick is not None and (wait is None or wait > tick):
                wait = tick
            result = self.pool.next_result(wait)
            if result is None:
                self._tick()
                if holding:
                    self._emit_ready()  # results held past HOLD_LIMIT go out now
                    return True
                return False
        if result is _WAKE:
            self._settle()  # raises what the reporting lane raised
            return True
        run = self.runs.pop(result.id)
        self._release_pending(run.index, run.item)
        if run.chain_key is not None and lookup(self.chain_tail, run.chain_key) == result.id:
            # The engine ignores deps on finished tasks: the chain's next variant has none.
            del self.chain_tail[run.chain_key]
        if result.cancelled:
            return True
        if result.hung:
            self._report_hung(run, result)
            return True
        if result.exception is not None and not _ends_session(result.exception):
            # pytest's protocol around the test raised (not the test: pytest reports that):
            # something the code under test did to the process (a patched clock, a closed
            # stream...) broke a hook. Sequentially no other test would run meanwhile; here the
            # run goes on and the test is reported failed with what happened.
            self._report_broken(run, result.exception, result.run_time)
            return True
        if result.exception is not None:
            # KeyboardInterrupt / pytest.exit raised by the test: report what the test
            # produced, then end the session as pytest would.
            self._settle()
            if run.reports:
                self.reporter.emit(run)
            if not self.capturing:  # -s: what the test printed is shown, as it would be live
                out, err = run.capture.take()
                self.reporter.print_block(out + err)
            raise result.exception
        run.run_time = result.run_time  # recorded when it is logged
        self._make_ready(run)
        return True

    def _report_hung(self, run: ItemRun, result: _engine.TaskResult) -> None:
        """The test ignored its timeout (blocked in C): its worker was abandoned and replaced.
        Report it failed with what is known; its own fixtures are not torn down."""
        item = run.item
        self.hung.append(item.nodeid)
        message = hung_message(item, result.stack)
        run.reports = _reports_failed_with(run, message, result.run_time)
        self._make_ready(run)

    def _report_broken(self, run: ItemRun, error: BaseException, run_time: float) -> None:
        trace = "".join(_format_exception(error))
        message = (
            f"pytest's protocol for this test raised {type(error).__name__} outside the test's "
            f"own code (its phases' reports were lost); probably the process state was "
            f"changed by this or a concurrently running test:\n\n{trace}"
        )
        run.reports = _reports_failed_with(run, message, run_time)
        run.run_time = run_time
        self._make_ready(run)

    def _make_ready(self, run: ItemRun) -> None:
        run.ready_at = _engine.monotonic()
        if not self.ready and self._may_log(run, flush=False):
            self._log_now(run)  # the usual case: nothing held, its turn
            return
        self.ready.append(run)
        self._emit_ready()

    def _file_turn(self, run: ItemRun) -> bool:
        """Report file by file, as sequentially: the terminal prints a file's name each time
        the reported file changes, so results in completion order repeated names (3 files gave
        8 lines). A result of another file waits until the current file has no tests left to
        report, or at most HOLD_LIMIT seconds (a long test must not hide the rest)."""
        file = run.file
        current = self.current_file
        if current is None or file == current or self.left_in_file[current] <= 0:
            return True
        return _engine.monotonic() - run.ready_at >= HOLD_LIMIT

    def _file_of(self, item: pytest.Item) -> str:
        """The file the terminal reporter groups a test's progress under: its node id's first
        part, the same for every child of one parent (a node id extends its parent's)."""
        parent = item.parent
        file = self.file_of_parent.get(parent)
        if file is None:
            file = self.file_of_parent[parent] = item.nodeid.partition("::")[0]
        return file

    def _reported(self, run: ItemRun) -> None:
        file = self.current_file = run.file
        self.left_in_file[file] -= 1
        live = self.live
        if live is not None:
            live.done += 1
            live.known_done += lookup(self.known, run.item, 0.0)

    # -- what the user sees while it runs (#16) ---------------------------------------------

    def _start_live(self, capture: ThreadedCapture) -> None:
        fd = capture.terminal_stdout_fd if capture.terminal_stdout_fd is not None else 1
        if not wants_live(self.settings.output, fd, self.capturing):
            return
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if terminal is None:
            return
        stats = terminal.stats

        def counts() -> dict[str, int]:
            return {
                name: len(stats.get(name, ())) for name in ("passed", "failed", "skipped", "error")
            }

        def running() -> list[tuple[str, float]]:
            # Also called on the reporting lane's thread (a flush there draws a frame) while
            # the main thread adds and removes runs: iterate a copy taken in one step
            # (iterating the dict itself raised "dictionary changed size during iteration").
            runs = list(self.runs.values())
            return [(run.nodeid, run.started_at) for run in runs if run.started_at]

        live = LiveStatus(len(self.items), self.settings.workers, counts, running, fd)
        live.known_total = sum(self.known.values())
        if self.terminal.start_status(live):
            self.live = live

    def _tick_interval(self) -> float | None:
        if self.live is not None:
            return FRAME_INTERVAL
        return SLOW_CHECK if self.settings.slow else None

    def _tick(self) -> None:
        """While waiting for results: SLOW lines, and the status area's next frame."""
        if self.settings.slow:
            self._slow_lines(_engine.monotonic())
        if self.live is not None:
            self.terminal.flush()
        elif self.lane is not None:
            self.terminal.flush_due()

    def _slow_lines(self, now: float) -> None:
        threshold = self.settings.slow
        for run in list(self.runs.values()):
            if not run.started_at:
                continue
            slow_at = run.slow_at or threshold
            if now - run.started_at < slow_at:
                continue
            run.slow_at = slow_at * 2  # again when it has run twice as long
            self.slow_lines.append(run.item.nodeid)
            self._write_line(f"SLOW {_seconds(slow_at)} {run.item.nodeid}")

    def _write_line(self, line: str) -> None:
        """A line of its own amid the progress lines, as pytest writes warnings there: the
        progress line goes on afterwards with its file's name again."""
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if terminal is None:
            return

        def write() -> None:
            terminal.write_line(line, yellow=True)
            terminal.currentfspath = None

        if self.lane is not None:  # amid the lane's progress output, in its order
            self.lane.call(write, self._given_back)
        else:
            write()

    def _account(self, nodeid: str, run_time: float) -> None:
        self.busy += run_time
        if run_time > self.longest[0]:
            self.longest = (run_time, nodeid)

    def _ended(self) -> None:
        self.ended_at = _engine.monotonic()

    def _emit_ready(self, flush: bool = False) -> None:
        while True:
            emitted = self._emit_ready_once(flush)
            if not emitted or not self.ready:
                return

    def _emit_ready_once(self, flush: bool) -> bool:
        """One pass over the ready runs; True if one was emitted (a file switch may let
        held ones go: the caller passes again)."""
        emitted = False
        # In collection order: when the current file is done, the next one reported is the
        # earliest collected that has results, as sequentially.
        for run in sorted(self.ready, key=_index_of):
            if not self._may_log(run, flush):
                continue
            emitted = True
            self.ready.remove(run)
            self._log_now(run)
        return emitted

    def _may_log(self, run: ItemRun, flush: bool) -> bool:
        if any(lookup(self.pending_under, node) for node in run.closes):
            return False  # others under its scopes still run: they must finish first
        return flush or self._file_turn(run)

    def _log_now(self, run: ItemRun) -> None:
        self._reported(run)
        self._log_in_order(run)
        if self._session_stopping():
            self._stop()

    def _log_in_order(self, run: ItemRun) -> None:
        """Report ``run`` after every run handed over before it: on the lane when nothing
        needs the main thread, else here once the lane is empty."""
        # Counted as unreported (see _nodes_to_close) while runs the lane gives back are
        # logged before it.
        self.logging_now = run
        try:
            lane = self.lane
            if (
                lane is not None
                and not self._session_stopping()
                and self.shared.closes_quietly(run.closes)
            ):
                if run.closes:
                    self.shared.teardown(run.closes)  # nothing to run, print or report
                lane.hand(run, self._given_back)
                return
            self._settle()  # the reports before it are logged: a stop they caused is known
            if self._session_stopping():
                self._stop()
            self._log(run, before_teardown=self._close_scopes)
        finally:
            self.logging_now = None

    def _log(self, run: ItemRun, before_teardown: Callable[[ItemRun], None] | None = None) -> None:
        """Log a finished run's reports (on the lane's thread, or the main thread)."""
        if run.run_time is not None:
            self.history.record(run.item, run.reports, run.run_time, run.cpu_time)
            self._account(run.nodeid, run.run_time)
        self.state_watch.observe(run.nodeid, run.state_before, run.state_after)
        self.reporter.emit(run, before_teardown=before_teardown)

    def _given_back(self, run: ItemRun) -> None:
        """A run the lane gave back after the session began to stop: logged here, in order."""
        self._stop()
        self._log(run, before_teardown=self._close_scopes)

    def _wake(self) -> None:  # on the lane's thread
        assert self.pool is not None
        self.pool.post(_WAKE)

    def _settle(self) -> None:
        """Wait until everything handed to the lane is logged."""
        if self.lane is not None:
            self.lane.settle(self._given_back)

    def _lane_busy(self) -> bool:
        return self.lane is not None and self.lane.outstanding > 0

    def _drain(self) -> None:
        self._drain_results()
        self._reset_streams()

    def _drain_results(self) -> None:
        while self.runs or self.ready:
            if not self.runs:
                self._settle()
                self._emit_ready(flush=True)  # scopes closed by cancelled tests (after a stop)
                for run in self.ready:
                    run.closes = []
                self._emit_ready(flush=True)
                break
            self._poll(None)
        self._settle()

    def _session_stopping(self) -> bool:
        return bool(self.stopping or self.session.shouldfail or self.session.shouldstop)

    def _stop(self) -> None:
        """-x / --maxfail reached: nothing new starts; running tests finish and are reported."""
        if not self.stopping:
            self.stopping = True
            assert self.pool is not None
            self.pool.cancel()

    def _abort(self) -> None:
        self.aborting = True
        if self.pool is not None:
            # Started and not reported: next_result already interrupted them on Ctrl-C, so
            # some may have stopped (tests in interruptible waits stop at once).
            started = [run for run in self.runs.values() if run.started_at]
            self.pool.cancel()
            self.pool.interrupt(KeyboardInterrupt)
            if self.lane is not None:
                # Finished tests already handed over are reported if the lane can within the
                # grace; the rest are listed with the running ones.
                started += self.lane.finish(ABORT_GRACE)
            self.interrupted = [run.item.nodeid for run in sorted(started, key=_index_of)]

    def _teardown_after_abort(self) -> None:
        """Ctrl-C / pytest.exit: shared scopes still go away, as pytest's session end does."""
        if self.aborting:
            with contextlib.suppress(Exception):
                self.shared.teardown_all()

    def _shutdown_pool(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, timeout=None if not self.aborting else ABORT_GRACE)


def _seconds(value: float) -> str:
    return f"{value:.1f}s"


def _index_of(run: ItemRun) -> int:
    return run.index


def _compute_location(item: pytest.Item) -> None:
    """pytest's cached ``Item.location``, computed on the worker rather than the main thread,
    without the property's dict.get (slow on a dict the main thread owns)."""
    if "location" not in item.__dict__ and type(item).location is _LOCATION:
        item.__dict__["location"] = _LOCATION.func(item)


def _ends_session(error: BaseException) -> bool:
    """Ctrl-C, pytest.exit() and other BaseExceptions end the session, as sequentially."""
    return not isinstance(error, Exception) or isinstance(error, _EXIT)


def _reports_failed_with(run: ItemRun, message: str, run_time: float) -> list[pytest.TestReport]:
    """Reports for a test whose protocol did not finish: the setup report it has, if any, and
    ``message`` as the failure of its call (of its setup, if setup did not pass)."""
    item = run.item
    reports = [r for r in list(run.reports) if r.when == "setup"]
    if not reports:
        reports = [_synthetic_report(item, "setup", "passed", None, 0.0)]
    if reports[0].passed:
        reports.append(_synthetic_report(item, "call", "failed", message, run_time))
    else:
        reports[0] = _synthetic_report(item, "setup", "failed", message, run_time)
    reports.append(_synthetic_report(item, "teardown", "passed", None, 0.0))
    return reports


def _synthetic_report(
    item: pytest.Item, when: str, outcome: str, longrepr: str | None, duration: float
) -> pytest.TestReport:
    return pytest.TestReport(
        item.nodeid,
        item.location,
        {x: 1 for x in item.keywords},
        outcome,  # type: ignore[arg-type]
        longrepr,
        when,  # type: ignore[arg-type]
        sections=[],
        duration=duration,
        start=0.0,
        stop=duration,
        user_properties=list(item.user_properties),
    )
