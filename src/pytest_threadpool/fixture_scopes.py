"""Which fixtures of an item live longer than the item (class/module/package/session)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _pytest.scope import Scope


def wider_scoped_fixtures(item: pytest.Item) -> Iterator[tuple[str, Scope]]:
    """(name, effective scope) of each fixture ``item`` uses whose scope is wider than function,
    in pytest's setup order. A ``parametrize(..., scope=...)`` argument's scope wins."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return
    callspec = getattr(item, "callspec", None)
    for name in item.fixturenames:
        defs = info.name2fixturedefs.get(name)
        if not defs:
            continue
        scope = defs[-1]._scope
        if callspec is not None and name in callspec._arg2scope:
            scope = callspec._arg2scope[name]
        if scope is not Scope.Function:
            yield name, scope
