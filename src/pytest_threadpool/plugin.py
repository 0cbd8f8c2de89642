"""pytest entry point (``-p no:threadpool`` disables it): registers options and markers and
hands control to the runner when ``--threadpool`` is given."""

from __future__ import annotations

import pytest

from pytest_threadpool import options
from pytest_threadpool.markers import MARKER_LINES, MARKER_PARALLEL_ONLY

SETTINGS_KEY = pytest.StashKey[options.Settings]()


def pytest_addoption(parser: pytest.Parser) -> None:
    options.addoption(parser)


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKER_LINES:
        config.addinivalue_line("markers", line)
    config.stash[SETTINGS_KEY] = options.load(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    settings = config.stash[SETTINGS_KEY]
    if settings.enabled:
        return
    skip = pytest.mark.skip(reason="parallel_only: run with --threadpool to execute this test")
    for item in items:
        if item.get_closest_marker(MARKER_PARALLEL_ONLY) is not None:
            item.add_marker(skip)
