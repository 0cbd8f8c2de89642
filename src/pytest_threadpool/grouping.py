"""Decide, per collected item, whether and with whom it may run concurrently.

The result is a plan: consecutive items (in collection order) that share a parallel group key form
one group; everything else runs alone. Marker precedence:
``not_parallelizable > own > class > module > package``; a default scope (``threadpool_scope``)
applies to items that no marker decides.
"""

from __future__ import annotations

import collections
import inspect
import re
import sys
import tokenize
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_threadpool.fixture_scopes import instance_holders, used_defs, wider_scoped_fixtures
from pytest_threadpool.markers import (
    MARKER_NOT_PARALLELIZABLE,
    MARKER_PARALLELIZABLE,
    ParallelScope,
    PytestThreadpoolWarning,
)
from pytest_threadpool.pytest_compat import (
    FUNCTION_SCOPE,
    Scope,
    fixture_info,
    fixturedef_scope,
    param_scopes,
)
from pytest_threadpool.warnings_capture import CONTEXT_AWARE_WARNINGS

THREAD_UNSAFE_MARKER = "thread_unsafe"
# catch_warnings() is private to the thread's context only with context-aware warnings: 3.14+
# when the flag is on (the default of free-threaded builds, -X context_aware_warnings on others).
# Each pool test then has its own filters (warnings_capture), so filterwarnings marks and
# pytest.warns/catch_warnings calls do not make it run alone.
_CONTEXT_AWARE_WARNINGS = CONTEXT_AWARE_WARNINGS
# Markers that plugins turn into a fixture request after collection (their
# pytest_collection_modifyitems may run after ours): marker name -> the fixture it adds.
_MARKER_FIXTURES = {
    "time_machine": "time_machine",  # time-machine
    "freeze_time": "freezer",  # pytest-freezer / pytest-freezegun
}


@dataclass(frozen=True, eq=False)
class _Calls:
    """Calls in a test's or fixture's source that change process-wide state while it runs."""

    pattern: re.Pattern[str]  # searched in the function's source (decorators included)
    what: str  # the alone reason, after "fixture NAME " for a fixture
    # Searched in the whole file first (None: ``pattern`` itself); a file without it is not
    # read function by function. Keeps planning cheap and generic names (patch, travel) tied
    # to the library that defines them.
    gate: re.Pattern[str] | None = None

    def mentioned_in(self, text: str) -> bool:
        return (self.gate or self.pattern).search(text) is not None


