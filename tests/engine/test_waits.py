"""Interruptible waits (waits.c): sleep, the Condition waiter lock, wait_until and the task's own
deadline. A timeout or interrupt delivered to a pool task blocked in one of them ends the wait at
once, raised exactly once; on any other thread they behave like the originals."""

from __future__ import annotations

import _thread
import functools
import operator
import threading
import time
import traceback

import pytest

from pytest_threadpool import _engine
from pytest_threadpool._engine import TaskTimeout


def _last_frame(exc: BaseException) -> str:
    return traceback.extract_tb(exc.__traceback__)[-1].name


def _off_pool(fn):
    """Run fn on a plain thread (this test itself may run on a worker of a threaded session)."""
    out = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(60)
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_sleep_off_pool_is_time_sleep():
    def check():
        t0 = time.monotonic()
        assert _engine.sleep(0.05) is None
        assert time.monotonic() - t0 >= 0.05
        with pytest.raises(ValueError):
            _engine.sleep(-1)
        with pytest.raises(TypeError):
            _engine.sleep("1")
        assert not _engine.in_task()
        assert _engine.set_task_deadline(1.0) is False
        assert type(_engine.allocate_waiter_lock()) is _thread.LockType
        return True

    assert _off_pool(check)


def test_sleep_on_pool_without_deadline_sleeps(pool_factory):
    pool = pool_factory(1)
    pool.start()

    def task(_):
        assert _engine.in_task()
        t0 = time.monotonic()
        _engine.sleep(0.2)
        _engine.sleep(0)
        return time.monotonic() - t0

    pool.submit(task)
    r = pool.next_result(timeout=20)
    assert r.exception is None and r.value >= 0.2


def test_timeout_ends_sleep_at_once_exactly_once(pool_factory):
    pool = pool_factory(1, grace=30.0)
    pool.start()

    def task(_):
        try:
            _engine.sleep(60)
        except TaskTimeout as exc:
            caught = _last_frame(exc)
        # Exactly once: bytecode after the wait sees no second, pending TaskTimeout.
        end = time.monotonic() + 0.3
        total = 0
        while time.monotonic() < end:
            total += 1
        return caught

    t0 = time.monotonic()
    pool.submit(task, timeout=0.2)
    r = pool.next_result(timeout=60)
    assert time.monotonic() - t0 < 20  # the sleep is 60 s
    assert r.exception is None and r.value == "task" and not r.hung and not r.timed_out
    # nothing leaks into the next task on that worker
    pool.submit(lambda _: sum(range(10000)))
    r2 = pool.next_result(timeout=20)
    assert r2.exception is None and r2.value == sum(range(10000))
    assert pool.replaced == 0


def test_timeout_in_sleep_fails_task_without_hanging(pool_factory):
    pool = pool_factory(2, grace=30.0)
    pool.start()

    def sleepy(_):
        _engine.sleep(60)

    t0 = time.monotonic()
    pool.submit(sleepy, timeout=0.2)
    r = pool.next_result(timeout=60)
    assert time.monotonic() - t0 < 20
    assert isinstance(r.exception, TaskTimeout) and r.timed_out and not r.hung
    assert str(r.exception) == "task exceeded its 0.2s timeout"
    assert _last_frame(r.exception) == "sleepy"
    assert pool.replaced == 0 and pool.alive == 2


def test_interrupt_ends_sleep_and_waiter_lock(pool_factory):
    pool = pool_factory(2)
    pool.start()
    started = threading.Barrier(3)

    def sleepy(_):
        started.wait()
        _engine.sleep(60)

    def locked(_):
        lock = _engine.allocate_waiter_lock()
        assert type(lock) is _engine.WaiterLock
        lock.acquire()
        started.wait()
        lock.acquire()  # nobody releases it

    pool.submit(sleepy)
    pool.submit(locked)
    started.wait(timeout=20)
    time.sleep(0.1)  # let both block
    t0 = time.monotonic()
    assert pool.interrupt(KeyboardInterrupt) == 2
    results = [pool.next_result(timeout=30) for _ in range(2)]
    assert time.monotonic() - t0 < 20
    assert all(isinstance(r.exception, KeyboardInterrupt) for r in results)


def test_timeouts_past_timeout_max_raise_like_the_originals(pool_factory):
    """Beyond threading.TIMEOUT_MAX time.sleep and lock.acquire raise OverflowError; so do the
    stand-ins on a pool task (such a timeout used to overflow the wait's deadline: the wait
    returned at once and spun)."""
    pool = pool_factory(1)
    pool.start()
    huge = threading.TIMEOUT_MAX * 2

    def task(_):
        with pytest.raises(OverflowError):
            time.sleep(huge)
        with pytest.raises(OverflowError):
            _engine.sleep(huge)
        with pytest.raises(OverflowError):
            _engine.sleep(10**400)
        lock = _engine.allocate_waiter_lock()
        assert type(lock) is _engine.WaiterLock
        lock.acquire()
        with pytest.raises(OverflowError):
            lock.acquire(True, huge)
        assert lock.locked()
        return True

    pool.submit(task)
    r = pool.next_result(timeout=30)
    assert r.exception is None and r.value is True


def test_huge_task_timeouts_do_not_spin_the_watchdog(pool_factory):
    """A deadline beyond time_t's range (timeout=1e20, set_task_deadline(1e30)) used to make the
    watchdog's timed wait return at once, so it spun at 100% CPU for the whole task."""
    pool = pool_factory(1, grace=30.0)
    pool.start()

    def idle(_):
        t0, c0 = time.monotonic(), time.process_time()
        time.sleep(0.5)  # the whole process idles, unless the watchdog spins
        return time.process_time() - c0, time.monotonic() - t0

    def own_deadline(_):
        assert _engine.set_task_deadline(1e30) is True
        return idle(_)

    pool.submit(idle, timeout=1e20)
    pool.submit(own_deadline)
    for _ in range(2):
        r = pool.next_result(timeout=60)
        assert r.exception is None and not r.timed_out
        cpu, wall = r.value
        assert cpu < wall / 2, f"{cpu:.3f}s CPU while idle for {wall:.3f}s"


