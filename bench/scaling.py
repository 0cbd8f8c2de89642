"""Thread scaling: ours, the PyPI ``pytest-threadpool`` (the opponent) and pytest-xdist at 1, 2,
4, 8 and 16 threads (or processes), plus the cpu suite's work in bare threads.

Meant for a machine with 16 or more cores, run in one go: two rounds by default (about 8
minutes there, estimated from the per-run times of a 2-core VM), ``--quick`` one round at 2, 8
and 16 threads (about 2-3 minutes). On the cpu, trivial, io and fixtures suites
(bench/suites.py), each round runs sequential pytest once, a ``--collect-only`` run of ours
(start-up and collection, see below) and then, per thread count N, ``--threadpool N`` (ours and
the opponent) and ``-n N`` (xdist), alternating; on cpu also ``bare``: the cpu suite's test
bodies (same ``work()``, same number of calls) in N plain ``threading.Thread`` objects pulling
calls from a shared counter, no pytest. Runs use the bench venvs of bench/run.py (created on the
first run, which needs PyPI; reused after) and bench/measure.py. Prints markdown: median wall
time with the speedup over sequential pytest, median peak RSS, ours/bare on cpu and the
verdicts of the targets (free-threaded build):

- trivial: ours at least 5x faster than sequential pytest (best thread count);
- cpu: ours within 15% of bare threads at every N, net of start-up: (ours - collect-only) /
  bare work time (the whole-process ratio is shown too)::

    .venv-3.13t/bin/python bench/scaling.py [--quick] [--rounds 2] [--threads 1,2,4,8,16]
        [--suites cpu,trivial,io,fixtures] [--configs ours,opponent,xdist,bare] [--interp 3.13t]
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import statistics
import sys
import time
from pathlib import Path

import measure
import run
import suites

DEFAULT_THREADS = (1, 2, 4, 8, 16)
QUICK_THREADS = (2, 8, 16)
DEFAULT_SUITES = ("cpu", "trivial", "io", "fixtures")
THREADED = ("ours", "opponent", "xdist")  # the runners scaled with N (pytest configurations)
CONFIGS = (*THREADED, "bare")
TRIVIAL_SPEEDUP_TARGET = 5.0
CPU_BARE_TARGET = 1.15
TIMEOUT_S = 300.0

# The cpu suite's work in plain threads. argv: threads, calls, loops. Prints the time of the work
# itself and a pytest-style summary line (measure.RunResult.problem checks the count).
BARE_SCRIPT = (
    suites.WORK_FUNCTION
    + """
import sys, threading, time
threads, calls, loops = (int(x) for x in sys.argv[1:4])
lock = threading.Lock()
next_call = [0]
done = [0]


def worker():
    while True:
        with lock:
            i = next_call[0]
            next_call[0] += 1
        if i >= calls:
            return
        assert work(loops) >= 0
        with lock:
            done[0] += 1


start = time.perf_counter()
pool = [threading.Thread(target=worker) for _ in range(threads)]
for t in pool:
    t.start()
for t in pool:
    t.join()
print(f"work {time.perf_counter() - start:.4f}s")
print(f"{done[0]} passed in {time.perf_counter() - start:.2f}s")
"""
)
WORK_RE = re.compile(r"^work ([0-9.]+)s$", re.MULTILINE)

Records = dict[str, list[dict]]  # cell ("seq", "collect", "ours@4", ...) -> one record per round


def cell(config: str, threads: int) -> str:
    return f"{config}@{threads}"


def run_bare(interp: run.Interpreter, suite: suites.Suite, threads: int, tag: str) -> dict:
    """The cpu suite's work in ``threads`` plain threads, in the same interpreter as ours."""
    loops = suites.SUITES["cpu"]["loops"]
    argv = [str(interp.pythons["ours"]), "-c", BARE_SCRIPT, str(threads), str(suite.tests)]
    result = measure.run_command([*argv, str(loops)], suite.path, TIMEOUT_S)
    problem = result.problem(suite.tests)
    found = WORK_RE.search(result.output)
    record = {
        "seconds": result.seconds,
        "rss_mib": result.peak_rss_mib,
        "problem": problem,
        "work_s": float(found.group(1)) if found else None,
    }
    run.log(
        f"[{interp.name} {tag}] {suite.name:<13} {'bare':<9}"
        f"{result.seconds:7.2f}s {result.peak_rss_mib:7.1f} MiB  {problem or 'ok'}"
    )
    return record