_WARNING_FILTER_CALLS = _Calls(
    re.compile(r"\b(warns|deprecated_call|catch_warnings)\s*\("),
    "uses pytest.warns/catch_warnings (warning filters are process-wide here)",
)
# unittest.mock's patch as decorator, context manager, patcher (patch(...).start()) or
# patch.object/dict/multiple; not a method named patch (an HTTP test client's .patch(url)).
_MOCK_PATCH_CALLS = _Calls(
    re.compile(r"\bmock\.patch\b|@patch\b|(?<![\w.])patch(\.(object|dict|multiple))?\s*\("),
    "uses mock.patch (patches are process-wide)",
    gate=re.compile(r"\bmock\b"),
)
_FREEZEGUN_CALLS = _Calls(
    re.compile(r"\bfreeze_time\s*\(|\bfreezegun\.\w"),
    "uses freezegun (process-wide patch)",
    gate=re.compile(r"\bfreezegun\b"),
)
_TIME_MACHINE_CALLS = _Calls(
    re.compile(r"\btime_machine\.\w|(?<![\w.])travel\s*\("),
    "uses time-machine (process-wide patch)",
    gate=re.compile(r"\btime_machine\b"),
)
# Signal handlers and timers: CPython lets only the main thread install them, and tests that run
# alone run there, as sequentially.
_SIGNAL_CALLS = _Calls(
    re.compile(
        r"\bsignal\.(signal|setitimer|alarm|pthread_sigmask|set_wakeup_fd|siginterrupt)\s*\("
    ),
    "sets signal handlers or timers (main thread only)",
)
# click's CliRunner (typer's and Flask's test_cli_runner() subclass it): invoke() assigns
# sys.stdin/stdout/stderr and click's module globals for the call, and puts back what it found,
# so two overlapping invokes leave each other's streams installed for the rest of the session.
# Found where a runner is made (a fixture or the test) and, in files that mention one, where a
# test calls invoke() on a runner it did not make itself (a module-level runner).
_CLI_RUNNER_CALLS = _Calls(
    re.compile(r"\bCliRunner\s*\(|\btest_cli_runner\s*\(|\.invoke\s*\("),
    "uses click's CliRunner (it swaps sys.stdout/stderr/stdin process-wide)",
    gate=re.compile(r"\bCliRunner\b|\btest_cli_runner\b"),
)
# Assigning the process's standard streams by hand (``sys.stdout = io.StringIO()``); not ==,
# and not contextlib.redirect_stdout, which is per test in pool tests (redirects.py).
_STREAM_ASSIGNMENTS = _Calls(
    re.compile(
        r"\bsys\.(stdout|stderr|stdin)\s*=(?!=)"
        r"|\bsetattr\(\s*sys\s*,\s*[\"'](stdout|stderr|stdin)[\"']"
    ),
    "replaces sys.stdout/stderr/stdin (process-wide)",
)
# HTTP mocking that patches the transport of the whole process: responses (activate, start,
# RequestsMock: a started mock.patch of HTTPAdapter.send) and respx (mock, a router patching
# httpx's transports).
_HTTP_MOCK_CALLS = _Calls(
    re.compile(
        r"\bresponses\.(activate|start|RequestsMock)\b|@responses\b|\brespx\.(mock|route)\b"
    ),
    "mocks HTTP with responses/respx (patches are process-wide)",
    gate=re.compile(r"\b(responses|respx)\b"),
)
# pyfakefs outside its fixtures: Patcher, patchfs and the unittest base class patch os, open,
# pathlib and io for the whole process.
_FAKE_FS_CALLS = _Calls(
    re.compile(r"\bPatcher\s*\(|@patchfs\b|\bpatchfs\s*\(|\bsetUpPyfakefs\s*\("),
    "uses pyfakefs (patches the file system process-wide)",
    gate=re.compile(r"\bpyfakefs\b"),
)
# blockbuster (used by anyio's and other async suites): activating it wraps blocking
# functions of the whole process (time.sleep, os.stat, socket calls...), and overlapping
# activations restore each other's wrappers, leaving one installed.
_BLOCKBUSTER_CALLS = _Calls(
    re.compile(r"\bblockbuster_ctx\s*\(|\bBlockBuster\s*\("),
    "uses blockbuster (it patches blocking functions process-wide)",
    gate=re.compile(r"\bblockbuster\b"),
)
# What a test's and its fixtures' source is searched for, in the order a reason is preferred.
_SCANNED_CALLS = (
    *(() if _CONTEXT_AWARE_WARNINGS else (_WARNING_FILTER_CALLS,)),
    _MOCK_PATCH_CALLS,
    _FREEZEGUN_CALLS,
    _TIME_MACHINE_CALLS,
    _SIGNAL_CALLS,
    _CLI_RUNNER_CALLS,
    _STREAM_ASSIGNMENTS,
    _HTTP_MOCK_CALLS,
    _FAKE_FS_CALLS,
    _BLOCKBUSTER_CALLS,
)
# Plugin fixtures that request an unsafe fixture but use it only when the test uses another
# fixture: (fixture name, module defining it) -> that fixture. Without it they are trusted as
# if listed in threadpool_safe_fixtures; a fixture of the same name defined elsewhere (a user's
# conftest, an override) is judged as usual.
_CONDITIONALLY_UNSAFE: dict[tuple[str, str], str] = {
    # pytest-flask's autouse fixtures, in every session it is installed in: they request
    # monkeypatch, and return at once unless the test uses its ``app`` fixture.
    ("_monkeypatch_response_class", "pytest_flask.plugin"): "app",
    ("_configure_application", "pytest_flask.plugin"): "app",
}
_CONDITIONAL_NAMES = frozenset(name for name, _module in _CONDITIONALLY_UNSAFE)
# Fixtures of these modules are judged by name only (threadpool_unsafe_fixtures): pytest's own,
# and ours.
_UNSCANNED_MODULES = ("_pytest.", "pytest_threadpool.")


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
    # Fixtures that plugins add for markers in the chain (see _MARKER_FIXTURES).
    implied_fixtures: frozenset[str] = frozenset()


