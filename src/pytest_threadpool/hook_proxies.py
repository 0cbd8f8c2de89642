"""``item.ihook`` resolved once per path during a threaded run.

Every ``item.ihook`` access asks the session for the hook proxy of the item's path, which walks
the conftest bookkeeping and stats the path. A test's protocol does that a dozen times, on every
worker at once. Collection is over when the run starts, so the answer for a path cannot change:
it is computed once and shared (reads of a dict are safe across threads).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from pytest_threadpool.dict_reads import lookup


@contextmanager
def cached_hook_proxies(session: pytest.Session) -> Iterator[None]:
    original = session.gethookproxy
    cache: dict[Any, Any] = {}

    def gethookproxy(fspath: os.PathLike[str]) -> Any:
        proxy = lookup(cache, fspath)
        if proxy is None:
            proxy = cache[fspath] = original(fspath)
        return proxy

    session.gethookproxy = gethookproxy  # type: ignore[method-assign]
    try:
        yield
    finally:
        del session.gethookproxy
