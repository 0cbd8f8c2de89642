"""Longest-first ordering from durations recorded in pytest's cache, and which tests are
CPU-bound (on a GIL build those gain nothing from threads and lose to GIL contention, so the
runner runs them one at a time while I/O-bound tests still overlap)."""

from __future__ import annotations

import pytest

CACHE_KEY = "threadpool/durations"
CPU_CACHE_KEY = "threadpool/cpu-share"
# Share of a test's wall time spent on its own thread's CPU above which it counts as CPU-bound.
# On a GIL build a CPU-bound test that shared the GIL with k others measures about 1/(k+1), so
# the bar is low; I/O-bound tests (sleeping, waiting on sockets) measure a few percent.
CPU_BOUND_SHARE = 0.2


class DurationHistory:
    """Per-test run times from earlier sessions (``.pytest_cache``), updated by this one."""

    def __init__(self, config: pytest.Config) -> None:
        self._cache = getattr(config, "cache", None)
        self._known = self._load(CACHE_KEY)
        self._cpu_share = self._load(CPU_CACHE_KEY)
        self._updates: dict[str, float] = {}
        self._cpu_updates: dict[str, float] = {}

    def _load(self, key: str) -> dict[str, float]:
        stored = self._cache.get(key, {}) if self._cache is not None else {}
        if not isinstance(stored, dict):
            return {}
        return {k: float(v) for k, v in stored.items() if _is_number(v)}

    def cpu_bound(self, item: pytest.Item) -> bool:
        """Did this test spend most of its last run computing on its own thread?"""
        return self._cpu_share.get(item.nodeid, 0.0) >= CPU_BOUND_SHARE

    def priority(self, item: pytest.Item) -> float:
        """Higher starts first: the longest known tests; unknown ones keep collection order."""
        return self._known.get(item.nodeid, 0.0)

    def record(
        self,
        item: pytest.Item,
        reports: list[pytest.TestReport],
        run_time: float | None = None,
        cpu_time: float | None = None,
    ) -> None:
        if run_time is None:
            run_time = sum(report.duration for report in reports)
        self._updates[item.nodeid] = round(run_time, 6)
        if cpu_time is not None and run_time > 0:
            self._cpu_updates[item.nodeid] = round(min(cpu_time / run_time, 1.0), 3)

    def save(self) -> None:
        if self._cache is None:
            return
        for key, known, updates in (
            (CACHE_KEY, self._known, self._updates),
            (CPU_CACHE_KEY, self._cpu_share, self._cpu_updates),
        ):
            if updates:
                self._cache.set(key, {**known, **updates})


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