_NO_MARKS = _ChainMarks()
_NO_NAMES: frozenset[str] = frozenset()


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
    def __init__(
        self,
        default_scope: ParallelScope | None,
        unsafe_fixtures: frozenset[str],
        safe_fixtures: frozenset[str] = frozenset(),
    ):
        self.default_scope = default_scope
        self.unsafe_fixtures = unsafe_fixtures
        # Fixtures trusted with what they request and call (ini threadpool_safe_fixtures).
        self.safe_fixtures = safe_fixtures
        self._packages = _PackageMarks()
        self._decisions: dict[pytest.Item, Decision] = {}
        self._chains: dict[pytest.Node, _ChainMarks] = {}
        self._parsed: dict[int, ParallelScope] = {}  # id of a class/module/package mark -> scope
        self._sources = _SourceScanner()
        # A name's closest FixtureDef -> the first call found in the definitions a request
        # for that name runs (None: none), so each fixture function is searched once.
        self._fixture_calls: dict[Any, _Calls | None] = {}
        # (id of a fixture info, implied fixtures, closure size) -> (that info, its reasons)
        self._fixture_reasons_by_info: dict[
            tuple[int, frozenset[str], int], tuple[Any, tuple[str | None, str | None]]
        ] = {}
        self._event_loops: _SharedEventLoops | None = None
        # (config, pytest-rerunfailures' counter or None), looked up once per session
        self._reruns: tuple[pytest.Config, Callable[[pytest.Item], Any] | None] | None = None

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
        names = frozenset(m.name for m in own) if own else _NO_NAMES
        above = self._chain(item.parent)
        if above.not_parallelizable or MARKER_NOT_PARALLELIZABLE in names:
            return Decision(None)
        if MARKER_PARALLELIZABLE in names:
            mark = next(m for m in own if m.name == MARKER_PARALLELIZABLE)
            return self._grouped(item, item, _parse_mark(mark, item), above, names)
        if above.parallelizable is not None:
            node, mark = above.parallelizable
            scope = self._parsed.get(id(mark))
            if scope is None:  # parsed once per mark; errors name the first item it applies to
                scope = self._parsed[id(mark)] = _parse_mark(mark, item)
            return self._grouped(item, node, scope, above, names)
        if self.default_scope is not None:
            module = item.getparent(pytest.Module)
            return self._grouped(item, module or item.session, self.default_scope, above, names)
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
            implied_fixtures=above.implied_fixtures.union(_implied_fixtures(names)),
        )
        return chain

    def _grouped(
        self,
        item: pytest.Function,
        anchor: pytest.Node,
        scope: ParallelScope,
        above: _ChainMarks,
        names: frozenset[str],
    ) -> Decision:
        reason = self._alone_reason(item, above, names)
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

    def _alone_reason(
        self, item: pytest.Function, above: _ChainMarks, names: frozenset[str]
    ) -> str | None:
        """``names``: the item's own marker names."""
        if above.thread_unsafe or THREAD_UNSAFE_MARKER in names:
            return "marked thread_unsafe"
        implied = above.implied_fixtures
        if names:
            implied = implied.union(_implied_fixtures(names))
        unsafe_use, fixture_calls = self._fixture_reasons(item, implied)
        if unsafe_use is not None:
            return unsafe_use
        if self._reruns is None or self._reruns[0] is not item.config:
            self._reruns = (item.config, _reruns_counter(item.config))
        reruns_for = self._reruns[1]
        if reruns_for is not None and reruns_for(item):
            return "rerun on failure by pytest-rerunfailures"
        loops = self._event_loops
        if loops is None or loops.config is not item.config:
            loops = self._event_loops = _SharedEventLoops(item.config)
        shared_loop = loops.reason(item)
        if shared_loop is not None:
            return shared_loop
        if not _CONTEXT_AWARE_WARNINGS and (above.filterwarnings or "filterwarnings" in names):
            return "has filterwarnings marks (warning filters are process-wide here)"
        own = self._sources.first_call(getattr(item, "function", None))
        if own is not None:
            return own.what
        return fixture_calls

    def _fixture_reasons(
        self, item: pytest.Function, implied: frozenset[str]
    ) -> tuple[str | None, str | None]:
        """Why the fixtures ``item`` uses make it run alone: (it reaches an unsafe fixture,
        a fixture it reaches calls something process-wide), each None when not.

        A fixture is reached when the test requests it (arguments, usefixtures, autouse, a
        marker a plugin turns into a fixture) or a reached fixture requests it, except through
        a safe fixture: what a safe fixture requests or calls is trusted."""
        closure = item.fixturenames  # the whole closure, safe fixtures' requests included
        info = fixture_info(item)
        if info is None:
            return self._find_fixture_reasons(closure, info, implied)
        # The variants of a parametrized test share their fixture info: decide once for them.
        key = (id(info), implied, len(closure))
        known = self._fixture_reasons_by_info.get(key)
        if known is None or known[0] is not info:
            known = (info, self._find_fixture_reasons(closure, info, implied))
            self._fixture_reasons_by_info[key] = known
        return known[1]

    def _find_fixture_reasons(
        self, closure: Sequence[str], info: Any, implied: frozenset[str]
    ) -> tuple[str | None, str | None]:
        name2defs = info.name2fixturedefs if info is not None else {}
        safe = self.safe_fixtures | _idle_plugin_fixtures(closure, name2defs)
        unsafe = self.unsafe_fixtures.intersection(closure) | self.unsafe_fixtures.intersection(
            implied
        )
        calling: dict[str, _Calls] = {}
        for name in closure:
            defs = name2defs.get(name)
            if defs and name not in safe:
                calls = self._calls_of(name, defs)
                if calls is not None:
                    calling[name] = calls
        if not (unsafe - safe) and not calling:
            return None, None  # the common case: nothing to look into
        # Why each name is in the closure: walk it from what the test itself requests.
        roots = set(info.initialnames) if info is not None else set()
        roots |= implied
        requested_by = _reach(name2defs, roots, frozenset())
        # Names a plugin added to the closure after collection count as requested by the test.
        injected = [name for name in closure if name not in requested_by]
        if injected or not safe.isdisjoint(requested_by):
            roots.update(injected)
            requested_by = _reach(name2defs, roots, safe)
        uses = [
            name if name in roots else f"{name} (via {', '.join(sorted(requested_by[name]))})"
            for name in sorted(unsafe - safe)
            if name in requested_by
        ]
        called = sorted(name for name in calling if name in requested_by)
        return (
            "uses " + ", ".join(uses) if uses else None,
            f"fixture {called[0]} {calling[called[0]].what}" if called else None,
        )

    def _calls_of(self, name: str, defs: Sequence[Any]) -> _Calls | None:
        """The first process-wide call in the definitions a request for fixture ``name`` runs
        (the closest one, and those it overrides while it requests ``name`` itself)."""
        closest = defs[-1]
        try:
            return self._fixture_calls[closest]
        except KeyError:
            pass
        found = None
        for fixturedef in used_defs(name, defs):
            function = getattr(fixturedef, "func", None)
            if (getattr(function, "__module__", None) or "").startswith(_UNSCANNED_MODULES):
                continue
            found = self._sources.first_call(function)
            if found is not None:
                break
        self._fixture_calls[closest] = found
        return found

    def plan(self, items: Sequence[pytest.Item]) -> tuple[list[Group], dict[pytest.Item, object]]:
        """Split items into consecutive groups; also return the chain key (see Decision) of
        each item whose chain has other members."""
        groups: list[Group] = []
        chains: dict[pytest.Item, object] = {}
        current_key: object = None
        # The current group's class/module/package fixture definitions -> the node their
        # instance lives on (fixture_scopes.instance_holders).
        holders: dict[Any, pytest.Node | None] = {}
        decisions = [self.decide(item) for item in items]
        for index, (item, decision) in enumerate(zip(items, decisions, strict=True)):
            if (
                decision.key is not None
                and decision.key == current_key
                and _holders_agree(holders, item)
            ):
                groups[-1].items.append(item)
            else:
                holders = {}
                _holders_agree(holders, item)
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
        self._fixture_calls.clear()
        self._fixture_reasons_by_info.clear()
        self._event_loops = None
        self._reruns = None
        self._sources = _SourceScanner()
        return groups, chains


