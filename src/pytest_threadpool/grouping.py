"""Decide, per collected item, whether and with whom it may run concurrently.

The result is a plan: consecutive items (in collection order) that share a parallel group key form
one group; everything else runs alone. Marker precedence:
``not_parallelizable > own > class > module > package``; a default scope (``threadpool_scope``)
applies to items that no marker decides.
"""

from __future__ import annotations

import collections
import inspect
import linecache
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_threadpool.fixture_scopes import wider_scoped_fixtures
from pytest_threadpool.markers import (
    MARKER_NOT_PARALLELIZABLE,
    MARKER_PARALLELIZABLE,
    ParallelScope,
    PytestThreadpoolWarning,
)
from pytest_threadpool.pytest_compat import FUNCTION_SCOPE, Scope, fixture_info, param_scopes

THREAD_UNSAFE_MARKER = "thread_unsafe"
# catch_warnings() is private to the thread's context only with context-aware warnings: 3.14+
# when the flag is on (the default of free-threaded builds, -X context_aware_warnings on others).
_CONTEXT_AWARE_WARNINGS = bool(getattr(sys.flags, "context_aware_warnings", False))
# Calls in a test's own source that change process-wide state while it runs.
_WARNING_FILTER_CALLS = re.compile(r"\b(warns|deprecated_call|catch_warnings)\s*\(")
# unittest.mock's patch as decorator, context manager or patch.object/dict/multiple (not any
# method named patch: an HTTP test client's .patch(url) is not one).
_MOCK_PATCH_CALLS = re.compile(
    r"\bmock\.patch\b|@patch\b|\bwith\s+patch\s*\(|\bpatch\.(object|dict|multiple)\s*\("
)

# Signal handlers and timers: CPython lets only the main thread install them, and tests that run
# alone run there, as sequentially.
_SIGNAL_CALLS = re.compile(
    r"\bsignal\.(signal|setitimer|alarm|pthread_sigmask|set_wakeup_fd|siginterrupt)\s*\("
)
_SOURCE_PATTERNS = (_WARNING_FILTER_CALLS, _MOCK_PATCH_CALLS, _SIGNAL_CALLS)


@dataclass(frozen=True)
class Decision:
    """How one item may run: alone, or in the group named by ``key``."""

    key: tuple[object, ...] | None  # None: runs alone
    chain_key: object | None = None  # items sharing it run one after another inside the group
    alone_reason: str | None = None  # why it must run with nothing else running


@dataclass
class Group:
    items: list[pytest.Item] = field(default_factory=list)
    start: int = 0  # index of its first item in the session's items (groups are consecutive)
    parallel: bool = False
    alone_reason: str | None = None
    # True when this group may only start once everything before it has finished (a higher-scope
    # fixture changes its parameter, or something must run alone).
    barrier_before: bool = True


def _scope_argument(mark: pytest.Mark) -> object:
    if mark.args:
        return mark.args[0]
    return mark.kwargs.get("scope", ParallelScope.CHILDREN if not mark.kwargs else None)


def _parse_mark(mark: pytest.Mark, item: pytest.Item) -> ParallelScope:
    extra = set(mark.kwargs) - {"scope"}
    if len(mark.args) > 1 or extra or (mark.args and "scope" in mark.kwargs):
        raise pytest.UsageError(
            f"{item.nodeid}: parallelizable takes one scope argument, e.g. "
            "@parallelizable('children'); accepted scopes: children, parameters, all"
        )
    value = _scope_argument(mark)
    try:
        return ParallelScope.parse(value)
    except ValueError as exc:
        raise pytest.UsageError(f"{item.nodeid}: {exc}") from None


class _PackageMarks:
    """pytestmark of package ``__init__.py`` modules, which pytest does not apply to tests."""

    def __init__(self) -> None:
        self._by_init_file: dict[Path, list[pytest.Mark]] | None = None

    def _index(self) -> dict[Path, list[pytest.Mark]]:
        index: dict[Path, list[pytest.Mark]] = {}
        for module in list(sys.modules.values()):
            file = getattr(module, "__file__", None)
            if not file or not file.endswith("__init__.py"):
                continue
            marks = getattr(module, "pytestmark", None)
            if marks is None:
                continue
            if not isinstance(marks, list | tuple):
                marks = [marks]
            index[Path(file).resolve()] = [getattr(m, "mark", m) for m in marks]
        return index

    def marks(self, package: pytest.Package) -> list[pytest.Mark]:
        if self._by_init_file is None:
            self._by_init_file = self._index()
        return self._by_init_file.get((package.path / "__init__.py").resolve(), [])


@dataclass(frozen=True)
class _ChainMarks:
    """What the marks of a node and of every node above it say, computed once per node (items
    of one module or class share it, so each item only looks at its own marks)."""

    not_parallelizable: bool = False
    # The innermost ``parallelizable`` mark (class, then module, then package) and its node.
    parallelizable: tuple[pytest.Node, pytest.Mark] | None = None
    # Marks anywhere in the chain, as ``get_closest_marker`` would find them.
    thread_unsafe: bool = False
    filterwarnings: bool = False