def run_collect(interp: run.Interpreter, suite: suites.Suite, tag: str) -> dict:
    """Start-up and collection of ours (plugin loaded, no tests run): subtracted from ours' time
    for the net ours/bare ratio."""
    args = [*run.PYTEST_ARGS, *run.cache_args("ours", interp.name), "--collect-only"]
    result = measure.run_pytest(interp.pythons["ours"], args, suite.path, TIMEOUT_S)
    problem = None if result.returncode == 0 else f"exit code {result.returncode}"
    run.log(f"[{interp.name} {tag}] {suite.name:<13} {'collect':<9}{result.seconds:7.2f}s")
    return {"seconds": result.seconds, "rss_mib": result.peak_rss_mib, "problem": problem}


def bench_suite(
    interp: run.Interpreter, name: str, configs: list[str], threads: list[int], rounds: int
) -> Records:
    suite = suites.generate(name)
    run.warm_up(interp, suite)
    records: Records = {}

    def keep(key: str, record: dict) -> None:
        records.setdefault(key, []).append(record)

    for r in range(1, rounds + 1):
        keep("seq", run.run_one(interp, "seq", suite, 1, f"r{r}"))
        if name == "cpu" and "bare" in configs:
            keep("collect", run_collect(interp, suite, f"r{r}"))
        for n in threads:
            tag = f"r{r} N={n}"
            for config in configs:
                if config == "bare":
                    if name == "cpu":
                        keep(cell("bare", n), run_bare(interp, suite, n, tag))
                elif config in interp.pythons:
                    record = run.run_one(interp, config, suite, n, tag, overrides=False)
                    keep(cell(config, n), record)
    return records


# ---------------------------------------------------------------------------------------------
# Tables


def median_of(records: list[dict] | None, key: str = "seconds") -> float | None:
    """Median of ``key`` over the rounds, or None if any round failed."""
    if not records or any(r["problem"] or r.get(key) is None for r in records):
        return None
    return statistics.median(r[key] for r in records)


def time_cell(records: list[dict] | None, seq: float | None) -> str:
    if not records:
        return "-"
    value = median_of(records)
    if value is None:
        return "FAIL"
    return f"{value:.2f}s ({seq / value:.2f}x)" if seq else f"{value:.2f}s"


def rss_cell(records: list[dict] | None) -> str:
    return run.fmt_rss(records)


def rows_for(
    results: dict[str, Records], configs: list[str], threads: list[int], fmt
) -> list[list[str]]:
    rows = []
    for name, records in results.items():
        seq = median_of(records.get("seq"))
        rows.append([name, "seq", *(fmt(records.get("seq"), None) for _ in threads)])
        for config in configs:
            if config == "bare" and name != "cpu":
                continue
            cells = [fmt(records.get(cell(config, n)), seq) for n in threads]
            rows.append([name, config, *cells])
    return rows


def bare_ratios(records: Records, threads: list[int]) -> dict[int, tuple[float, float] | None]:
    """N -> (whole-process ours/bare, net ours/bare) from medians; None where a run failed."""
    collect = median_of(records.get("collect"))
    ratios: dict[int, tuple[float, float] | None] = {}
    for n in threads:
        ours = median_of(records.get(cell("ours", n)))
        bare = median_of(records.get(cell("bare", n)))
        work = median_of(records.get(cell("bare", n)), "work_s")
        if None in (ours, bare, work, collect):
            ratios[n] = None
        else:
            ratios[n] = (ours / bare, (ours - collect) / work)
    return ratios


def verdicts(results: dict[str, Records], threads: list[int], free_threaded: bool) -> list[str]:
    lines = []
    if not free_threaded:
        lines.append("- (GIL build: the targets are for the free-threaded build; shown anyway)")
    if "trivial" in results:
        records = results["trivial"]
        seq = median_of(records.get("seq"))
        speedups = {
            n: seq / t for n in threads if seq and (t := median_of(records.get(cell("ours", n))))
        }
        if speedups:
            best = max(speedups, key=speedups.__getitem__)
            ok = speedups[best] >= TRIVIAL_SPEEDUP_TARGET
            lines.append(
                f"- trivial, ours >= {TRIVIAL_SPEEDUP_TARGET:.0f}x faster than sequential: "
                f"{'PASS' if ok else 'FAIL'} (best {speedups[best]:.2f}x at N={best})"
            )
        else:
            lines.append("- trivial: no result (a run failed)")
    if "cpu" in results and "collect" in results["cpu"]:
        ratios = bare_ratios(results["cpu"], threads)
        nets = {n: r[1] for n, r in ratios.items() if r is not None}
        ok = len(nets) == len(threads) and all(v <= CPU_BARE_TARGET for v in nets.values())
        shown = ", ".join(f"N={n}: {v:.2f}" for n, v in nets.items()) or "no result"
        lines.append(
            f"- cpu, ours within {CPU_BARE_TARGET - 1:.0%} of bare threads (net ours/bare <= "
            f"{CPU_BARE_TARGET}) at every N: {'PASS' if ok else 'FAIL'} ({shown})"
        )
    return lines