class _SourceScanner:
    """Finds process-wide calls in functions' source, reading each file at most once and
    searching a function only when its file mentions one of them."""

    def __init__(self) -> None:
        # file -> (the calls it mentions, its lines if it mentions any)
        self._files: dict[str, tuple[frozenset[_Calls], list[str]]] = {}
        self._found: dict[object, _Calls | None] = {}  # code object -> first call found

    def first_call(self, function: object) -> _Calls | None:
        """The first of ``_SCANNED_CALLS`` in the function's source (decorators included)."""
        try:
            code = inspect.unwrap(function).__code__  # type: ignore[arg-type]
        except (AttributeError, TypeError, ValueError):
            return None
        try:
            return self._found[code]
        except KeyError:
            pass
        found = self._found[code] = self._search(code)
        return found

    def _search(self, code: Any) -> _Calls | None:
        mentioned, lines = self._file(code.co_filename)
        wanted = [calls for calls in _SCANNED_CALLS if calls in mentioned]
        if not wanted:
            return None  # the common case: the file never mentions them
        try:
            body = "".join(inspect.getblock(lines[code.co_firstlineno - 1 :]))
        except (IndexError, SyntaxError, tokenize.TokenError):
            return wanted[0]
        return next((calls for calls in wanted if calls.pattern.search(body)), None)

    def _file(self, filename: str) -> tuple[frozenset[_Calls], list[str]]:
        known = self._files.get(filename)
        if known is None:
            try:
                with tokenize.open(filename) as file:
                    text = file.read()
            except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
                text = ""
            mentioned = frozenset(calls for calls in _SCANNED_CALLS if calls.mentioned_in(text))
            lines = text.splitlines(keepends=True) if mentioned else []
            known = self._files[filename] = (mentioned, lines)
        return known


