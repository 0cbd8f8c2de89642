"""Shared state between parallel tests: atomic counters, barriers and cross-group coordination.

Everything here passes whether the tests overlap (``--threadpool``) or run one after another
(plain ``pytest``):

- ``AtomicCounter``: a lock-protected counter; a module fixture counts the tests that used it
  and its teardown compares with the number of such tests pytest collected.
- Barriers: inside one test, with as many parties as threads the test starts itself; between
  the two tests of a group, with ``parties = min(selected tests, threads)``: 2 in a parallel run,
  1 (no waiting) in a sequential one; always with a timeout, so a mistake fails, never hangs.
- Cross-group coordination: two parallel groups (classes with their own ``parallelizable``
  marker) share a session-scoped ``Mailbox``; the consumers block on ``Mailbox.take`` (with a
  timeout) until the producers' values arrive, which works whether the producer group runs
  before or at the same time as the consumer group.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_threadpool import parallelizable

pytestmark = parallelizable("children")

TIMEOUT_S = 10.0


class AtomicCounter:
    def __init__(self) -> None:
        self._value = 0
        self._lock = threading.Lock()

    def add(self, n: int = 1) -> int:
        """Add ``n``; return the new value."""
        with self._lock:
            self._value += n
            return self._value

    @property
    def value(self) -> int:
        with self._lock:
            return self._value


class Mailbox:
    """Named slots written once and read by anyone, blocking until the value is there."""

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}
        self._changed = threading.Condition()

    def put(self, key: str, value: Any) -> None:
        with self._changed:
            if key in self._values:
                raise KeyError(f"{key!r} was already delivered")
            self._values[key] = value
            self._changed.notify_all()

    def take(self, key: str, timeout: float = TIMEOUT_S) -> Any:
        with self._changed:
            if not self._changed.wait_for(lambda: key in self._values, timeout):
                raise TimeoutError(f"nobody delivered {key!r} within {timeout}s")
            return self._values[key]


def pool_threads(config: pytest.Config) -> int:
    """Threads of this run: ``--threadpool N`` (1 without the plugin or the flag)."""
    try:
        return config.getoption("threadpool") or 1
    except ValueError:  # the plugin is disabled (-p no:threadpool)
        return 1


# --- atomic counters ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hits(request: pytest.FixtureRequest) -> Iterator[AtomicCounter]:
    counter = AtomicCounter()
    yield counter
    users = [item for item in request.session.items if "hits" in getattr(item, "fixturenames", ())]
    assert counter.value == len(users) * 1000


@pytest.mark.parametrize("threads", [1, 4, 8])
def test_counter_is_exact_under_contention(hits, threads):
    local = AtomicCounter()

    def bump(n: int) -> None:
        for _ in range(n):
            local.add()

    workers = [threading.Thread(target=bump, args=(1000 // threads,)) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert local.value == (1000 // threads) * threads
    hits.add(1000)


def test_counter_add_returns_unique_tickets(hits):
    tickets = AtomicCounter()
    seen: list[int] = []
    seen_lock = threading.Lock()

    def take(n: int) -> None:
        mine = [tickets.add() for _ in range(n)]
        with seen_lock:
            seen.extend(mine)

    workers = [threading.Thread(target=take, args=(250,)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(seen) == list(range(1, 1001))  # every ticket handed out exactly once
    hits.add(1000)


# --- barriers -----------------------------------------------------------------------------------


def test_barrier_starts_phases_together():
    """Four threads run three phases; nobody starts phase k+1 before all finished phase k."""
    parties, phases = 4, 3
    barrier = threading.Barrier(parties, timeout=TIMEOUT_S)
    finished = [AtomicCounter() for _ in range(phases)]
    violations = AtomicCounter()

    def run() -> None:
        for phase in range(phases):
            if phase and finished[phase - 1].value != parties:
                violations.add()
            finished[phase].add()
            barrier.wait()

    workers = [threading.Thread(target=run) for _ in range(parties)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert violations.value == 0
    assert [c.value for c in finished] == [parties] * phases


@pytest.fixture(scope="class")
def meeting_point(request: pytest.FixtureRequest) -> threading.Barrier:
    """A barrier for the tests of a class: one party per selected test, but never more than
    the run has threads (so 1, no waiting at all, in a sequential run)."""
    selected = sum(1 for item in request.session.items if getattr(item, "cls", None) is request.cls)
    return threading.Barrier(min(selected, pool_threads(request.config)), timeout=TIMEOUT_S)


@parallelizable("children")
class TestTwoTestsMeet:
    """A group of two tests: with two or more threads both run at once and meet."""

    def test_left(self, meeting_point):
        meeting_point.wait()

    def test_right(self, meeting_point):
        meeting_point.wait()


# --- cross-group coordination -------------------------------------------------------------------


@pytest.fixture(scope="session")
def mailbox() -> Mailbox:
    return Mailbox()


@parallelizable("all")  # its own group; "all": the parametrized variants overlap too
class TestProducers:
    """Group 1: computes values that group 2 needs."""

    @pytest.mark.parametrize("n", range(4))
    def test_produce(self, mailbox, n):
        mailbox.put(f"square-{n}", n * n)


@parallelizable("all")
class TestConsumers:
    """Group 2: waits for group 1's values (immediately available if group 1 already ran).

    Two consecutive groups that share only session fixtures may overlap, so the consumers can
    start while producers are still running: ``Mailbox.take`` waits for them either way. A
    consumer whose producer was deselected (``-k``) skips instead of waiting in vain.
    """

    @pytest.fixture(scope="class")
    @classmethod
    def scheduled(cls, request: pytest.FixtureRequest) -> set[int]:
        """The values some selected producer test will deliver."""
        return {
            item.callspec.params["n"]
            for item in request.session.items
            if getattr(item, "cls", None) is TestProducers
        }

    @pytest.mark.parametrize("n", range(4))
    def test_consume(self, mailbox, scheduled, n):
        if n not in scheduled:
            pytest.skip(f"the producer of square-{n} is not selected")
        assert mailbox.take(f"square-{n}") == n * n

    def test_consume_all(self, mailbox, scheduled):
        if scheduled != set(range(4)):
            pytest.skip("some producers are not selected")
        assert sum(mailbox.take(f"square-{n}") for n in range(4)) == 0 + 1 + 4 + 9