def test_waiter_lock_is_a_lock(pool_factory):
    pool = pool_factory(1)
    pool.start()

    def task(_):
        lock = _engine.allocate_waiter_lock()
        assert lock.acquire() and lock.locked()
        assert lock.acquire(False) is False
        assert lock.acquire(True, 0.05) is False
        with pytest.raises(ValueError):
            lock.acquire(False, 1)
        threading.Timer(0.1, lock.release).start()
        assert lock.acquire(True, 30) is True  # released by another thread
        lock.release()
        with pytest.raises(RuntimeError):
            lock.release()
        with lock:
            assert lock.locked()
        return not lock.locked()

    pool.submit(task)
    r = pool.next_result(timeout=30)
    assert r.exception is None and r.value is True


def test_timeout_ends_waiter_lock_wait(pool_factory):
    pool = pool_factory(1, grace=30.0)
    pool.start()

    def waiting(_):
        lock = _engine.allocate_waiter_lock()
        lock.acquire()
        try:
            lock.acquire(True, 60)
        finally:
            assert lock.locked()  # still held once (the interrupted acquire took nothing)

    t0 = time.monotonic()
    pool.submit(waiting, timeout=0.2)
    r = pool.next_result(timeout=60)
    assert time.monotonic() - t0 < 20
    assert isinstance(r.exception, TaskTimeout) and not r.hung


def test_wait_until_slices_and_timeout(pool_factory):
    calls = []
    assert _off_pool(lambda: _engine.wait_until(lambda s: calls.append(s) or len(calls) == 3))
    assert len(calls) == 3 and all(0 < s <= 0.05 for s in calls)
    assert _off_pool(lambda: _engine.wait_until(lambda s: time.sleep(s), 0.1)) is False
    pool = pool_factory(1, grace=30.0)
    pool.start()

    def joining(_):
        _engine.wait_until(lambda s: time.sleep(s))  # never done

    t0 = time.monotonic()
    pool.submit(joining, timeout=0.2)
    r = pool.next_result(timeout=60)
    assert time.monotonic() - t0 < 20
    assert isinstance(r.exception, TaskTimeout) and not r.hung


def test_pending_asynchronous_exception_is_raised_when_the_wait_begins(pool_factory):
    """An interrupt delivered while the task runs C code (no bytecode in between, so it is still
    pending when the sleep begins) ends that sleep at once."""
    pool = pool_factory(1)
    pool.start()
    signal = _thread.allocate_lock()
    signal.acquire()
    gate = _thread.allocate_lock()
    gate.acquire()

    def task(_):
        steps = [
            signal.release,
            # blocks in C until the interrupt below has been sent (a lock's acquire does not
            # raise asynchronous exceptions); a computation "long enough" was not, under valgrind
            gate.acquire,
            functools.partial(_engine.sleep, 60),
        ]
        list(map(operator.call, steps))  # C calls only: no bytecode between the steps

    pool.submit(task)
    assert signal.acquire(timeout=20)
    t0 = time.monotonic()
    assert pool.interrupt(ValueError) == 1
    gate.release()
    r = pool.next_result(timeout=60)
    assert time.monotonic() - t0 < 30
    assert isinstance(r.exception, ValueError)


def test_task_sets_its_own_deadline(pool_factory):
    pool = pool_factory(1, grace=30.0)
    pool.start()

    def armed(_):
        assert _engine.set_task_deadline(0.2) is True
        _engine.sleep(60)

    def cleared(_):
        _engine.set_task_deadline(0.2)
        _engine.set_task_deadline(0)
        _engine.sleep(0.5)  # past the cleared deadline
        return "done"

    t0 = time.monotonic()
    pool.submit(armed)
    r = pool.next_result(timeout=60)
    assert time.monotonic() - t0 < 20
    assert isinstance(r.exception, TaskTimeout) and r.timed_out and not r.hung
    pool.submit(cleared)
    r = pool.next_result(timeout=60)
    assert r.exception is None and r.value == "done"
    with pytest.raises(ValueError):
        _engine.set_task_deadline(-1)


def _spin(seconds: float) -> None:
    # In a function of its own: CPython 3.13 leaves a loop's closing JUMP_BACKWARD outside the
    # exception table, so an asynchronous exception raised at that back-edge skips the try
    # statements of the function the loop is in (fixed in 3.14).
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_cleared_deadline_never_fires_later(pool_factory, drain):
    """A deadline cleared right around its expiry: a TaskTimeout delivered but not raised yet is
    dropped with it, never raised after the clear nor in a later task."""
    pool = pool_factory(1, grace=30.0)
    pool.start()

    def guarded(d):
        # Up to the clear a TaskTimeout may surface (the guarded code ran to its deadline) ...
        try:
            _engine.set_task_deadline(d)
            try:
                _spin(d)
            finally:
                _engine.set_task_deadline(0)
        except TaskTimeout:
            pass
        # ... after it, never.
        total = 0
        for i in range(20000):  # bytecode: a stale TaskTimeout would be raised here
            total += i
        return "ok"

    ids = [pool.submit(guarded, 0.002 * (1 + i % 3)) for i in range(150)]
    ids += [pool.submit(lambda _: "plain") for _ in range(20)]
    results = drain(pool, timeout=120)
    assert len(results) == len(ids)
    for r in results:
        assert r.exception is None and r.value in ("ok", "plain"), r
    assert pool.replaced == 0
