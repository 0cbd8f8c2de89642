"""A dependency-injection container whose providers are exercised by tests running in parallel.

Providers:

- ``Singleton``: one instance for the whole process, created lazily and exactly once even when
  many threads ask for it at the same moment (double-checked locking).
- ``ThreadLocal``: one instance per thread (``threading.local``).
- ``ContextLocal``: one instance per ``contextvars`` context: per asyncio task, or per
  ``container.scope()`` block, which is how a web request or a job would use it.
- ``Factory``: a new instance on every call.

The container is module-scoped, so every test in this module shares it; with ``--threadpool``
the tests also run at the same time, which is exactly the situation the providers must survive.
The module fixture's teardown checks an aggregate: all tests saw one and the same singleton.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from pytest_threadpool import not_parallelizable, parallelizable

pytestmark = parallelizable("children")


class Singleton[T]:
    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._instance: T | None = None

    def __call__(self) -> T:
        instance = self._instance
        if instance is None:
            with self._lock:
                if self._instance is None:
                    self._instance = self._factory()
                instance = self._instance
        return instance


class ThreadLocal[T]:
    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._local = threading.local()

    def __call__(self) -> T:
        if not hasattr(self._local, "instance"):
            self._local.instance = self._factory()
        return self._local.instance


class ContextLocal[T]:
    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._var: contextvars.ContextVar[T] = contextvars.ContextVar(f"ctx-{id(self)}")

    def __call__(self) -> T:
        try:
            return self._var.get()
        except LookupError:
            instance = self._factory()
            self._var.set(instance)
            return instance

    @contextlib.contextmanager
    def fresh(self) -> Iterator[None]:
        """Within the block, the provider hands out a new instance (restored afterwards)."""
        token = self._var.set(self._factory())
        try:
            yield
        finally:
            self._var.reset(token)


class Factory[T]:
    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory

    def __call__(self) -> T:
        return self._factory()


# --- the application wiring under test ----------------------------------------------------------

_ids = itertools.count(1)
_ids_lock = threading.Lock()


def next_id() -> int:
    with _ids_lock:
        return next(_ids)


class Settings:
    def __init__(self) -> None:
        self.id = next_id()
        self.dsn = "sqlite://:memory:"


class Connection:
    def __init__(self, settings: Settings) -> None:
        self.id = next_id()
        self.settings = settings
        self.owner = threading.get_ident()


class RequestContext:
    def __init__(self) -> None:
        self.id = next_id()
        self.user: str | None = None


class Command:
    def __init__(self, conn: Connection, ctx: RequestContext) -> None:
        self.id = next_id()
        self.conn = conn
        self.ctx = ctx


class Container:
    def __init__(self) -> None:
        self.settings = Singleton(Settings)
        self.connection = ThreadLocal(lambda: Connection(self.settings()))
        self.request = ContextLocal(RequestContext)
        self.command = Factory(lambda: Command(self.connection(), self.request()))

    def scope(self) -> contextlib.AbstractContextManager[None]:
        return self.request.fresh()


@pytest.fixture(scope="module")
def container() -> Iterator[Container]:
    yield Container()


@pytest.fixture(scope="module")
def singleton_ids(container: Container) -> Iterator[set[int]]:
    """Every test adds the singleton id it saw; the teardown checks they all saw the same one."""
    seen: set[int] = set()
    yield seen
    assert len(seen) <= 1, f"several Settings singletons were created: {seen}"


def resolve_many[T](provider: Callable[[], T], threads: int = 8, calls: int = 50) -> list[T]:
    """Call ``provider`` ``calls`` times from each of ``threads`` threads started together."""
    start = threading.Barrier(threads, timeout=10)

    def worker() -> list[T]:
        start.wait()
        return [provider() for _ in range(calls)]

    with ThreadPoolExecutor(threads) as pool:
        return [x for batch in pool.map(lambda _: worker(), range(threads)) for x in batch]


def test_singleton_is_created_once_under_contention(container, singleton_ids):
    instances = resolve_many(container.settings)
    assert len({id(x) for x in instances}) == 1
    singleton_ids.add(instances[0].id)


def test_thread_local_gives_one_instance_per_thread(container, singleton_ids):
    here = container.connection()
    assert container.connection() is here  # stable within a thread
    conns = resolve_many(container.connection, threads=4, calls=10)
    by_owner: dict[int, set[int]] = {}
    for conn in conns:
        by_owner.setdefault(conn.owner, set()).add(conn.id)
    assert len(by_owner) == 4  # each thread got its own connection...
    assert all(len(ids) == 1 for ids in by_owner.values())  # ...and kept it
    assert here.id not in {conn.id for conn in conns}
    singleton_ids.add(here.settings.id)


def test_context_local_is_isolated_per_scope(container, singleton_ids):
    with container.scope():
        outer = container.request()
        outer.user = "alice"
        assert container.request() is outer
        with container.scope():
            inner = container.request()
            assert inner is not outer and inner.user is None
        assert container.request() is outer  # restored when the inner scope ends
    singleton_ids.add(container.settings().id)


def test_context_local_is_isolated_per_asyncio_task(container, singleton_ids):
    async def handle(user: str) -> RequestContext:
        with container.scope():  # each task runs in its own copy of the context
            ctx = container.request()
            ctx.user = user
            await asyncio.sleep(0.01)  # let the other tasks run in between
            assert container.request() is ctx and ctx.user == user
            return ctx

    async def main() -> list[RequestContext]:
        return await asyncio.gather(*(handle(f"user{i}") for i in range(10)))

    contexts = asyncio.run(main())
    assert len({c.id for c in contexts}) == 10
    singleton_ids.add(container.settings().id)


@parallelizable("parameters")
@pytest.mark.parametrize("count", [1, 5, 20])
def test_factory_builds_a_new_object_each_call(container, singleton_ids, count):
    with container.scope():
        commands = [container.command() for _ in range(count)]
        assert len({c.id for c in commands}) == count
        assert len({c.ctx.id for c in commands}) == 1  # but they share the request context
        assert len({c.conn.id for c in commands}) == 1  # and this thread's connection
    singleton_ids.add(commands[0].conn.settings.id)


@not_parallelizable
def test_overriding_a_provider_runs_alone(container):
    """Swapping a provider on the shared container is global: this test never overlaps others."""
    original = container.settings
    container.settings = Singleton(lambda: "fake settings")
    try:
        assert container.settings() == "fake settings"
    finally:
        container.settings = original
