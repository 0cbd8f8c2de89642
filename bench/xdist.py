"""pytest-xdist processes x our threads (``-n N --threadpool M``) against either alone.

On each repo interpreter (.venv-3.13 and .venv-3.13t: pytest, pytest-xdist and this package in
place, nothing new installed), the cpu, io and trivial suites (bench/suites.py) run under:

- ``seq``: sequential pytest (``-p no:threadpool -p no:xdist``), for reference;
- ``xdist``: ``-n 2`` (our plugin loaded but inactive, as without ``--threadpool``);
- ``threads``: ``--threadpool 2`` (io: ``--threadpool 32``);
- ``both``: ``-n 2 --threadpool 4`` (io: ``-n 2 --threadpool 32``).

Every run also gets ``-p no:<plugin>`` for the dev plugins of the repo venvs (pytest-asyncio,
-flask, -timeout, -benchmark, -cov, -rerunfailures, time-machine), so each configuration loads
the same plugins and only those it needs. Rounds alternate the configurations per suite, after
one untimed ``--collect-only`` per suite; the default is one round (about 2 minutes on 2 cores),
so the figures are single samples. Writes bench/results/xdist.md with the exact commands::

    .venv-3.13t/bin/python bench/xdist.py [--interp 3.13t,3.13] [--suites cpu,io,trivial]
                                          [--rounds 1] [--processes 2] [--out bench/results]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import statistics
import sys
from pathlib import Path

import measure
import run
import suites

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
LOGS = RESULTS / "logs"
INTERPRETERS = {"3.13t": REPO / ".venv-3.13t", "3.13": REPO / ".venv-3.13"}
SUITES = ("cpu", "io", "trivial")
CONFIGS = ("seq", "xdist", "threads", "both")
RUN_TIMEOUT_S = 300.0
DEV_PLUGINS = ("asyncio", "flask", "timeout", "benchmark", "pytest_cov", "rerunfailures")
DEV_PLUGINS += ("time_machine",)
PLUGIN_ARGS = [arg for name in DEV_PLUGINS for arg in ("-p", f"no:{name}")]


def config_args(config: str, suite: str, processes: int) -> list[str]:
    """The configuration's own arguments: threads alone get one per process of the xdist runs
    (two), each xdist worker gets twice that (four); io tests sleep, so 32 threads there."""
    io = suite == "io"
    return {
        "seq": ["-p", "no:threadpool", "-p", "no:xdist"],
        "xdist": ["-n", str(processes)],
        "threads": ["--threadpool", "32" if io else str(processes)],
        "both": ["-n", str(processes), "--threadpool", "32" if io else str(2 * processes)],
    }[config]


def pytest_args(interp: str, config: str, suite: str, processes: int) -> list[str]:
    cache = ["-o", f"cache_dir=.cache-{interp}-xdist-bench-{config}"]
    return ["-q", *cache, *PLUGIN_ARGS, *config_args(config, suite, processes)]


def command(python: Path, args: list[str], suite: suites.Suite) -> str:
    return f"cd {suite.path.relative_to(REPO)} && " + shlex.join(
        [str(python.relative_to(REPO)), "-m", "pytest", *args]
    )


def bench(args: argparse.Namespace) -> dict[str, dict[str, dict[str, list[dict]]]]:
    """interp -> suite -> config -> one record per round."""
    results: dict[str, dict[str, dict[str, list[dict]]]] = {}
    for interp in args.interp:
        python = INTERPRETERS[interp] / "bin" / "python"
        if not python.exists():
            raise SystemExit(f"{python} is missing: run `make setup` first")
        generated = [suites.generate(name) for name in args.suites]
        for suite in generated:
            warm = ["-q", "-p", "no:cacheprovider", *PLUGIN_ARGS, "-p", "no:threadpool"]
            measure.run_pytest(python, [*warm, "--collect-only"], suite.path, RUN_TIMEOUT_S)
        runs = results[interp] = {s.name: {c: [] for c in CONFIGS} for s in generated}
        for round_number in range(1, args.rounds + 1):
            for suite in generated:
                for config in CONFIGS:
                    argv = pytest_args(interp, config, suite.name, args.processes)
                    result = measure.run_pytest(python, argv, suite.path, RUN_TIMEOUT_S)
                    problem = result.problem(suite.tests)
                    record = {
                        "seconds": result.seconds,
                        "rss_mib": result.peak_rss_mib,
                        "problem": problem,
                        "command": command(python, argv, suite),
                    }
                    if problem:
                        LOGS.mkdir(parents=True, exist_ok=True)
                        log = LOGS / f"xdist-{interp}-{suite.name}-{config}-r{round_number}.txt"
                        log.write_text(f"$ {record['command']}\n{result.output}")
                        record["log"] = str(log.relative_to(REPO))
                    runs[suite.name][config].append(record)
                    run.log(
                        f"[xdist {interp} r{round_number}] {suite.name:<8} {config:<8}"
                        f"{result.seconds:7.2f}s {result.peak_rss_mib:7.1f} MiB  {problem or 'ok'}"
                    )
    return results


def median(records: list[dict], key: str) -> float | None:
    if not records or any(r["problem"] for r in records):
        return None
    return statistics.median(r[key] for r in records)


def cell(value: float | None, digits: int = 2) -> str:
    return "FAIL" if value is None else f"{value:.{digits}f}"


def speedup(seq: float | None, seconds: float | None) -> str:
    return "-" if seq is None or seconds is None else f"{seq / seconds:.2f}x"


def render(results: dict, args: argparse.Namespace, header: list[str]) -> str:
    time_rows, rss_rows, command_rows, problems = [], [], [], []
    for interp, by_suite in results.items():
        for suite, runs in by_suite.items():
            seconds = {c: median(runs[c], "seconds") for c in CONFIGS}
            speedups = [speedup(seconds["seq"], seconds[c]) for c in CONFIGS[1:]]
            tests = str(suites.expected_tests(suite))
            time_rows.append([suite, interp, tests, *(cell(seconds[c]) for c in CONFIGS)])
            time_rows[-1] += speedups
            rss_rows.append(
                [suite, interp, *(cell(median(runs[c], "rss_mib"), 0) for c in CONFIGS)]
            )
            for config in CONFIGS:
                command_rows.append([suite, interp, config, f"`{runs[config][0]['command']}`"])
                for number, record in enumerate(runs[config], 1):
                    if record["problem"]:
                        where = f"; log: `{record['log']}`" if "log" in record else ""
                        what = f"{interp} {suite} {config} round {number}"
                        problems.append(f"- {what}: {record['problem']}{where}")
    p = args.processes
    return "\n".join(
        [
            "# pytest-xdist processes x threads",
            "",
            *header,
            "",
            "Configurations (io suite: 32 threads wherever threads are given): "
            f"`seq` = sequential pytest; `xdist` = `-n {p}`; `threads` = `--threadpool {p}`; "
            f"`both` = `-n {p} --threadpool {2 * p}`. Times are wall-clock seconds of the whole "
            f"pytest process tree (start-up and collection included), median over "
            f"{args.rounds} round(s); with one round each figure is a single sample. Speedup = "
            "seq time / time (higher is better). FAIL: the run exited non-zero or passed the "
            "wrong number of tests (see Problems).",
            "",
            f"Measured on {os.process_cpu_count()} usable CPUs of a shared machine (load "
            "averages above): other processes may have run meanwhile, and "
            f"`-n {p}` alone already occupies {p} CPUs. Compare figures within one row; for "
            "medians rerun with `--rounds 3`.",
            "",
            "## Wall time (s) and speedup over sequential pytest",
            "",
            run.table(
                ["suite", "interp", "tests", *(f"{c} (s)" for c in CONFIGS)]
                + [f"{c} speedup" for c in CONFIGS[1:]],
                time_rows,
            ),
            "",
            "## Peak RSS (MiB; xdist runs: controller plus workers, summed)",
            "",
            run.table(["suite", "interp", *(f"{c}" for c in CONFIGS)], rss_rows),
            "",
            "## Commands",
            "",
            run.table(["suite", "interp", "config", "command (from the repo root)"], command_rows),
            "",
            "## Problems",
            "",
            "\n".join(problems) or "None: every run exited 0 with the expected passed count.",
            "",
        ]
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interp", type=run.csv(list(INTERPRETERS)), default=list(INTERPRETERS))
    parser.add_argument("--suites", type=run.csv(list(SUITES)), default=list(SUITES))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--processes", type=int, default=2, help="xdist -n (default 2)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where xdist.md goes")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started = datetime.datetime.now(datetime.UTC)
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results = bench(args)
    finished = datetime.datetime.now(datetime.UTC)
    load_end = " ".join(f"{x:.2f}" for x in os.getloadavg())
    python = Path(sys.executable)
    shown = python.relative_to(REPO) if python.is_relative_to(REPO) else python
    versions = {
        interp: run.probe(INTERPRETERS[interp] / "bin" / "python") for interp in args.interp
    }
    header = [
        f"Command: `{shlex.join([str(shown), 'bench/xdist.py', *argv])}` (finished "
        f"{finished:%Y-%m-%d %H:%M UTC}, took {(finished - started).total_seconds() / 60:.1f} min)",
        "",
        f"- CPU: {run.read_first('/proc/cpuinfo', 'model name')}, {os.process_cpu_count()} "
        f"usable CPUs; memory: {run.read_first('/proc/meminfo', 'MemTotal')}",
        f"- OS: {platform.system()} {platform.release()} ({platform.machine()})",
        f"- Revision: {run.git_revision()}",
        f"- Load average (1/5/15 min) at start: {load_start}; at the end: {load_end}. The machine "
        "is shared: other processes may have been running during the measurement.",
        *(
            f"- {interp}: Python {info['python']}"
            f"{' (free-threaded)' if info['free_threaded'] else ''}, pytest {info['pytest']}, "
            f"pytest-xdist {info['xdist']}, pytest-threadpool {info['plugin']} (in place)"
            for interp, info in versions.items()
        ),
    ]
    markdown = render(results, args, header)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "xdist.md").write_text(markdown)
    print(markdown)
    failed = sum(
        bool(r["problem"])
        for by_suite in results.values()
        for runs in by_suite.values()
        for records in runs.values()
        for r in records
    )
    if failed:
        run.log(f"[bench] {failed} xdist-bench run(s) failed; see Problems above")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