_NO_MARKS = _ChainMarks()


def _level_marks(node: pytest.Node, packages: _PackageMarks) -> list[pytest.Mark]:
    """The marks a level contributes to the parallel decision: classes and modules their own,
    packages their ``__init__.py`` ``pytestmark``; other nodes (session, directories) none."""
    if isinstance(node, pytest.Class | pytest.Module):
        return list(node.own_markers)
    if isinstance(node, pytest.Package):
        return packages.marks(node)
    return []


def _higher_scope_params(item: pytest.Item) -> tuple[tuple[str, int], ...]:
    """Parameters of class/module/package/session-scoped fixtures: items that differ in them
    cannot overlap, because pytest keeps one instance of such a fixture at a time."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return ()
    return tuple(
        sorted(
            (name, callspec.indices[name])
            for name, scope in param_scopes(callspec).items()
            if scope is not FUNCTION_SCOPE and name in callspec.indices
        )
    )


class Planner:
    def __init__(self, default_scope: ParallelScope | None, unsafe_fixtures: frozenset[str]):
        self.default_scope = default_scope
        self.unsafe_fixtures = unsafe_fixtures
        self._packages = _PackageMarks()
        self._decisions: dict[pytest.Item, Decision] = {}
        self._chains: dict[pytest.Node, _ChainMarks] = {}
        self._parsed: dict[int, ParallelScope] = {}  # id of a class/module/package mark -> scope
        # module name -> which of the call patterns its source contains
        self._module_mentions: dict[str | None, frozenset[re.Pattern[str]]] = {}

    def decide(self, item: pytest.Item) -> Decision:
        """The item's decision (computed once: marker warnings are issued once)."""
        decision = self._decisions.get(item)
        if decision is None:
            decision = self._decisions[item] = self._decide(item)
        return decision

    def _decide(self, item: pytest.Item) -> Decision:
        if not isinstance(item, pytest.Function):
            return Decision(None)
        own = item.own_markers
        above = self._chain(item.parent)
        if above.not_parallelizable or any(m.name == MARKER_NOT_PARALLELIZABLE for m in own):
            return Decision(None)
        for mark in own:
            if mark.name == MARKER_PARALLELIZABLE:
                return self._grouped(item, item, _parse_mark(mark, item), above)
        if above.parallelizable is not None:
            node, mark = above.parallelizable
            scope = self._parsed.get(id(mark))
            if scope is None:  # parsed once per mark; errors name the first item it applies to
                scope = self._parsed[id(mark)] = _parse_mark(mark, item)
            return self._grouped(item, node, scope, above)
        if self.default_scope is not None:
            module = item.getparent(pytest.Module)
            return self._grouped(item, module or item.session, self.default_scope, above)
        return Decision(None)

    def _chain(self, node: pytest.Node | None) -> _ChainMarks:
        if node is None:
            return _NO_MARKS
        known = self._chains.get(node)
        if known is not None:
            return known
        above = self._chain(node.parent)
        level = _level_marks(node, self._packages)
        found = next((m for m in level if m.name == MARKER_PARALLELIZABLE), None)
        names = {m.name for m in node.own_markers}
        chain = self._chains[node] = _ChainMarks(
            not_parallelizable=above.not_parallelizable
            or any(m.name == MARKER_NOT_PARALLELIZABLE for m in level),
            parallelizable=(node, found) if found is not None else above.parallelizable,
            thread_unsafe=above.thread_unsafe or THREAD_UNSAFE_MARKER in names,
            filterwarnings=above.filterwarnings or "filterwarnings" in names,
        )
        return chain

    def _grouped(
        self, item: pytest.Function, anchor: pytest.Node, scope: ParallelScope, above: _ChainMarks
    ) -> Decision:
        reason = self._alone_reason(item, above)
        if reason is not None:
            return Decision(None, alone_reason=reason)
        function_id = (item.parent, item.originalname)
        params = _higher_scope_params(item)
        if anchor is item:
            if scope is ParallelScope.CHILDREN:
                item.warn(
                    PytestThreadpoolWarning(
                        f"parallelizable('children') on the function {item.originalname} has no "
                        "effect (a function has no children); use 'parameters' to run its "
                        "parametrized variants concurrently"
                    )
                )
                return Decision(None)
            # 'parameters' or 'all' on a function: its variants form the group.
            return Decision(("fn", *function_id, params))
        if scope is ParallelScope.PARAMETERS:
            return Decision(("fn", *function_id, params))
        chain = function_id if scope is ParallelScope.CHILDREN else None
        return Decision(("node", anchor.nodeid, scope.value, params), chain_key=chain)

    def _alone_reason(self, item: pytest.Function, above: _ChainMarks) -> str | None:
        names = {m.name for m in item.own_markers}
        if above.thread_unsafe or THREAD_UNSAFE_MARKER in names:
            return "marked thread_unsafe"
        unsafe = sorted(self.unsafe_fixtures.intersection(item.fixturenames))
        if unsafe:
            return "uses " + ", ".join(unsafe)
        if _rerun_by_plugin(item):
            return "rerun on failure by pytest-rerunfailures"
        if not _CONTEXT_AWARE_WARNINGS:
            if above.filterwarnings or "filterwarnings" in names:
                return "has filterwarnings marks (warning filters are process-wide here)"
            if self._source_calls(item, _WARNING_FILTER_CALLS):
                return "uses pytest.warns/catch_warnings (warning filters are process-wide here)"
        if self._source_calls(item, _MOCK_PATCH_CALLS):
            return "uses mock.patch (patches are process-wide)"
        if self._source_calls(item, _SIGNAL_CALLS):
            return "sets signal handlers or timers (main thread only)"
        return None

    def _source_calls(self, item: pytest.Function, calls: re.Pattern[str]) -> bool:
        """Does the test function's source (decorators included) contain one of ``calls``?"""
        function = getattr(item, "function", None)
        module = getattr(function, "__module__", None)
        mentioned = self._module_mentions.get(module)
        if mentioned is None:
            cached = set(linecache.cache)
            try:
                source = inspect.getsource(sys.modules[module])  # type: ignore[index]
            except (KeyError, OSError, TypeError):
                source = ""
            for filename in set(linecache.cache) - cached:
                linecache.cache.pop(filename, None)  # read once: don't keep every test file
            mentioned = self._module_mentions[module] = frozenset(
                p for p in _SOURCE_PATTERNS if p.search(source)
            )
        if calls not in mentioned:
            return False  # the common case: the module never mentions them
        try:
            body = inspect.getsource(function)  # type: ignore[arg-type]
        except (OSError, TypeError):
            return True
        return bool(calls.search(body))

    def plan(self, items: Sequence[pytest.Item]) -> tuple[list[Group], dict[pytest.Item, object]]:
        """Split items into consecutive groups; also return the chain key (see Decision) of
        each item whose chain has other members."""
        groups: list[Group] = []
        chains: dict[pytest.Item, object] = {}
        current_key: object = None
        decisions = [self.decide(item) for item in items]
        for index, (item, decision) in enumerate(zip(items, decisions, strict=True)):
            if decision.key is not None and decision.key == current_key:
                groups[-1].items.append(item)
            else:
                parallel = decision.key is not None
                barrier = not parallel or (
                    bool(groups) and not (groups[-1].parallel and _compatible(groups[-1], item))
                )
                groups.append(
                    Group(
                        [item],
                        start=index,
                        parallel=parallel,
                        alone_reason=decision.alone_reason,
                        barrier_before=barrier,
                    )
                )
                current_key = decision.key
            if decision.chain_key is not None:
                chains[item] = decision.chain_key
        # A chain of one orders nothing; most test functions are not parametrized, and a big
        # suite would keep a key per test for the whole run.
        members = collections.Counter(chains.values())
        chains = {item: key for item, key in chains.items() if members[key] > 1}
        for group in groups:
            if group.parallel and len(group.items) == 1:
                group.parallel = False
                group.barrier_before = True
        self._decisions.clear()  # planned: the per-item cache is not needed during the run
        self._chains.clear()
        self._parsed.clear()
        return groups, chains


