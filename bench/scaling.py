"""Thread scaling of ``--threadpool`` (meant for a machine with 16 or more cores).

Runs the cpu and trivial suites (bench/suites.py) sequentially and with ``--threadpool`` 1, 2,
4, 8 and 16 on the free-threaded interpreter, alternating the configurations per round, and
prints a table of median wall times and speedups over sequential pytest. Needs only
``.venv-3.13t`` (``make setup``); no bench venvs, no network::

    .venv-3.13t/bin/python bench/scaling.py [--rounds 3] [--threads 1,2,4,8,16] [--suites cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import measure
import suites

REPO = Path(__file__).resolve().parent.parent
PYTHON = REPO / ".venv-3.13t" / "bin" / "python"
PYTEST_ARGS = ["-q", "-p", "no:cacheprovider"]
DEFAULT_THREADS = (1, 2, 4, 8, 16)
DEFAULT_SUITES = ("cpu", "trivial")
TIMEOUT_S = 600.0

Config = tuple[str, list[str]]  # (label, pytest arguments)


def configs(threads: list[int]) -> list[Config]:
    return [
        ("seq", ["-p", "no:threadpool"]),
        *((f"t={n}", ["--threadpool", str(n)]) for n in threads),
    ]


def run_suite(suite: suites.Suite, plan: list[Config], rounds: int) -> dict[str, list[float]]:
    """Median-ready wall times per configuration; a failed run is reported and left out."""
    times: dict[str, list[float]] = {label: [] for label, _ in plan}
    measure.run_pytest(PYTHON, [*PYTEST_ARGS, "--collect-only"], suite.path, TIMEOUT_S)  # warm-up
    for r in range(1, rounds + 1):
        for label, args in plan:
            result = measure.run_pytest(PYTHON, [*PYTEST_ARGS, *args], suite.path, TIMEOUT_S)
            problem = result.problem(suite.tests)
            status = problem or "ok"
            print(
                f"[r{r}] {suite.name:<8} {label:<5} {result.seconds:7.2f}s  {status}",
                file=sys.stderr,
            )
            if problem is None:
                times[label].append(result.seconds)
    return times


def row(name: str, plan: list[Config], times: dict[str, list[float]]) -> str:
    medians = {label: statistics.median(t) if t else None for label, t in times.items()}
    seq = medians.get("seq")
    cells = []
    for label, _ in plan:
        value = medians[label]
        if value is None:
            cells.append("FAIL")
        elif seq and label != "seq":
            cells.append(f"{value:.2f}s ({seq / value:.2f}x)")
        else:
            cells.append(f"{value:.2f}s")
    return f"| {name} | " + " | ".join(cells) + " |"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", default=",".join(map(str, DEFAULT_THREADS)))
    parser.add_argument("--suites", default=",".join(DEFAULT_SUITES))
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not PYTHON.exists():
        sys.exit(f"{PYTHON} is missing: run `make setup` first")
    plan = configs([int(n) for n in args.threads.split(",")])
    lines = [
        f"{os.process_cpu_count()} usable CPUs; {args.rounds} rounds; median wall time "
        "(speedup over sequential pytest)",
        "",
        "| suite | " + " | ".join(label for label, _ in plan) + " |",
        "|---|" + "---|" * len(plan),
    ]
    for name in args.suites.split(","):
        suite = suites.generate(name)
        lines.append(row(name, plan, run_suite(suite, plan, args.rounds)))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
