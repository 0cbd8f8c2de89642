"""Which fixtures of an item live longer than the item (class/module/package/session)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from pytest_threadpool.pytest_compat import (
    FUNCTION_SCOPE,
    Scope,
    fixture_info,
    fixturedef_scope,
    param_scopes,
)


def wider_scoped_fixtures(item: pytest.Item) -> Iterator[tuple[str, Any]]:
    """(name, effective scope) of each fixture ``item`` uses whose scope is wider than function,
    in pytest's setup order. A ``parametrize(..., scope=...)`` argument's scope wins."""
    info = fixture_info(item)
    if info is None:
        return
    callspec = getattr(item, "callspec", None)
    for name in item.fixturenames:
        defs = info.name2fixturedefs.get(name)
        if not defs:
            continue
        scope = fixturedef_scope(defs[-1])
        if callspec is not None and name in param_scopes(callspec):
            scope = param_scopes(callspec)[name]
        if scope is not FUNCTION_SCOPE:
            yield name, scope


def prepared_fixtures(item: pytest.Item) -> Iterator[tuple[str, Any]]:
    """The fixtures of ``wider_scoped_fixtures`` that live on a node above ``item``: a class
    fixture of a test outside any class lives on the test itself (pytest makes one per test and
    tears it down with the test), so it is set up with the test, not ahead of it."""
    in_class: bool | None = None
    for name, scope in wider_scoped_fixtures(item):
        if scope is Scope.Class:
            if in_class is None:
                in_class = item.getparent(pytest.Class) is not None
            if not in_class:
                continue
        yield name, scope


def instance_holders(item: pytest.Item) -> list[tuple[Any, pytest.Node | None]]:
    """(fixture definition, the node its instance lives on) for each class, module or package
    fixture definition ``item`` runs. pytest keeps one instance per definition and hands the
    cached one to whoever asks until its node is torn down, so two tests may only overlap when
    they would get it from the same node. None: a class fixture of a test outside any class
    (pytest makes one per test)."""
    info = fixture_info(item)
    if info is None:
        return []
    callspec = getattr(item, "callspec", None)
    scoped_params = param_scopes(callspec) if callspec is not None else {}
    holders = []
    name2defs = info.name2fixturedefs
    for name in item.fixturenames:
        defs = name2defs.get(name)
        if not defs:
            continue
        closest = defs[-1]
        if fixturedef_scope(closest) is FUNCTION_SCOPE and name not in closest.argnames:
            continue  # the common case: a function fixture that overrides nothing it runs
        if name in scoped_params:
            continue  # parametrize(scope=...): told apart by parameter (grouping)
        for fixturedef in used_defs(name, defs):
            scope = fixturedef_scope(fixturedef)
            if scope is Scope.Class:
                holders.append((fixturedef, item.getparent(pytest.Class)))
            elif scope is Scope.Module:
                holders.append((fixturedef, item.getparent(pytest.Module)))
            elif scope is Scope.Package:
                holders.append((fixturedef, _package_of(item, fixturedef)))
    return holders


def used_defs(name: str, defs: Sequence[Any]) -> Iterator[Any]:
    """The definitions of fixture ``name`` that a request for it runs: the closest one, and
    each one it overrides while the overriding one requests ``name`` itself."""
    for fixturedef in reversed(defs):
        yield fixturedef
        if name not in fixturedef.argnames:
            return


def _package_of(item: pytest.Item, fixturedef: Any) -> pytest.Node:
    """Where pytest keeps a package fixture: the package its conftest defines, else the
    session (pytest's get_scope_package)."""
    baseid = getattr(fixturedef, "baseid", None)
    parent = item.parent
    while parent is not None:
        if isinstance(parent, pytest.Package) and parent.nodeid == baseid:
            return parent
        parent = parent.parent
    return item.session