class _SharedEventLoops:
    """pytest-asyncio: which tests run an event loop that other tests share.

    pytest-asyncio runs each async test, and each async fixture, on the loop of an
    ``asyncio.Runner`` held by a fixture of the loop's scope (``loop_scope``: the ``asyncio``
    marker's or ``asyncio_default_test_loop_scope`` for tests; the fixture's own,
    ``asyncio_default_fixture_loop_scope`` or the fixture's scope for fixtures). A
    function-scoped loop is the test's own: per-thread fixture state gives each pool test its
    runner (fixture_isolation). A class/module/package/session loop is shared, and an event
    loop is not thread-safe: two tests must never run it at once.

    Such tests run alone, rather than chained one after another in the pool: the shared loop
    is also run, on the main thread, by the setup and teardown of the class/module/session
    async fixtures on it, when the runner prepares a later test or closes a scope, which a
    chain of pool tests does not wait for. Alone, every run of a shared loop happens on the
    main thread with nothing else running, as in a sequential run; function-loop tests, sync
    tests and shared async fixtures (set up and torn down on the main thread) still run in the
    pool.

    A test counts when it is an async test on a wider loop, or when a function-scoped async
    fixture it uses runs on a wider loop (its setup and teardown run that loop on the test's
    thread). Wider-scoped async fixtures are not counted: the main thread sets them up.

    anyio's plugin keeps one runner (one event loop) for the whole process while any test or
    async fixture holds it (``anyio.pytest_plugin.get_runner``): every async test it runs, and
    every test with a function-scoped async fixture, shares it, so they run alone too."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._anyio = config.pluginmanager.has_plugin("anyio")
        self._async_fixtures: dict[Any, bool] = {}  # FixtureDef -> async function-scoped
        plugin = config.pluginmanager.get_plugin("asyncio")
        self._is_async_test = getattr(plugin, "is_async_test", None)
        if self._is_async_test is None:
            return
        mode = config.getoption("asyncio_mode", None) or config.getini("asyncio_mode")
        self._auto = mode == "auto"
        self._default_test = config.getini("asyncio_default_test_loop_scope") or "function"
        self._default_fixture = config.getini("asyncio_default_fixture_loop_scope") or None
        # FixtureDef -> its wider loop scope (None: none, or not an async fixture)
        self._fixture_loops: dict[Any, str | None] = {}

    def reason(self, item: pytest.Function) -> str | None:
        """Why ``item`` must run alone because of a shared event loop (None: it need not)."""
        if self._anyio and "anyio_backend" in item.fixturenames:
            shared = self._anyio_reason(item)
            if shared is not None:
                return shared
        if self._is_async_test is None:
            return None
        if self._is_async_test(item):
            scope = self._test_loop(item)
            if scope != "function":
                return f"runs on a {scope}-scoped asyncio event loop (shared with other tests)"
        name, scope = _first_fixture(item, self._fixture_loop)
        if scope is None:
            return None
        return (
            f"fixture {name} runs on a {scope}-scoped asyncio event loop (shared with other tests)"
        )

    def _anyio_reason(self, item: pytest.Function) -> str | None:
        function = getattr(item, "obj", None)
        inner = getattr(getattr(function, "hypothesis", None), "inner_test", None)
        if _is_async(function) or _is_async(getattr(inner, "_anyio_original_func", inner)):
            return "runs on anyio's event loop (its pytest plugin shares one among tests)"
        name, found = _first_fixture(item, self._async_function_fixture)
        if not found:
            return None
        return (
            f"fixture {name} runs on anyio's event loop (its pytest plugin shares one among tests)"
        )

    def _async_function_fixture(self, fixturedef: Any) -> bool:
        known = self._async_fixtures.get(fixturedef)
        if known is None:
            function = getattr(fixturedef, "func", None)
            known = self._async_fixtures[fixturedef] = fixturedef_scope(
                fixturedef
            ) is FUNCTION_SCOPE and _is_async(getattr(function, "__func__", function))
        return known

    def _test_loop(self, item: pytest.Function) -> str:
        marker = item.get_closest_marker("asyncio")
        kwargs = marker.kwargs if marker is not None else {}
        return kwargs.get("loop_scope") or kwargs.get("scope") or self._default_test

    def _fixture_loop(self, fixturedef: Any) -> str | None:
        try:
            return self._fixture_loops[fixturedef]
        except KeyError:
            pass
        scope = self._fixture_loops[fixturedef] = self._find_fixture_loop(fixturedef)
        return scope

    def _find_fixture_loop(self, fixturedef: Any) -> str | None:
        if fixturedef_scope(fixturedef) is not FUNCTION_SCOPE:
            return None  # set up and torn down on the main thread
        function = getattr(fixturedef, "func", None)
        function = getattr(function, "__func__", function)
        if not getattr(function, "_force_asyncio_fixture", False) and not (
            self._auto
            and (inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function))
        ):
            return None
        default = self._default_fixture
        if default == "fixture-scope":
            default = fixturedef.scope
        scope = getattr(function, "_loop_scope", None) or default or fixturedef.scope
        return None if scope == "function" else scope


def _first_fixture(item: pytest.Function, probe: Callable[[Any], Any]) -> tuple[str, Any]:
    """The first fixture definition ``item`` runs for which ``probe`` gives a true value:
    (its name, that value); ("", None) when there is none."""
    info = fixture_info(item)
    if info is not None:
        for name in item.fixturenames:
            for fixturedef in used_defs(name, info.name2fixturedefs.get(name) or ()):
                found = probe(fixturedef)
                if found:
                    return name, found
    return "", None


def _is_async(function: object) -> bool:
    return inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)


def _idle_plugin_fixtures(
    closure: Sequence[str], name2defs: dict[str, Sequence[Any]]
) -> frozenset[str]:
    """The fixtures of _CONDITIONALLY_UNSAFE in ``closure`` that do nothing unsafe for this
    test: every definition a request for them runs is the plugin's, and the test does not use
    the fixture that makes them act."""
    if _CONDITIONAL_NAMES.isdisjoint(closure):
        return _NO_NAMES  # the common case
    idle = set()
    for (name, module), trigger in _CONDITIONALLY_UNSAFE.items():
        if name not in closure or trigger in closure:
            continue
        defs = list(used_defs(name, name2defs.get(name) or ()))
        if defs and all(
            getattr(getattr(fixturedef, "func", None), "__module__", None) == module
            for fixturedef in defs
        ):
            idle.add(name)
    return frozenset(idle)


def _implied_fixtures(marker_names: Iterable[str]) -> frozenset[str]:
    return frozenset(_MARKER_FIXTURES[name] for name in marker_names if name in _MARKER_FIXTURES)


def _reach(
    name2defs: dict[str, Sequence[Any]], roots: Iterable[str], safe: frozenset[str]
) -> dict[str, set[str]]:
    """The fixture names reachable from ``roots`` through what each fixture requests, without
    looking into ``safe`` fixtures; each with the fixtures that request it (none for a root
    no reached fixture requests)."""
    requested_by: dict[str, set[str]] = {name: set() for name in roots}
    todo = list(requested_by)
    while todo:
        name = todo.pop()
        if name in safe:
            continue
        for fixturedef in used_defs(name, name2defs.get(name) or ()):
            for dependency in fixturedef.argnames:
                if dependency == name:
                    continue  # the overridden definition, walked by used_defs
                known = requested_by.get(dependency)
                if known is None:
                    requested_by[dependency] = {name}
                    todo.append(dependency)
                else:
                    known.add(name)
    return requested_by


_SCOPE_NODE_TYPES = {
    Scope.Class: pytest.Class,
    Scope.Module: pytest.Module,
    Scope.Package: pytest.Package,
}


def _holders_agree(holders: dict[Any, pytest.Node | None], item: pytest.Item) -> bool:
    """Would ``item`` get every class/module/package fixture instance it uses from the same
    node as the group's other tests (``holders``)? Records its holders when it would. Tests of
    two classes using one class fixture of a conftest cannot overlap: the second class would be
    handed the first one's cached instance (sequentially the first is torn down before)."""
    mine = instance_holders(item)
    for fixturedef, node in mine:
        if fixturedef in holders and (node is None or holders[fixturedef] is not node):
            return False
    for fixturedef, node in mine:
        holders[fixturedef] = node
    return True


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


def _reruns_counter(config: pytest.Config) -> Callable[[pytest.Item], Any] | None:
    """pytest-rerunfailures' count of reruns for a test (None: not installed). A test it would
    rerun when it fails runs alone: its own pytest_runtest_protocol runs and logs the attempts,
    which only works on the main thread with nothing else running (in the pool our protocol
    runs instead and the test would not be rerun)."""
    plugin = config.pluginmanager.get_plugin("rerunfailures")
    return getattr(plugin, "get_reruns_count", None)
