"""Function-scoped fixtures private to the thread that runs the test.

pytest keeps one ``cached_result`` and one finalizer list per fixture definition. For
function-scoped definitions we keep them per thread instead (each thread runs one item at a time,
so this is per item), which also covers fixtures requested with ``request.getfixturevalue``.

Plugins change definitions too while a fixture is set up: pytest-asyncio's
``pytest_fixture_setup`` swaps ``fixturedef.func`` for a wrapper bound to the test's event loop
and puts it back afterwards. Any other attribute assigned (or deleted) on a function-scoped
definition by a thread that holds that fixture (from its setup to its teardown) is therefore
the thread's as well: the thread sees its own value, every other thread the definition's, and
the thread forgets its values when it finishes the fixture (as it forgets the cached value).
A class-level descriptor for such a name is installed the first time one is assigned, so reading
attributes nobody assigns costs nothing extra. Names the class itself defines (methods,
properties) are left alone.

Wider-scoped definitions keep pytest's single state; reaching them from a worker is serialised.
The ``request`` fixture's definition is made anew for each request, so it is already private to
one test: it keeps its state on itself (kept per thread, it would keep every finished test's
request, and all that the request refers to, alive until the thread ends).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pytest_threadpool.dict_reads import lookup
from pytest_threadpool.pytest_compat import (
    FIXTUREDEF_FINALIZERS_FIELD,
    FIXTUREDEF_SCOPE_FIELD,
    FUNCTION_SCOPE,
    FixtureDef,
    RequestFixtureDef,
)
from pytest_threadpool.setupstate import reraise_shared


class _PerThread(threading.local):
    def __init__(self) -> None:
        # fixture definition -> [cached_result, finalizers]
        self.state: dict[FixtureDef, list[Any]] = {}
        # fixture definition -> {attribute name: this thread's value (or _DELETED)}
        self.fields: dict[FixtureDef, dict[str, Any]] = {}


_per_thread = _PerThread()
_ABSENT: Any = object()
_DELETED: Any = object()  # this thread deleted the attribute
# pytest's own per-thread state: properties installed for the run handle these.
_PYTEST_STATE = frozenset({"cached_result", FIXTUREDEF_FINALIZERS_FIELD})


def _is_function_scoped(fixturedef: FixtureDef) -> bool:
    return lookup(fixturedef.__dict__, FIXTUREDEF_SCOPE_FIELD) is FUNCTION_SCOPE


def _state_per_thread(fixturedef: FixtureDef) -> bool:
    return _is_function_scoped(fixturedef) and type(fixturedef) is not RequestFixtureDef


def _get_cached_result(self: FixtureDef) -> Any:
    if _state_per_thread(self):
        entry = _per_thread.state.get(self)
        return None if entry is None else entry[0]
    return lookup(self.__dict__, "cached_result")


def _set_cached_result(self: FixtureDef, value: Any) -> None:
    if not _state_per_thread(self):
        self.__dict__["cached_result"] = value
        return
    state = _per_thread.state
    entry = state.get(self)
    if entry is None:
        if value is not None:
            state[self] = [value, []]
        return
    entry[0] = value
    _forget_if_finished(self)  # nothing left for this thread: don't keep the definition alive


def _get_finalizers(self: FixtureDef) -> list[Callable[[], object]]:
    if not _state_per_thread(self):
        return self.__dict__[FIXTUREDEF_FINALIZERS_FIELD]
    state = _per_thread.state
    entry = state.get(self)
    if entry is None:
        entry = state[self] = [None, []]
    return entry[1]


def _forget_if_finished(fixturedef: FixtureDef) -> None:
    """Drop the calling thread's entry once it holds neither a value nor finalizers (pytest's
    ``finish`` reads the finalizer list again after resetting the value, which re-creates it):
    a thread would otherwise keep an entry for every definition it ever ran. The attributes the
    thread assigned on the definition go with it: they belonged to the fixture's instance."""
    local = _per_thread
    state = local.state
    entry = state.get(fixturedef)
    if entry is None or (entry[0] is None and not entry[1]):
        if entry is not None:
            del state[fixturedef]
        if local.fields:
            local.fields.pop(fixturedef, None)


