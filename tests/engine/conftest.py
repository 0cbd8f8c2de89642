"""Shared fixtures for the direct engine tests (no plugin involvement)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap

import pytest

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


@pytest.fixture(autouse=True)
def _gil_stays_disabled():
    """On the free-threaded build, nothing the engine does may re-enable the GIL."""
    yield
    if FREE_THREADED:
        assert not sys._is_gil_enabled(), "the GIL was re-enabled"


@pytest.fixture
def run_py():
    """Run a Python snippet in a fresh interpreter; returns the CompletedProcess."""

    def run(code: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env.update(kwargs.pop("env", {}))
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            **kwargs,
        )

    return run


@pytest.fixture
def pool_factory():
    """Create pools that are shut down after the test, whatever happens."""
    from pytest_threadpool._engine import Pool

    pools = []

    def make(workers: int, **kwargs) -> Pool:
        pool = Pool(workers, **kwargs)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.shutdown(wait=True, timeout=10)


@pytest.fixture
def drain():
    """drain(pool) fetches results until nothing is pending (fails after `timeout` seconds)."""
    import time

    def fetch_all(pool, timeout: float = 30.0) -> list:
        out = []
        deadline = time.monotonic() + timeout
        while pool.pending:
            assert time.monotonic() < deadline, f"results did not arrive; pending={pool.pending}"
            r = pool.next_result(timeout=max(0.0, deadline - time.monotonic()))
            if r is not None:
                out.append(r)
        return out

    return fetch_all
