"""A shared, thread-safe log collector: a ``caplog`` alternative for tests that run in parallel.

``caplog`` attaches a handler to the root logger for the duration of one test; when tests run
concurrently, each would also see the others' records. Instead, one ``LogCollector`` handler is
installed once for the module and every record is kept with the logger name, level, and thread.
Each test logs through its own child logger (``app.<test name>``), which is how the code under
test receives a logger by dependency injection, and asks the collector only for its records.
Records from helper threads that the test starts are attributed correctly too, because the
attribution is by logger, not by thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from pytest_threadpool import not_parallelizable, parallelizable

pytestmark = parallelizable("children")


@dataclass(frozen=True)
class Captured:
    logger: str
    level: int
    message: str
    thread: str


class LogCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self._records: list[Captured] = []
        self._records_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        item = Captured(record.name, record.levelno, record.getMessage(), record.threadName or "")
        with self._records_lock:
            self._records.append(item)

    def records(self, logger: str, level: int = logging.NOTSET) -> list[Captured]:
        """Records of ``logger`` and its children at ``level`` or above, in emission order."""
        prefix = logger + "."
        with self._records_lock:
            return [
                r
                for r in self._records
                if (r.logger == logger or r.logger.startswith(prefix)) and r.level >= level
            ]

    def messages(self, logger: str, level: int = logging.NOTSET) -> list[str]:
        return [r.message for r in self.records(logger, level)]


@pytest.fixture(scope="module")
def log_collector() -> Iterator[LogCollector]:
    collector = LogCollector()
    app = logging.getLogger("app")
    app.addHandler(collector)
    app.setLevel(logging.DEBUG)
    yield collector
    app.removeHandler(collector)


@pytest.fixture
def logger(request: pytest.FixtureRequest, log_collector: LogCollector) -> logging.Logger:
    """A logger private to this test; its records are in ``log_collector.records(logger.name)``."""
    return logging.getLogger(f"app.{request.node.name}")


# --- code under test ------------------------------------------------------------------------


def transfer(log: logging.Logger, balance: int, amount: int) -> int:
    log.debug("transfer of %d requested", amount)
    if amount > balance:
        log.warning("insufficient funds: balance %d, amount %d", balance, amount)
        return balance
    log.info("transferred %d", amount)
    return balance - amount


def import_rows(log: logging.Logger, rows: list[str], workers: int) -> int:
    """Parses rows on worker threads; logs one line per row from those threads."""
    chunks = [rows[i::workers] for i in range(workers)]
    done = []

    def work(chunk: list[str]) -> None:
        for row in chunk:
            log.info("imported %s", row)
        done.append(len(chunk))

    threads = [
        threading.Thread(target=work, args=(c,), name=f"importer-{i}") for i, c in enumerate(chunks)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done)


# --- tests ------------------------------------------------------------------------------------


def test_only_my_records_are_visible(logger, log_collector):
    transfer(logger, balance=100, amount=30)
    assert log_collector.messages(logger.name) == ["transfer of 30 requested", "transferred 30"]


def test_level_filtering(logger, log_collector):
    transfer(logger, balance=10, amount=30)
    assert log_collector.messages(logger.name, logging.WARNING) == [
        "insufficient funds: balance 10, amount 30"
    ]


def test_records_from_helper_threads_are_attributed(logger, log_collector):
    rows = [f"row{i}" for i in range(200)]
    assert import_rows(logger, rows, workers=4) == 200
    records = log_collector.records(logger.name)
    assert sorted(r.message for r in records) == sorted(f"imported {row}" for row in rows)
    assert {r.thread for r in records} == {f"importer-{i}" for i in range(4)}


@pytest.mark.parametrize("amount", [1, 50, 99, 100, 101])
def test_every_variant_sees_its_own_log(logger, log_collector, amount):
    remaining = transfer(logger, balance=100, amount=amount)
    warnings = log_collector.messages(logger.name, logging.WARNING)
    assert (remaining == 100) == (amount > 100) == bool(warnings)


@not_parallelizable
def test_caplog_still_works_for_a_test_that_runs_alone(caplog):
    """caplog is fine when nothing else logs at the same time: mark such tests so."""
    with caplog.at_level(logging.INFO, logger="app.alone"):
        transfer(logging.getLogger("app.alone"), balance=5, amount=1)
    assert [r.getMessage() for r in caplog.records] == ["transferred 1"]
