"""The reporting lane: pytest's reporting hooks for pool-run tests, called in order on one
thread of their own, so that the main thread only schedules (issue #17).

Reporting a test (logstart, three logreports with the terminal's teststatus, logfinish) costs
the main thread more than everything else it does for a test; with it on the main thread a
trivial suite could not go faster than ~4,000 tests a second, whatever the worker count. The
lane is an engine pool with one worker: hand-offs are FIFO, so every hook sees the tests in the
order the main thread chose, one at a time, exactly as pytest calls them.

The main thread keeps what must stay there or must see every earlier report first: shared
scopes' teardown (a test that closes scopes with something to tear down is reported on the
main thread once the lane is empty) and everything after a stop (-x, --maxfail): once a report
stops the session, the lane hands the rest back untouched and the main thread reports them as
it always did, with pytest's "tear everything down" rule for the last one.
"""

from __future__ import annotations

from collections.abc import Callable

from pytest_threadpool import _engine
from pytest_threadpool.item_run import ItemRun

# A wait for the lane returns at least this often, so signal handlers (Ctrl-C) run.
WAIT_SLICE = 0.05


class ReportingLane:
    """``log(run)`` runs on the lane's thread for each run handed over, in order.
    ``stopping()`` says whether the session is stopping (checked after each run); once it does,
    ``stop()`` is called there at once (nothing new must start: -x), and later runs are given
    back to the main thread. ``wake()`` is called there when a reporting hook raised: the main
    thread must come and take the exception (``settle``) now, not at its next hand-off."""

    def __init__(
        self,
        log: Callable[[ItemRun], None],
        stopping: Callable[[], bool],
        stop: Callable[[], None],
        wake: Callable[[], None],
        backlog: int,
    ) -> None:
        self._wake = wake
        self._log = log
        self._stopping = stopping
        self._stop = stop
        self._backlog = backlog  # most runs handed over and not acknowledged
        self._pool = _engine.Pool(1, name="threadpool-reporter")
        # task id -> its run (None for a call), until acknowledged
        self._handed: dict[int, ItemRun | None] = {}
        self._giving_back = False  # set on the lane's thread: the session stops

    @property
    def outstanding(self) -> int:
        """Runs handed over whose acknowledgement the main thread has not taken yet."""
        return len(self._handed)

    def start(self) -> None:
        self._pool.start()

    def hand(self, run: ItemRun, given_back: Callable[[ItemRun], None]) -> None:
        """Queue ``run`` for reporting. With ``backlog`` runs outstanding, wait until the lane
        has caught up with one (memory follows the backlog, not the suite)."""
        if len(self._handed) >= self._backlog:
            self.settle(given_back, until=self._backlog // 2)  # then it has room for a while
        # The label names the test in a crash report (its line names the reporter thread).
        self._handed[self._pool.submit(self._report, run, label=run.nodeid)] = run

    def call(self, fn: Callable[[], object], given_back: Callable[[ItemRun], None]) -> None:
        """Queue ``fn()`` among the reports (a line for the terminal amid the progress)."""
        if len(self._handed) >= self._backlog:
            self.settle(given_back, until=self._backlog // 2)
        self._handed[self._pool.submit(_call, fn, label="threadpool terminal line")] = None

    def _report(self, run: ItemRun) -> ItemRun | None:  # on the lane's thread
        if self._giving_back:
            return run
        try:
            self._log(run)
        except BaseException:
            self._giving_back = True  # the main thread raises it; nothing is reported after
            self._wake()
            raise
        if self._stopping():
            self._giving_back = True
            self._stop()
        return None

    def collect(self, given_back: Callable[[ItemRun], None]) -> None:
        """Take the acknowledgements that are there, without waiting."""
        while self._handed:
            if not self._take(0, given_back):
                return

    def settle(self, given_back: Callable[[ItemRun], None], until: int = 0) -> None:
        """Wait until at most ``until`` runs are outstanding; runs given back are passed to
        ``given_back`` in order. Waits in slices, so Ctrl-C interrupts it; an exception a
        reporting hook raised is raised here."""
        while len(self._handed) > until:
            self._take(WAIT_SLICE, given_back)

    def _take(self, timeout: float, given_back: Callable[[ItemRun], None]) -> bool:
        result = self._pool.next_result(timeout)
        if result is None:
            return False
        run = self._handed.pop(result.id)
        if result.exception is not None:
            raise result.exception
        if run is not None and result.value is not None:
            given_back(run)
        return True

    def finish(self, grace: float) -> list[ItemRun]:
        """After Ctrl-C or pytest.exit: reports already handed over go out if they can within
        ``grace`` seconds, then the lane stops. Returns the runs that were not reported."""
        deadline = _engine.monotonic() + grace
        unreported: list[ItemRun] = []
        while self._handed:
            left = deadline - _engine.monotonic()
            if left <= 0:
                break
            try:
                result = self._pool.next_result(min(left, WAIT_SLICE))
            except BaseException:  # a second Ctrl-C: stop waiting
                break
            if result is None:
                continue
            run = self._handed.pop(result.id)
            failed = result.exception is not None or result.cancelled
            if run is not None and (failed or result.value is not None):
                unreported.append(run)
        unreported.extend(run for run in self._handed.values() if run is not None)
        self._handed.clear()
        self.shutdown(grace)
        return unreported

    def shutdown(self, grace: float | None = None) -> None:
        self._giving_back = True
        self._pool.cancel()
        if grace is not None:
            self._pool.interrupt(KeyboardInterrupt)
        self._pool.shutdown(wait=True, timeout=grace)


def _call(fn: Callable[[], object]) -> None:
    fn()
