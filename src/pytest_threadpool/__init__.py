"""pytest-threadpool: run pytest tests in a thread pool driven by a C engine.

Public helpers::

    from pytest_threadpool import parallelizable, not_parallelizable, ParallelScope
"""

from pytest_threadpool.markers import (
    ParallelScope,
    PytestThreadpoolWarning,
    not_parallelizable,
    parallel_only,
    parallelizable,
)

__all__ = [
    "ParallelScope",
    "PytestThreadpoolWarning",
    "not_parallelizable",
    "parallel_only",
    "parallelizable",
]
