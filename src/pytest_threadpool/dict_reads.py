"""Reading dicts that another thread created or filled, without ``dict.get``.

On free-threaded 3.13, ``dict.get`` holds the dict's lock for the whole call, and the lookup
inside it locks the same dict again when the dict is read from a non-owning thread for the first
time or when the value's reference count is not shared yet: the thread waits on its own lock
until it parks (tens of microseconds, measured at ~30 µs on the reference machine). Subscription
and ``in`` do not take the outer lock, so they stay fast. Every per-test lookup of a dict that
crosses threads (main thread <-> workers) goes through ``lookup``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D")


def lookup(mapping: Mapping[K, V], key: K, default: D = None) -> V | D:  # type: ignore[assignment]
    try:
        return mapping[key]
    except KeyError:
        return default


class SharedValuePins:
    """References, held for a session, to every value of some main-thread mappings.

    A value read from another thread's dict takes the locked path above while its reference
    count is not shared (no other thread holds a reference; the shared count is zero). One live
    reference from any non-owning thread makes it shared for every thread. pytest itself calls
    ``dict.get`` on main-thread dicts for every test it runs (``sys.modules.get("unittest")``
    for each report, ``Config.getoption`` through ``_opt2dest``): pinning their values once, from
    the first worker, keeps those calls on the fast path on all workers. One list for the pool
    rather than one per worker: with 64 workers, per-worker copies cost ~4 MiB of RSS."""

    def __init__(self, mappings: Iterable[Mapping[object, object]]) -> None:
        self._mappings = list(mappings)
        self._lock = threading.Lock()
        self.values: list[object] | None = None

    def pin_from_this_thread(self) -> None:
        """Call on a worker; after the first call, one attribute check."""
        if self.values is not None:
            return
        with self._lock:
            if self.values is None:
                values: list[object] = []
                for mapping in self._mappings:
                    # list.extend of a dict's values holds the dict's lock: no copy needed
                    # against concurrent imports.
                    values.extend(mapping.values())
                self.values = values
