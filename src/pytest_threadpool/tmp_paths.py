"""``tmp_path`` in threaded runs.

pytest creates the base directory lazily on first use; two tests asking for it at the same
moment would each create one, so that first creation is serialised. And every numbered directory
(``tmp_path``, ``tmp_path_factory.mktemp``) is found by scanning the base directory for names
with the test's prefix, in Python, once per test: O(n^2) over a session. The engine does that
scan (same result, see ``_engine.prefixed_suffixes``); pytest's own code numbers and creates."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pytest_threadpool import _engine
from pytest_threadpool.pytest_compat import TempPathFactory, basetemp, pytest_pathlib


@contextmanager
def serialised_basetemp() -> Iterator[None]:
    original = TempPathFactory.getbasetemp
    lock = threading.Lock()

    def getbasetemp(self: TempPathFactory) -> Path:
        known = basetemp(self)
        if known is not None:
            return known
        with lock:
            return original(self)

    TempPathFactory.getbasetemp = getbasetemp  # type: ignore[method-assign]
    try:
        yield
    finally:
        TempPathFactory.getbasetemp = original  # type: ignore[method-assign]


@contextmanager
def numbered_dir_scan_in_c() -> Iterator[None]:
    original = pytest_pathlib.find_suffixes

    def find_suffixes(root: Path, prefix: str) -> Iterable[str]:
        try:
            suffixes = _engine.prefixed_suffixes(root, prefix)
        except (OSError, TypeError, ValueError):
            suffixes = None  # pytest's scan decides (and raises its own errors)
        return original(root, prefix) if suffixes is None else suffixes

    pytest_pathlib.find_suffixes = find_suffixes
    try:
        yield
    finally:
        pytest_pathlib.find_suffixes = original
