"""Suite-wide checks: on a free-threaded build the GIL must stay disabled for the whole session."""

from __future__ import annotations

import sys
import sysconfig

import pytest

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def pytest_sessionstart(session: pytest.Session) -> None:
    if FREE_THREADED:
        import pytest_threadpool._engine  # noqa: F401  (its import must not re-enable the GIL)

        assert not sys._is_gil_enabled(), "the GIL was enabled at session start"


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if FREE_THREADED and sys._is_gil_enabled():
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        sys.stderr.write("\nFAILED: the GIL was re-enabled during the test session\n")