def bare_table(records: Records, threads: list[int]) -> str:
    ratios = bare_ratios(records, threads)

    def fmt(n: int, which: int) -> str:
        value = ratios[n]
        return "-" if value is None else f"{value[which]:.2f}"

    collect = median_of(records.get("collect"))
    rows = [
        ["ours/bare, whole process", *(fmt(n, 0) for n in threads)],
        ["ours/bare, net of start-up", *(fmt(n, 1) for n in threads)],
    ]
    note = f"ours' start-up and collection (`--collect-only`): {collect or 0:.2f}s, median"
    return run.table(["cpu", *(f"N={n}" for n in threads)], rows) + f"\n\n{note}"


def render(args: argparse.Namespace, interp: run.Interpreter, results, elapsed: float) -> str:
    threads, configs = args.threads, args.configs
    header = ["suite", "config", *(f"N={n}" for n in threads)]
    info = interp.info["ours"]
    out = [
        f"# Thread scaling ({interp.name}: Python {info['python']}"
        f"{', free-threaded' if info['free_threaded'] else ''})",
        "",
        f"- {os.process_cpu_count()} usable CPUs "
        f"({run.read_first('/proc/cpuinfo', 'model name')}); revision {run.git_revision()}",
        f"- {args.rounds} round(s), took {elapsed / 60:.1f} min, finished "
        + datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "- N: `--threadpool N` (ours, opponent), `-n N` (xdist), N threads (bare); seq "
        "(sequential pytest) is the same at every N",
        *(f"- {c}: unavailable ({why})" for c, why in interp.unavailable.items()),
        "",
        "## Median wall time (speedup over sequential pytest)",
        "",
        run.table(header, rows_for(results, configs, threads, time_cell)),
        "",
        "## Median peak RSS (MiB; xdist: controller and workers summed)",
        "",
        run.table(header, rows_for(results, configs, threads, lambda recs, _seq: rss_cell(recs))),
        "",
    ]
    if "cpu" in results and "collect" in results["cpu"]:
        out += ["## cpu: ours against bare threads", "", bare_table(results["cpu"], threads), ""]
    out += ["## Targets", "", *verdicts(results, threads, info["free_threaded"]), ""]
    problems = [
        f"- {name} {key} round {i}: {rec['problem']}"
        + (f"; log: `{rec['log']}`" if "log" in rec else "")
        for name, records in results.items()
        for key, recs in records.items()
        for i, rec in enumerate(recs, 1)
        if rec["problem"]
    ]
    out += ["## Problems", "", *(problems or ["None."]), ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Main


def threads_arg(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"a comma-separated list of thread counts (got {text!r})")
    return values


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interp", choices=list(run.INTERPRETERS), default="3.13t")
    parser.add_argument("--quick", action="store_true", help="1 round at 2, 8 and 16 threads")
    parser.add_argument("--rounds", type=int, default=None, help="default 2 (--quick: 1)")
    parser.add_argument("--threads", type=threads_arg, default=None)
    parser.add_argument("--suites", type=run.csv(list(suites.SUITES)), default=list(DEFAULT_SUITES))
    parser.add_argument("--configs", type=run.csv(list(CONFIGS)), default=list(CONFIGS))
    parser.add_argument("--out", type=Path, help="also write the markdown to this file")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 2
    if args.threads is None:
        args.threads = list(QUICK_THREADS if args.quick else DEFAULT_THREADS)
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    pytest_configs = [c for c in args.configs if c in THREADED]
    interp = run.prepare_interpreter(args.interp, pytest_configs)
    results = {
        name: bench_suite(interp, name, args.configs, args.threads, args.rounds)
        for name in args.suites
    }
    markdown = render(args, interp, results, time.perf_counter() - started)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(markdown)
    print(markdown)
    failed = sum(
        bool(rec["problem"])
        for records in results.values()
        for key, recs in records.items()
        if not key.startswith(("opponent@", "xdist@"))
        for rec in recs
    )
    if failed:
        run.log(f"[scaling] {failed} run(s) of ours, sequential pytest or bare failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
