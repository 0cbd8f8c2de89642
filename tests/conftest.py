"""Suite-wide checks: on a free-threaded build the GIL must stay disabled for the whole session,
and pytest's deprecation warnings are errors in every pytest session a test runs (the plugin must
not make pytest warn, under any pytest it supports)."""

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


# Appended to every pytester run (in-process and subprocess). A command-line -W filter applies
# after ini and marker filters, so it wins over them (a test that means to check a deprecation
# warning passes its own, later, -W).
DEPRECATIONS_AS_ERRORS = ("-W", "error::pytest.PytestDeprecationWarning")
# Plugins installed in the dev venvs for the tests that exercise them, disabled elsewhere:
# pytest-flask, pytest-asyncio and pytest-timeout add fixtures, header lines and settings of
# their own to every run.
# A test that needs one passes "-p <name>" (a later -p unblocks it).
OPT_IN_PLUGINS = ("-p", "no:flask", "-p", "no:asyncio", "-p", "no:timeout")


@pytest.fixture
def pytester(pytester: pytest.Pytester) -> pytest.Pytester:
    inline_run = pytester.inline_run
    run_subprocess = pytester.runpytest_subprocess

    def inline_run_strict(*args, **kwargs):
        return inline_run(*DEPRECATIONS_AS_ERRORS, *OPT_IN_PLUGINS, *args, **kwargs)

    def runpytest_subprocess_strict(*args, **kwargs):
        return run_subprocess(*DEPRECATIONS_AS_ERRORS, *OPT_IN_PLUGINS, *args, **kwargs)

    pytester.inline_run = inline_run_strict  # type: ignore[method-assign]
    pytester.runpytest_subprocess = runpytest_subprocess_strict  # type: ignore[method-assign]
    return pytester
