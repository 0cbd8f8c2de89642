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


class _Pins(threading.local):
    values: list[object] | None = None


_pins = _Pins()


def pin_values_for_this_thread(mappings: Iterable[Mapping[object, object]]) -> None:
    """Hold, from the calling worker, a reference to every value of ``mappings``.

    A value read from another thread's dict takes the locked path above while its reference
    count is not shared; a live reference from a second thread makes it shared. pytest itself
    calls ``dict.get`` on main-thread dicts for every test it runs (``sys.modules.get("unittest")``
    for each report, ``Config.getoption`` through ``_opt2dest``); pinning their values keeps those
    calls on the fast path. Cheap after the first call on a thread (one thread-local check)."""
    if _pins.values is None:
        values: list[object] = []
        for mapping in mappings:
            values.extend(dict(mapping).values())
        _pins.values = values