class _PerThreadField:
    """Stands in, on the class, for an instance attribute that a thread assigned on a
    function-scoped definition during the run: reads give the calling thread's value if it has
    one, else the instance's own; plain assignments (wider-scoped definitions, the instance's
    own value) go to the instance's ``__dict__`` as without it."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        __tracebackhide__ = True
        if obj is None:
            return self
        fields = _per_thread.fields
        if fields:
            own = fields.get(obj)
            if own is not None:
                value = own.get(self.name, _ABSENT)
                if value is _DELETED:
                    raise AttributeError(self.name)
                if value is not _ABSENT:
                    return value
        value = lookup(obj.__dict__, self.name, _ABSENT)
        if value is _ABSENT:
            raise AttributeError(f"{type(obj).__name__!r} object has no attribute {self.name!r}")
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.name] = value

    def __delete__(self, obj: Any) -> None:
        __tracebackhide__ = True
        if obj.__dict__.pop(self.name, _ABSENT) is _ABSENT:
            raise AttributeError(self.name)


# Names given a _PerThreadField on FixtureDef during the run, and whether a class defines a
# name itself (its own methods and properties are left alone).
_installed: dict[str, _PerThreadField] = {}
_class_names: dict[tuple[type, str], bool] = {}
_install_lock = threading.Lock()


def _defined_by_class(cls: type, name: str) -> bool:
    key = (cls, name)
    known = lookup(_class_names, key)
    if known is None:
        known = any(
            name in klass.__dict__ and not isinstance(klass.__dict__[name], _PerThreadField)
            for klass in cls.__mro__
        )
        with _install_lock:
            _class_names[key] = known
    return known


def _own_fields(fixturedef: FixtureDef, name: str) -> dict[str, Any] | None:
    """The calling thread's fields of ``fixturedef`` when ``name`` is kept per thread there
    (None: it is the definition's own). Only while the thread holds the fixture (from the
    first finalizer pytest's ``execute`` registers, before ``pytest_fixture_setup``, until
    ``finish``): a definition made during the run fills its fields for every thread."""
    if (
        fixturedef not in _per_thread.state
        or not _state_per_thread(fixturedef)
        or _defined_by_class(type(fixturedef), name)
    ):
        return None
    if name not in _installed:
        with _install_lock:
            if name not in _installed:
                field = _PerThreadField(name)
                setattr(FixtureDef, name, field)
                _installed[name] = field
    fields = _per_thread.fields
    own = fields.get(fixturedef)
    if own is None:
        own = fields[fixturedef] = {}
    return own


def _setattr(self: FixtureDef, name: str, value: Any) -> None:
    """``FixtureDef.__setattr__`` during a threaded run."""
    if name in _PYTEST_STATE:
        object.__setattr__(self, name, value)
        return
    own = _own_fields(self, name)
    if own is None:
        object.__setattr__(self, name, value)
    else:
        own[name] = value


def _delattr(self: FixtureDef, name: str) -> None:
    """``FixtureDef.__delattr__`` during a threaded run."""
    __tracebackhide__ = True
    own = None if name in _PYTEST_STATE else _own_fields(self, name)
    if own is None:
        object.__delattr__(self, name)
        return
    mine = own.get(name, _ABSENT)
    if mine is _DELETED or (mine is _ABSENT and name not in self.__dict__):
        raise AttributeError(name)
    own[name] = _DELETED


def _uninstall_fields() -> None:
    with _install_lock:
        for name in _installed:
            delattr(FixtureDef, name)
        _installed.clear()
        _class_names.clear()


def _set_finalizers(self: FixtureDef, value: list[Callable[[], object]]) -> None:
    if not _state_per_thread(self):
        self.__dict__[FIXTUREDEF_FINALIZERS_FIELD] = value
    elif value:
        _get_finalizers(self)[:] = value


@contextmanager
def isolated_function_fixtures(shared_lock: threading.RLock) -> Iterator[None]:
    """Install per-thread fixture state on FixtureDef for the duration of a threaded run."""
    original_execute = FixtureDef.execute
    original_finish = FixtureDef.finish

    def execute(self: FixtureDef, request: Any) -> Any:
        __tracebackhide__ = True
        if _is_function_scoped(self):
            # The thread holds the fixture from here (pytest < 9 registers no finalizer of its
            # own before pytest_fixture_setup, where plugins change the definition).
            state = _per_thread.state
            if self not in state and _state_per_thread(self):
                state[self] = [None, []]
                try:
                    return original_execute(self, request)
                finally:
                    _forget_if_finished(self)
            return original_execute(self, request)
        with shared_lock:
            cached = lookup(self.__dict__, "cached_result")
            if cached is not None and cached[2] is not None:
                # A cached error that other tests may be raising right now: raise a copy.
                try:
                    return original_execute(self, request)
                except BaseException as exc:
                    if exc is not cached[2][0]:
                        raise
                    error = exc
            else:
                return original_execute(self, request)
        reraise_shared(error, cached[2][1])

    def finish(self: FixtureDef, request: Any) -> None:
        __tracebackhide__ = True
        try:
            original_finish(self, request)
        finally:
            if _state_per_thread(self):
                _forget_if_finished(self)

    FixtureDef.cached_result = property(_get_cached_result, _set_cached_result)  # type: ignore[assignment,method-assign]
    setattr(FixtureDef, FIXTUREDEF_FINALIZERS_FIELD, property(_get_finalizers, _set_finalizers))
    FixtureDef.execute = execute  # type: ignore[method-assign]
    FixtureDef.finish = finish  # type: ignore[method-assign]
    FixtureDef.__setattr__ = _setattr  # type: ignore[method-assign,assignment]
    FixtureDef.__delattr__ = _delattr  # type: ignore[method-assign,assignment]
    if RequestFixtureDef is not None:
        # Made for every request of ``request`` (pytest >= 9), its state already private: its
        # attribute writes keep the C slots (object's), not a Python call each.
        RequestFixtureDef.__setattr__ = object.__setattr__  # type: ignore[method-assign]
        RequestFixtureDef.__delattr__ = object.__delattr__  # type: ignore[method-assign]
    try:
        yield
    finally:
        if RequestFixtureDef is not None:
            del RequestFixtureDef.__setattr__
            del RequestFixtureDef.__delattr__
        del FixtureDef.__setattr__
        del FixtureDef.__delattr__
        _uninstall_fields()
        FixtureDef.execute = original_execute  # type: ignore[method-assign]
        FixtureDef.finish = original_finish  # type: ignore[method-assign]
        delattr(FixtureDef, FIXTUREDEF_FINALIZERS_FIELD)
        del FixtureDef.cached_result
        _per_thread.state.clear()
        _per_thread.fields.clear()
