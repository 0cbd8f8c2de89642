"""Reading dicts that another thread created or filled, without ``dict.get``.

On free-threaded 3.13, ``dict.get`` holds the dict's lock for the whole call, and the lookup
inside it locks the same dict again when the dict is read from a non-owning thread for the first
time or when the value's reference count is not shared yet: the thread waits on its own lock
until it parks (tens of microseconds, measured at ~30 µs on the reference machine). Subscription
and ``in`` do not take the outer lock, so they stay fast. Every per-test lookup of a dict that
crosses threads (main thread <-> workers) goes through ``lookup``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D")


def lookup(mapping: Mapping[K, V], key: K, default: D = None) -> V | D:  # type: ignore[assignment]
    try:
        return mapping[key]
    except KeyError:
        return default
