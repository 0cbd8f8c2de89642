"""Setup and teardown of collectors and shared fixtures when items run concurrently.

pytest's ``SetupState`` is one stack (session → … → item), torn down according to the next item.
Here the main thread owns the collectors: it sets them up (and the shared fixtures they hold)
before any item that needs them starts, and tears a collector down after the last item under it
(in collection order) has finished, attaching errors and output to that item's teardown as pytest
does. Each running item gets its own ``ItemSetupState`` whose stack holds only the item.
"""

from __future__ import annotations

import threading
import types
from collections.abc import Callable
from copy import copy as _copy  # bound at import: a test may patch the copy module

import pytest

from pytest_threadpool.dict_reads import lookup
from pytest_threadpool.fixture_scopes import prepared_fixtures
from pytest_threadpool.pytest_compat import (
    GROUP_TRACEBACKS_FILTERED,
    TEST_OUTCOME,
    SetupState,
    item_request,
)

ExcInfo = tuple[BaseException, types.TracebackType | None]
NodeEntry = tuple[list[Callable[[], object]], ExcInfo | None]

_local = threading.local()
_NODE_TEARDOWN = pytest.Collector.teardown  # Node.teardown: does nothing


def _run_finalizers(node: pytest.Node, finalizers: list[Callable[[], object]]) -> list:
    """Run ``finalizers`` last-in first-out; return the errors grouped as pytest groups them."""
    __tracebackhide__ = True
    errors: list[BaseException] = []
    while finalizers:
        fin = finalizers.pop()
        try:
            fin()
        except TEST_OUTCOME as exc:
            errors.append(exc)
    if len(errors) == 1:
        return errors
    if errors:
        return [BaseExceptionGroup(f"errors while tearing down {node!r}", errors[::-1])]
    return []


def reraise_shared(exc: BaseException, tb: types.TracebackType | None) -> None:
    """Raise a stored exception that several tests may re-raise at the same time (a failed
    collector or shared fixture). Each raise extends the exception's traceback as it unwinds,
    so concurrent raises of one object would mix threads' frames: raise a copy instead."""
    __tracebackhide__ = True
    try:
        clone = _copy(exc)
    except Exception:
        clone = exc
    if clone is exc:
        raise exc.with_traceback(tb)
    clone.__cause__ = exc.__cause__
    clone.__context__ = exc.__context__
    clone.__suppress_context__ = exc.__suppress_context__
    clone.__notes__ = list(getattr(exc, "__notes__", []))
    if not clone.__notes__:
        del clone.__notes__
    raise clone.with_traceback(tb)


def _hide_teardown_frame(excinfo: pytest.ExceptionInfo[BaseException]) -> bool:
    """pytest before 9.2 fails (IndexError) to show an exception group whose frames are all
    hidden: one frame of ours stays there."""
    return GROUP_TRACEBACKS_FILTERED or not isinstance(excinfo.value, BaseExceptionGroup)


def raise_teardown_errors(errors: list[BaseException]) -> None:
    __tracebackhide__ = True
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise BaseExceptionGroup("errors during test teardown", errors[::-1])


class SharedScopes:
    """Collectors that are set up, with their finalizers and setup errors (main thread owns)."""

    def __init__(self) -> None:
        self.live: dict[pytest.Node, NodeEntry] = {}
        # Fixture setup of class/module/package/session scope reached from a worker (through
        # request.getfixturevalue) is serialised, so such a fixture is still created once.
        self.fixture_lock = threading.RLock()
        # The item whose shared fixtures the main thread is setting up: active for pytest's
        # ``is_node_active`` then, as it is during its setup in a sequential run.
        self.preparing: pytest.Item | None = None

    def is_active(self, node: pytest.Node) -> bool:
        return node is self.preparing or lookup(self.live, node) is not None

    def setup_collectors(self, item: pytest.Item) -> bool:
        """Set up the collectors above ``item`` that are not set up yet; False if one failed."""
        __tracebackhide__ = True
        for col in item.listchain()[:-1]:
            entry = self.live.get(col)
            if entry is not None:
                if entry[1] is not None:
                    return False
                continue
            finalizers: list[Callable[[], object]] = [col.teardown]
            self.live[col] = (finalizers, None)
            try:
                col.setup()
            except TEST_OUTCOME as exc:
                self.live[col] = (finalizers, (exc, exc.__traceback__))
                return False
        return True

    def nothing_to_prepare(self, item: pytest.Item, parents: tuple[pytest.Node, ...]) -> bool:
        """Every collector above ``item`` (``parents``) is set up and it uses no fixture wider
        than function scope: preparing it would do nothing."""
        live = self.live
        for col in parents:
            if col not in live:
                return False
        return next(prepared_fixtures(item), None) is None

    def setup_shared_fixtures(self, item: pytest.Item) -> None:
        """Create the class/module/package/session fixtures ``item`` requests, in the order
        pytest would, stopping at the first error (the item's own setup re-raises it)."""
        __tracebackhide__ = True
        request = item_request(item)
        if not request:
            return
        self.preparing = item
        try:
            for name, _scope in prepared_fixtures(item):
                try:
                    with self.fixture_lock:
                        request.getfixturevalue(name)
                except TEST_OUTCOME:
                    return
        finally:
            self.preparing = None

    def teardown(self, nodes: list[pytest.Node]) -> list[BaseException]:
        """Tear down ``nodes`` (innermost first); return the errors in pytest's order."""
        __tracebackhide__ = True
        errors: list[BaseException] = []
        for node in nodes:
            entry = self.live.pop(node, None)
            if entry is not None:
                errors.extend(_run_finalizers(node, entry[0]))
        return errors

    def closes_quietly(self, nodes: list[pytest.Node]) -> bool:
        """Tearing ``nodes`` down runs nothing: no finalizer besides the collector's own
        ``teardown``, which the collector class does not override."""
        for node in nodes:
            entry = lookup(self.live, node)
            if entry is None:
                continue
            finalizers = entry[0]
            if len(finalizers) > 1 or type(node).teardown is not _NODE_TEARDOWN:
                return False
        return True

    def teardown_all(self) -> list[BaseException]:
        return self.teardown(list(reversed(self.live)))


