"""Micro-benchmarks of the C engine.

1. Per-task dispatch overhead: N no-op tasks submitted and collected through ``Pool`` vs
   ``concurrent.futures.ThreadPoolExecutor`` (same worker count). Target: ours >= 10x lower.
2. Output dispatcher throughput: 8 threads, each with its own ``Capture``, writing through one
   ``Dispatcher`` vs one thread writing into an ``io.StringIO``. Target: no slower.

Usage: python bench/bench_engine.py [--tasks N] [--workers W] [--writes N] [--repeat R]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import os
import sys
import sysconfig
import threading
import time

from pytest_threadpool._engine import Capture, Dispatcher, Pool, set_thread_capture


def noop(_=None):
    return None


def bench_pool(n: int, workers: int) -> float:
    with Pool(workers) as pool:
        submit = pool.submit
        t0 = time.perf_counter()
        for _ in range(n):
            submit(noop)
        got = 0
        next_result = pool.next_result
        while got < n:
            if next_result() is not None:
                got += 1
        elapsed = time.perf_counter() - t0
    return elapsed


def bench_executor(n: int, workers: int) -> float:
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        submit = ex.submit
        t0 = time.perf_counter()
        futures = [submit(noop) for _ in range(n)]
        for f in futures:
            f.result()
        elapsed = time.perf_counter() - t0
    return elapsed


LINE = "a typical line of test output, 48 characters..\n"


def bench_dispatcher(writes_per_thread: int, threads: int) -> float:
    d = Dispatcher(io.StringIO())
    barrier = threading.Barrier(threads + 1)
    captures = [Capture() for _ in range(threads)]

    def writer(cap: Capture) -> None:
        set_thread_capture(cap)
        write = d.write
        barrier.wait()
        for _ in range(writes_per_thread):
            write(LINE)
        barrier.wait()
        set_thread_capture(None)

    ts = [threading.Thread(target=writer, args=(c,)) for c in captures]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    barrier.wait()
    elapsed = time.perf_counter() - t0
    for t in ts:
        t.join()
    total = sum(len(c.take()[0]) for c in captures)
    assert total == threads * writes_per_thread * len(LINE), total
    return elapsed


def bench_stringio(writes: int) -> float:
    s = io.StringIO()
    write = s.write
    t0 = time.perf_counter()
    for _ in range(writes):
        write(LINE)
    elapsed = time.perf_counter() - t0
    assert len(s.getvalue()) == writes * len(LINE)
    return elapsed


def best(fn, repeat: int, *args) -> float:
    return min(fn(*args) for _ in range(repeat))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--writes", type=int, default=200_000, help="writes per thread")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    ft = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print(
        f"Python {sys.version.split()[0]}{'t' if ft else ''} (GIL {'on' if gil else 'off'}), "
        f"{os.cpu_count()} CPUs"
    )

    n, w = args.tasks, args.workers
    ours = best(bench_pool, args.repeat, n, w)
    theirs = best(bench_executor, args.repeat, n, w)
    print()
    print(f"1. dispatch overhead, {n:,} no-op tasks, {w} workers (best of {args.repeat})")
    print(f"   {'':<28}{'total s':>10}{'us/task':>10}")
    print(f"   {'Pool (C engine)':<28}{ours:>10.3f}{ours / n * 1e6:>10.2f}")
    print(f"   {'ThreadPoolExecutor':<28}{theirs:>10.3f}{theirs / n * 1e6:>10.2f}")
    ratio1 = theirs / ours
    print(f"   ratio: {ratio1:.1f}x lower per task (target >= 10x)")

    k, t = args.writes, args.threads
    disp = best(bench_dispatcher, args.repeat, k, t)
    sio = best(bench_stringio, args.repeat, k * t)
    total = k * t
    print()
    print(f"2. write throughput, {total:,} writes of {len(LINE)} chars (best of {args.repeat})")
    print(f"   {'':<28}{'total s':>10}{'Mwrites/s':>11}{'MB/s':>9}")
    for label, sec in ((f"Dispatcher, {t} threads", disp), ("io.StringIO, 1 thread", sio)):
        mb = total * len(LINE) / sec / 1e6
        print(f"   {label:<28}{sec:>10.3f}{total / sec / 1e6:>11.2f}{mb:>9.1f}")
    ratio2 = sio / disp
    print(f"   ratio: {ratio2:.2f}x the StringIO throughput (target >= 1.0x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
