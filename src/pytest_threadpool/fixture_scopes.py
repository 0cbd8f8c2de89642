"""Which fixtures of an item live longer than the item (class/module/package/session)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pytest_threadpool.pytest_compat import (
    FUNCTION_SCOPE,
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
