"""What runs for one item: pytest's full protocol, with reports handed back to the main thread."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pytest_threadpool.context import acting_for, current_run
from pytest_threadpool.item_run import ItemRun
from pytest_threadpool.pytest_compat import runtestprotocol
from pytest_threadpool.setupstate import ItemSetupState, RoutingSetupState, SharedScopes


def run_protocol(run: ItemRun, shared: SharedScopes, teardown_shared: Callable) -> None:
    """Run ``pytest_runtest_protocol`` for ``run.item`` on the calling thread, so every hook
    wrapper of every plugin runs around it as in a sequential session. For pool runs our own
    ``pytest_runtest_protocol`` (below) collects the reports instead of logging them."""
    state = ItemSetupState(shared, run.item, lambda: teardown_shared(run))
    run.item_errors = state.item_errors  # not the state itself: it refers back to run
    RoutingSetupState.bind(state)
    try:
        with acting_for(run, capture=run.capture_enabled):
            try:
                run.item.ihook.pytest_runtest_protocol(item=run.item, nextitem=run.nextitem)
            except BaseException:
                # KeyboardInterrupt / pytest.exit left the protocol early: the test's own
                # finalizers still run, as pytest's session teardown would run them.
                state.finalize_after_abort()
                raise
    finally:
        run.protocol_done = True
        RoutingSetupState.bind(None)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """Registered (this module) for threaded sessions only. For pool runs: the three phases,
    not logged here; they are logged later, one test at a time in order (reporting_lane.py)."""
    run = current_run()
    if run is None or run.item is not item or run.inline:
        return None
    run.reports = runtestprotocol(item, log=False, nextitem=nextitem)
    return True
