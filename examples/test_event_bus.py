"""An in-memory event bus test double, fed by concurrent producers, verified in aggregate.

``RecordingBus`` stands in for a message broker: ``publish`` is thread-safe, every event is
recorded with a global sequence number, subscribers are called synchronously, and
``wait_for`` blocks (with a timeout) until the recorded events satisfy a condition, which is
how a test waits for asynchronous consumers without sleeping.

The tests run in parallel and share one module-scoped bus, each on its own topic, so they must
only look at their own events. The module fixture's teardown then verifies the aggregate:
nothing was lost or duplicated across all the tests that used the bus.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from pytest_threadpool import parallelizable

pytestmark = parallelizable("children")


@dataclass(frozen=True)
class Event:
    topic: str
    producer: str
    n: int  # the producer's own counter, to check per-producer ordering
    seq: int = 0  # global order, assigned by the bus


class RecordingBus:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._events: list[Event] = []
        self._subscribers: dict[str, list[Callable[[Event], None]]] = {}
        self._expected: Counter[str] = Counter()

    def expect(self, topic: str, count: int) -> None:
        """Declare that ``count`` more events will be published to ``topic``."""
        with self._changed:
            self._expected[topic] += count

    def expected(self) -> Counter[str]:
        with self._changed:
            return Counter(self._expected)

    def subscribe(self, topic: str, handler: Callable[[Event], None]) -> None:
        with self._changed:
            self._subscribers.setdefault(topic, []).append(handler)

    def publish(self, event: Event) -> None:
        with self._changed:
            event = Event(event.topic, event.producer, event.n, seq=len(self._events))
            self._events.append(event)
            handlers = list(self._subscribers.get(event.topic, ()))
            self._changed.notify_all()
        for handler in handlers:  # outside the lock, as a real broker delivers
            handler(event)

    def events(self, topic: str | None = None) -> list[Event]:
        with self._changed:
            return [e for e in self._events if topic is None or e.topic == topic]

    def wait_for(self, predicate: Callable[[list[Event]], bool], timeout: float = 10.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self._events), timeout):
                raise AssertionError(f"condition not met within {timeout}s")


@pytest.fixture(scope="module")
def bus() -> Iterator[RecordingBus]:
    bus = RecordingBus()
    yield bus
    got, expected = Counter(e.topic for e in bus.events()), bus.expected()
    assert got == expected, f"published {dict(got)}, expected {dict(expected)}"
    assert [e.seq for e in bus.events()] == list(range(len(bus.events())))


def produce(bus: RecordingBus, topic: str, producers: int, per_producer: int) -> None:
    """Start ``producers`` threads together, each publishing ``per_producer`` events."""
    bus.expect(topic, producers * per_producer)
    start = threading.Barrier(producers, timeout=10)

    def run(name: str) -> None:
        start.wait()
        for n in range(per_producer):
            bus.publish(Event(topic, name, n))

    threads = [threading.Thread(target=run, args=(f"p{i}",)) for i in range(producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_no_event_is_lost_or_duplicated(bus, request):
    topic = request.node.name
    produce(bus, topic, producers=8, per_producer=250)
    events = bus.events(topic)
    assert len(events) == 2000
    assert len({(e.producer, e.n) for e in events}) == 2000


def test_each_producer_keeps_its_order(bus, request):
    topic = request.node.name
    produce(bus, topic, producers=4, per_producer=300)
    by_producer: dict[str, list[int]] = {}
    for event in bus.events(topic):  # events() is in global publish order
        by_producer.setdefault(event.producer, []).append(event.n)
    assert by_producer == {f"p{i}": list(range(300)) for i in range(4)}


def test_subscriber_sees_every_event_of_its_topic(bus, request):
    topic = request.node.name
    received: queue.SimpleQueue[Event] = queue.SimpleQueue()
    bus.subscribe(topic, received.put)
    produce(bus, topic, producers=4, per_producer=100)
    assert received.qsize() == 400
    assert {received.get().topic for _ in range(400)} == {topic}


def test_consumer_thread_is_awaited_without_sleeping(bus, request):
    """A consumer reacts to ``orders`` by publishing to ``shipped``; the test waits on the bus."""
    orders, shipped = f"{request.node.name}.orders", f"{request.node.name}.shipped"
    inbox: queue.SimpleQueue[Event | None] = queue.SimpleQueue()
    bus.subscribe(orders, inbox.put)

    def consumer() -> None:
        while (event := inbox.get()) is not None:
            bus.publish(Event(shipped, "consumer", event.n))

    worker = threading.Thread(target=consumer)
    worker.start()
    bus.expect(shipped, 3 * 50)
    try:
        produce(bus, orders, producers=3, per_producer=50)
        bus.wait_for(lambda events: sum(e.topic == shipped for e in events) == 150)
    finally:
        inbox.put(None)
        worker.join()
    assert len(bus.events(shipped)) == 150


@pytest.mark.parametrize("producers", [1, 2, 16])
def test_many_topics_at_once(bus, request, producers):
    topics = [f"{request.node.name}.{i}" for i in range(3)]
    threads = [threading.Thread(target=produce, args=(bus, t, producers, 20)) for t in topics]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [len(bus.events(t)) for t in topics] == [producers * 20] * 3
