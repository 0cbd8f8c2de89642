"""_engine.monotonic/perf_counter/wall_time/thread_time: the clocks of their time-module
counterparts, read with clock_gettime, so they keep working while a test has replaced the time
module's functions (monkeypatch, freezegun)."""

from __future__ import annotations

import threading
import time

import pytest

from pytest_threadpool import _engine

# Each engine clock and the time-module function that reads the same clock.
PAIRS = {
    "monotonic": "monotonic",
    "perf_counter": "perf_counter",
    "wall_time": "time",
    "thread_time": "thread_time",
}
# Conversions to float may round differently (ns -> double); far below any real difference.
ROUNDING = 1e-6


def burn_cpu(seconds: float, read=time.thread_time) -> None:
    """Busy-loop until the calling thread used `seconds` of CPU (by `read`); 10 s wall cap
    (not enforced while freezegun holds time.perf_counter still)."""
    start = read()
    give_up = time.perf_counter() + 10
    while read() - start < seconds:
        assert time.perf_counter() < give_up, "the thread got no CPU"


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_agrees_with_time_module(name: str):
    ours = getattr(_engine, name)
    theirs = getattr(time, PAIRS[name])
    for _ in range(100):
        before = theirs()
        value = ours()
        after = theirs()
        assert isinstance(value, float)
        assert before - ROUNDING <= value <= after + ROUNDING


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_takes_no_arguments(name: str):
    with pytest.raises(TypeError):
        getattr(_engine, name)(1)


def test_wall_time_is_seconds_since_the_epoch():
    assert abs(_engine.wall_time() - time.time()) < 1.0
    assert _engine.wall_time() > 1.6e9  # after 2020


def test_monotonic_never_goes_backward_across_threads():
    """Per thread, and across threads: a reading taken under a lock is never below the
    previous one taken (by any thread) under the same lock."""
    n_threads, calls = 6, 20_000
    lock = threading.Lock()
    last = [0.0]
    problems: list[str] = []
    start = threading.Barrier(n_threads)

    def hammer(clock) -> None:
        start.wait()
        prev = clock()
        for i in range(calls):
            now = clock()
            if now < prev:
                problems.append(f"thread went back: {prev!r} -> {now!r}")
            prev = now
            if i % 16 == 0:
                with lock:
                    now = clock()
                    if now < last[0]:
                        problems.append(f"global went back: {last[0]!r} -> {now!r}")
                    last[0] = now

    for clock in (_engine.monotonic, _engine.perf_counter):
        last[0] = 0.0
        threads = [threading.Thread(target=hammer, args=(clock,)) for _ in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
    assert problems == []


def test_thread_time_grows_with_cpu_work_on_the_calling_thread():
    before = _engine.thread_time()
    reference = time.thread_time()
    burn_cpu(0.05)
    used = time.thread_time() - reference
    grown = _engine.thread_time() - before
    assert grown >= 0.05 - ROUNDING
    assert abs(grown - used) < 0.01


def test_thread_time_does_not_grow_while_the_thread_sleeps():
    """The caller sleeps while another thread burns CPU: only the burner's clock grows."""
    burner_grew: list[float] = []

    def burner() -> None:
        before = _engine.thread_time()
        burn_cpu(0.2)
        burner_grew.append(_engine.thread_time() - before)

    t = threading.Thread(target=burner)
    before = _engine.thread_time()
    t.start()
    time.sleep(0.25)
    t.join(30)
    slept = _engine.thread_time() - before
    assert slept < 0.05
    assert burner_grew and burner_grew[0] >= 0.2 - ROUNDING


def test_keep_working_while_the_time_module_is_replaced(monkeypatch: pytest.MonkeyPatch):
    real = {name: getattr(time, name) for name in PAIRS.values()}

    def broken(*args):
        raise IndexError("a test replaced the clock")

    for name in PAIRS.values():
        monkeypatch.setattr(time, name, broken)
    with pytest.raises(IndexError):
        time.monotonic()
    for ours, theirs in PAIRS.items():
        before = real[theirs]()
        value = getattr(_engine, ours)()
        after = real[theirs]()
        assert before - ROUNDING <= value <= after + ROUNDING, ours


def test_keep_working_under_freezegun():
    freezegun = pytest.importorskip("freezegun")
    engine_clocks = {name: getattr(_engine, name) for name in PAIRS}
    real_wall = time.time()
    real_mono = time.monotonic()
    with freezegun.freeze_time("2001-02-03 04:05:06"):
        assert time.time() == pytest.approx(981173106.0)
        frozen_mono = time.monotonic()
        # freezegun rebinds attributes that are real time functions; ours are not.
        assert {name: getattr(_engine, name) for name in PAIRS} == engine_clocks
        assert _engine.wall_time() >= real_wall - ROUNDING
        m0, p0 = _engine.monotonic(), _engine.perf_counter()
        assert m0 >= real_mono - ROUNDING
        threading.Event().wait(0.05)  # Event.wait does not read the time module's clocks
        assert _engine.monotonic() - m0 >= 0.04
        assert _engine.perf_counter() - p0 >= 0.04
        assert time.monotonic() == frozen_mono
        before = _engine.thread_time()
        burn_cpu(0.02, read=_engine.thread_time)
        assert _engine.thread_time() - before >= 0.02 - ROUNDING
        # In another thread too (freezegun's patch is process-wide).
        seen: list[float] = []
        t = threading.Thread(target=lambda: seen.append(_engine.wall_time()))
        t.start()
        t.join(10)
        assert seen and seen[0] >= real_wall - ROUNDING
    assert abs(_engine.wall_time() - time.time()) < 1.0
