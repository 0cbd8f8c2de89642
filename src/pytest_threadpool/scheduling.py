"""Longest-first ordering from durations recorded in pytest's cache, and which tests are
CPU-bound (on a GIL build those gain nothing from threads and lose to GIL contention, so the
runner runs them one at a time while I/O-bound tests still overlap)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from pytest_threadpool import _engine

CACHE_KEY = "threadpool/durations"
CPU_CACHE_KEY = "threadpool/cpu-share"
# Share of a test's wall time spent on its own thread's CPU above which it counts as CPU-bound.
# On a GIL build a CPU-bound test that shared the GIL with k others measures about 1/(k+1), so
# the bar is low; I/O-bound tests (sleeping, waiting on sockets) measure a few percent.
CPU_BOUND_SHARE = 0.2
# Only a GIL build asks which tests are CPU-bound: a free-threaded one neither loads nor records
# CPU shares (nor measures its tests' thread CPU time).
TRACKS_CPU_SHARE = not _engine.FREE_THREADED


class _StoredValues:
    """One cache entry (node id -> number): the session's tests keyed by their items' own node
    id strings (not the decoder's copies: a big suite would hold each id twice), and the
    entries of tests outside this session kept as loaded, to be written back unchanged."""

    def __init__(self, cache: pytest.Cache | None, key: str, items: Sequence[pytest.Item]):
        self._cache = cache
        self._key = key
        stored = cache.get(key, {}) if cache is not None else {}
        if not isinstance(stored, dict):
            stored = {}
        self.values: dict[str, float] = {}
        for item in items:
            value = stored.pop(item.nodeid, None)
            if _is_number(value):
                self.values[item.nodeid] = float(value)
        self._others = {k: v for k, v in stored.items() if _is_number(v)}
        self._changed = False

    def set(self, nodeid: str, value: float) -> None:
        self.values[nodeid] = value
        self._changed = True

    def save(self) -> None:
        if self._changed and self._cache is not None:
            self._cache.set(self._key, {**self._others, **self.values})


class DurationHistory:
    """Per-test run times from earlier sessions (``.pytest_cache``), updated by this one."""

    def __init__(self, config: pytest.Config, items: Sequence[pytest.Item]) -> None:
        cache = getattr(config, "cache", None)
        self._durations = _StoredValues(cache, CACHE_KEY, items)
        self._cpu_share = _StoredValues(cache, CPU_CACHE_KEY, items) if TRACKS_CPU_SHARE else None

    def cpu_bound(self, item: pytest.Item) -> bool:
        """Did this test spend most of its last run computing on its own thread?"""
        if self._cpu_share is None:
            return False
        return self._cpu_share.values.get(item.nodeid, 0.0) >= CPU_BOUND_SHARE

    def priority(self, item: pytest.Item) -> float:
        """Higher starts first: the longest known tests; unknown ones keep collection order.
        A test's entry changes only once it has run, so this stays its last session's time."""
        return self._durations.values.get(item.nodeid, 0.0)

    def record(
        self,
        item: pytest.Item,
        reports: list[pytest.TestReport],
        run_time: float | None = None,
        cpu_time: float | None = None,
    ) -> None:
        if run_time is None:
            run_time = sum(report.duration for report in reports)
        nodeid = item.nodeid  # a property (pytest 9 builds it from the node's id): read once
        self._durations.set(nodeid, round(run_time, 6))
        if self._cpu_share is not None and cpu_time is not None and run_time > 0:
            self._cpu_share.set(nodeid, round(min(cpu_time / run_time, 1.0), 3))

    def save(self) -> None:
        self._durations.save()
        if self._cpu_share is not None:
            self._cpu_share.save()


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
