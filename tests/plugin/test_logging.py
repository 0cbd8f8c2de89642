"""Logging in pool tests: captured log sections, caplog, levels, live logs, stream handlers."""

from __future__ import annotations

import logging

import pytest

NOISY_LOGGERS = """
import logging, threading, time, pytest
pytestmark = pytest.mark.parallelizable("children")
log = logging.getLogger("app")

def _noise(tag):
    for i in range(30):
        log.warning("%s record %d", tag, i)
        time.sleep(0.001)

def test_noisy_1(): _noise("N1")
def test_noisy_2(): _noise("N2")
"""


def test_captured_log_section_has_only_own_records(pytester: pytest.Pytester):
    pytester.makepyfile(
        NOISY_LOGGERS
        + """
def test_target():
    _noise("T")
    assert False
"""
    )
    result = pytester.runpytest("--threadpool", "3")
    result.assert_outcomes(passed=2, failed=1)
    text = result.stdout.str()
    section = text.split("Captured log call")[1]
    assert section.count("T record") == 30
    assert "N1 record" not in text and "N2 record" not in text


def test_caplog_records_per_test(pytester: pytest.Pytester):
    pytester.makepyfile(
        NOISY_LOGGERS
        + """
def test_caplog(caplog):
    _noise("C")
    assert [r.getMessage() for r in caplog.records] == [f"C record {i}" for i in range(30)]
    assert caplog.record_tuples[0] == ("app", logging.WARNING, "C record 0")
    assert caplog.messages[-1] == "C record 29"
    assert "C record 5" in caplog.text
    caplog.clear()
    assert caplog.records == []
"""
    )
    pytester.runpytest("--threadpool", "3").assert_outcomes(passed=3)


def test_caplog_set_level_is_per_test(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import logging, threading, pytest
        pytestmark = pytest.mark.parallelizable("children")
        log = logging.getLogger("lib")
        barrier = threading.Barrier(2, timeout=20)
        step = threading.Barrier(2, timeout=20)

        def test_lowers_level(caplog):
            caplog.set_level(logging.DEBUG, logger="lib")
            barrier.wait()
            log.debug("debug from lowering test")
            step.wait()
            assert caplog.messages == ["debug from lowering test"]

        def test_keeps_default(caplog):
            barrier.wait()
            log.debug("debug from default test")
            step.wait()
            assert caplog.messages == []

        def test_at_level(caplog):
            with caplog.at_level(logging.INFO, logger="lib"):
                log.info("info inside")
            log.info("info outside")
            assert caplog.messages == ["info inside"]

        def test_levels_restored():
            pass
        """
    )
    pytester.makeconftest(
        """
        import logging
        def pytest_sessionfinish(session):
            assert logging.getLogger("lib").level == logging.NOTSET
            assert logging.getLogger().level == logging.WARNING
        """
    )
    result = pytester.runpytest("--threadpool", "2")
    result.assert_outcomes(passed=4)


def test_log_level_option_honoured(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import logging, pytest
        pytestmark = pytest.mark.parallelizable("children")
        def test_a():
            logging.getLogger("x").info("info %s", "from-A")
            logging.getLogger("x").debug("debug %s", "from-A")
            assert 0
        def test_b(): pass
        """
    )
    result = pytester.runpytest("--threadpool", "2", "--log-level=INFO")
    text = result.stdout.str()
    assert "info from-A" in text and "debug from-A" not in text
    assert logging.getLogger().level == logging.WARNING


def test_live_logging_shows_each_record_once(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import logging, pytest
        pytestmark = pytest.mark.parallelizable("children")
        def test_a(): logging.getLogger("x").warning("live from A")
        def test_b(): logging.getLogger("x").warning("live from B")
        """
    )
    result = pytester.runpytest("--threadpool", "2", "--log-cli-level=WARNING")
    result.assert_outcomes(passed=2)
    text = result.stdout.str()
    assert text.count("live from A") == 1 and text.count("live from B") == 1
    result.stdout.fnmatch_lines(["*live log call*"])


def test_user_stream_handler_writes_per_test(pytester: pytest.Pytester):
    pytester.makeconftest(
        """
        import logging, sys
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("HANDLER %(message)s"))
        logging.getLogger("user").addHandler(handler)
        """
    )
    pytester.makepyfile(
        """
        import logging, pytest
        pytestmark = pytest.mark.parallelizable("children")
        def test_a():
            logging.getLogger("user").warning("from A")
            assert 0
        def test_b():
            logging.getLogger("user").warning("from B")
        """
    )
    result = pytester.runpytest("--threadpool", "2")
    text = result.stdout.str()
    err_section = text.split("Captured stderr call")[1]
    assert "HANDLER from A" in err_section and "from B" not in text


@pytest.mark.parametrize("log_format", [None, "%(levelname)s|%(name)s|%(message)s"])
def test_caplog_text_is_formatted_as_sequentially(pytester: pytest.Pytester, log_format):
    """caplog.text uses the session's log format (pytest formats its caplog handler); the
    pool's per-thread handlers printed bare messages (structlog's test_find_caller)."""
    expected = (
        '"WARNING  app:test_caplog_format.py:7 hello {n}\\n"'
        if log_format is None
        else '"WARNING|app|hello {n}\\n"'
    )
    pytester.makepyfile(
        test_caplog_format=f"""
        import logging, pytest
        pytestmark = pytest.mark.parallelizable("children")
        log = logging.getLogger("app")

        @pytest.mark.parametrize("n", range(6))
        def test_text(caplog, n):
            log.warning("hello %d", n)
            assert caplog.text == {expected}.format(n=n)
        """
    )
    options = [] if log_format is None else ["-o", f"log_format={log_format}"]
    pytester.runpytest(*options).assert_outcomes(passed=6)
    pytester.runpytest("--threadpool", "3", *options).assert_outcomes(passed=6)
