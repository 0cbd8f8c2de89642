"""Longest-first ordering from durations recorded in pytest's cache."""

from __future__ import annotations

import pytest

CACHE_KEY = "threadpool/durations"


class DurationHistory:
    """Per-test run times from earlier sessions (``.pytest_cache``), updated by this one."""

    def __init__(self, config: pytest.Config) -> None:
        self._cache = getattr(config, "cache", None)
        self._known: dict[str, float] = {}
        if self._cache is not None:
            stored = self._cache.get(CACHE_KEY, {})
            if isinstance(stored, dict):
                self._known = {k: float(v) for k, v in stored.items() if _is_number(v)}
        self._updates: dict[str, float] = {}

    def priority(self, item: pytest.Item) -> float:
        """Higher starts first: the longest known tests; unknown ones keep collection order."""
        return self._known.get(item.nodeid, 0.0)

    def record(
        self, item: pytest.Item, reports: list[pytest.TestReport], run_time: float | None = None
    ) -> None:
        if run_time is None:
            run_time = sum(report.duration for report in reports)
        self._updates[item.nodeid] = round(run_time, 6)

    def save(self) -> None:
        if self._cache is None or not self._updates:
            return
        merged = dict(self._known)
        merged.update(self._updates)
        self._cache.set(CACHE_KEY, merged)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
