"""The public markers (parallelizable, not_parallelizable, parallel_only) and their scopes."""

from __future__ import annotations

import enum

import pytest

MARKER_PARALLELIZABLE = "parallelizable"
MARKER_NOT_PARALLELIZABLE = "not_parallelizable"
MARKER_PARALLEL_ONLY = "parallel_only"


class ParallelScope(enum.StrEnum):
    """What a ``parallelizable`` marker lets run concurrently."""

    CHILDREN = "children"  # every test nested under the marked node
    PARAMETERS = "parameters"  # the parametrized variants of one test function
    ALL = "all"  # children and parameters

    @classmethod
    def parse(cls, value: object) -> ParallelScope:
        """Turn a marker argument into a scope; raise ValueError naming the accepted values."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            try:
                return cls(value.strip().lower())
            except ValueError:
                pass
        raise ValueError(
            f"invalid parallelizable scope {value!r}; use one of: {', '.join(s.value for s in cls)}"
        )


class PytestThreadpoolWarning(pytest.PytestWarning):
    """Warnings issued by pytest-threadpool (marker misuse, options it cannot honour)."""


MARKER_LINES = (
    f"{MARKER_PARALLELIZABLE}(scope): run tests under this node concurrently with --threadpool; "
    "scope is one of 'children', 'parameters', 'all'",
    f"{MARKER_NOT_PARALLELIZABLE}: always run this test (or every test under this node) alone, "
    "overriding inherited parallelizable markers",
    f"{MARKER_PARALLEL_ONLY}: skip this test unless --threadpool is given",
)

parallelizable = pytest.mark.parallelizable
"""``@parallelizable("children" | "parameters" | "all")``: ``pytest.mark.parallelizable``."""

not_parallelizable = pytest.mark.not_parallelizable
"""``@not_parallelizable`` — same as ``pytest.mark.not_parallelizable``."""

parallel_only = pytest.mark.parallel_only
"""``@parallel_only`` — same as ``pytest.mark.parallel_only``."""