class ItemSetupState(SetupState):
    """The setup stack of one running item: collectors are the main thread's business."""

    def __init__(
        self,
        shared: SharedScopes,
        item: pytest.Item,
        teardown_shared: Callable[[], list[BaseException]],
    ) -> None:
        super().__init__()
        self.shared = shared
        self.item = item
        self._teardown_shared = teardown_shared
        self._finalizers: list[Callable[[], object]] = []
        self.item_errors: list[BaseException] = []
        self._torn_down = False  # pytest pops the item off its stack before its finalizers

    def is_node_active(self, node: pytest.Node) -> bool:
        if node is self.item:
            return not self._torn_down
        return self.shared.is_active(node)

    def setup(self, item: pytest.Item) -> None:
        __tracebackhide__ = True
        assert item is self.item, (item, self.item)
        for col in item.listchain()[:-1]:
            entry = lookup(self.shared.live, col)
            assert entry is not None, f"collector {col!r} was not set up before {item.nodeid}"
            if entry[1] is not None:
                reraise_shared(*entry[1])
        self._finalizers = [item.teardown]
        item.setup()

    def finalize_after_abort(self) -> None:
        """Best effort, when the session is being aborted."""
        try:
            _run_finalizers(self.item, self._finalizers)
        except BaseException:
            pass

    def addfinalizer(self, finalizer: Callable[[], object], node: pytest.Node) -> None:
        assert callable(finalizer)
        if node is self.item:
            self._finalizers.append(finalizer)
            return
        entry = lookup(self.shared.live, node)
        assert entry is not None, (node, self.item)
        entry[0].append(finalizer)

    def teardown_exact(self, nextitem: pytest.Item | None) -> None:
        __tracebackhide__ = True
        # The item's own finalizers; errors are kept so that the main thread can combine them
        # with errors of the scopes this item closes, as pytest's teardown_exact would.
        # (In place: the item's ItemRun holds this list.)
        self._torn_down = True
        self.item_errors[:] = _run_finalizers(self.item, self._finalizers)
        raise_teardown_errors(self.item_errors + self._teardown_shared())

    @property  # type: ignore[override]
    def stack(self) -> dict:
        chain = self.item.listchain()[:-1]
        view = {col: self.shared.live[col] for col in chain if col in self.shared.live}
        view[self.item] = (self._finalizers, None)
        return view

    @stack.setter
    def stack(self, value: dict) -> None:  # SetupState.__init__ assigns it
        pass


class RoutingSetupState(SetupState):
    """Installed as ``session._setupstate``: routes each call to the item the calling thread
    runs; outside any item (session start/finish) it acts on the shared collectors."""

    def __init__(self, shared: SharedScopes) -> None:
        super().__init__()
        self.shared = shared

    @staticmethod
    def current() -> ItemSetupState | None:
        return getattr(_local, "state", None)

    @staticmethod
    def bind(state: ItemSetupState | None) -> None:
        _local.state = state

    def is_node_active(self, node: pytest.Node) -> bool:
        """pytest >= 9.1 asks this before every fixture lookup and warns (PytestRemovedIn10Warning,
        an error from 10.1) when the requesting node is not active; older pytest never asks."""
        state = self.current()
        if state is not None:
            return state.is_node_active(node)
        return self.shared.is_active(node)

    def setup(self, item: pytest.Item) -> None:
        __tracebackhide__ = True
        state = self.current()
        assert state is not None, "items run through pytest-threadpool's runner"
        state.setup(item)

    def addfinalizer(self, finalizer: Callable[[], object], node: pytest.Node) -> None:
        state = self.current()
        if state is not None:
            state.addfinalizer(finalizer, node)
            return
        entry = lookup(self.shared.live, node)
        assert entry is not None, node
        entry[0].append(finalizer)

    def teardown_exact(self, nextitem: pytest.Item | None) -> None:
        __tracebackhide__ = _hide_teardown_frame
        state = self.current()
        if state is not None:
            state.teardown_exact(nextitem)
            return
        if nextitem is None:
            raise_teardown_errors(self.shared.teardown_all())

    @property  # type: ignore[override]
    def stack(self) -> dict:
        state = self.current()
        return state.stack if state is not None else dict(self.shared.live)

    @stack.setter
    def stack(self, value: dict) -> None:
        pass