_SCOPE_NODE_TYPES = {
    Scope.Class: pytest.Class,
    Scope.Module: pytest.Module,
    Scope.Package: pytest.Package,
}


def _compatible(previous: Group, item: pytest.Item) -> bool:
    """May ``item``'s group start while ``previous`` still runs?

    pytest keeps one instance of a class/module/package/session fixture at a time and caches it
    by parameter only, so overlap is safe only when every such fixture ``item`` uses lives on a
    node that the previous group's last item also descends from (it is not torn down between
    them) and keeps the same parameter.
    """
    last = previous.items[-1]
    mine = dict(_higher_scope_params(item))
    theirs = dict(_higher_scope_params(last))
    if any(theirs.get(name, index) != index for name, index in mine.items()):
        return False
    shared_chain = set(last.listchain())
    if fixture_info(item) is None:
        return False
    for _name, scope in wider_scoped_fixtures(item):
        node_type = _SCOPE_NODE_TYPES.get(scope)
        node = item.session if node_type is None else item.getparent(node_type)
        if node is None or node not in shared_chain:
            return False
    return True


def _rerun_by_plugin(item: pytest.Function) -> bool:
    """Will pytest-rerunfailures rerun this test when it fails? Its own pytest_runtest_protocol
    runs and logs the attempts, which only works on the main thread with nothing else running
    (in the pool our protocol runs instead and the test would not be rerun)."""
    plugin = item.config.pluginmanager.get_plugin("rerunfailures")
    reruns_for = getattr(plugin, "get_reruns_count", None)
    return reruns_for is not None and bool(reruns_for(item))
