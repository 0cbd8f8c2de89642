"""Benchmark harness: our ``--threadpool`` against sequential pytest, the PyPI
``pytest-threadpool`` (the opponent) and pytest-xdist, on generated suites (bench/suites.py).

Usage (``make bench`` runs the defaults)::

    .venv-3.13t/bin/python bench/run.py [--interp 3.13t,3.13] [--suites cpu,io]
                                         [--configs seq,ours,opponent,xdist] [--rounds 3]

Rounds alternate the configurations (A B C D A B C D ...) per suite. Results go to
bench/results/latest.md (tables), latest.json (raw runs) and latest.png (chart).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import measure
import suites

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENVS = BENCH / ".venvs"
RESULTS = BENCH / "results"
LOGS = RESULTS / "logs"

DEFAULT_ROUNDS = 5  # this VM varies by +-15% run to run; medians need rounds
RUN_TIMEOUT_S = 300.0
THREAD_OVERRIDES = {"io": 64}  # ours and the opponent; xdist always gets one worker per CPU
PYTEST_ARGS = ["-q"]
PYTEST_PIN = "pytest==9.0.2"
OPPONENT_PIN = "pytest-threadpool==0.4.0"
XDIST_PIN = "pytest-xdist==3.8.0"
CHART_PIN = "matplotlib==3.11.2"
OURS_VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]

INTERPRETERS = {"3.13t": REPO / ".venv-3.13t", "3.13": REPO / ".venv-3.13"}
CONFIGS = {
    "seq": "sequential pytest",
    "ours": "ours --threadpool",
    "opponent": f"{OPPONENT_PIN} --threadpool",
    "xdist": f"{XDIST_PIN} -n",
}
# Separate venvs: ours and the opponent share the import name and the --threadpool option. Each
# holds pytest and one runner only (the repo venvs also carry xdist and the dev tools, whose
# start-up and memory would be charged to ours). `seq` runs in ours' venv with our plugin off.
BENCH_VENV_REQUIREMENTS = {
    "ours": (PYTEST_PIN, str(REPO)),
    "opponent": (PYTEST_PIN, OPPONENT_PIN),
    "xdist": (PYTEST_PIN, XDIST_PIN),
}
SOURCE_GLOBS = ("src/pytest_threadpool/**/*.py", "src/pytest_threadpool/**/*.[ch]")
RATIOS = (("ours", "seq"), ("ours", "opponent"), ("ours", "xdist"))

PROBE = """
import importlib.metadata as md, json, sys, sysconfig
def version(dist):
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None
try:
    import pytest_threadpool
    plugin_path = pytest_threadpool.__file__
except ImportError:
    plugin_path = None
print(json.dumps({
    "python": sys.version.split()[0],
    "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    "base": sys._base_executable,
    "pytest": version("pytest"),
    "plugin": version("pytest-threadpool"),
    "plugin_path": plugin_path,
    "xdist": version("pytest-xdist"),
}))
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Virtual environments


def probe(python: Path) -> dict:
    out = subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def source_digest() -> str:
    """Hash of what a wheel of ours is built from: the bench venv is rebuilt when it changes."""
    digest = hashlib.sha256()
    files = sorted({f for pattern in SOURCE_GLOBS for f in REPO.glob(pattern)})
    for path in [*files, REPO / "setup.py", REPO / "pyproject.toml"]:
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def ensure_venv(path: Path, base: str, requirements: tuple[str, ...], source: str = "") -> Path:
    """Create (or reuse, when its stamp matches) a venv with ``requirements``; return python.
    ``source`` names the sources a local requirement is built from (see ``source_digest``)."""
    python = path / "bin" / "python"
    stamp = path / ".bench-stamp"
    want = json.dumps({"base": base, "requirements": requirements, "source": source})
    if python.exists() and stamp.is_file() and stamp.read_text() == want:
        return python
    log(f"[bench] creating {path.relative_to(REPO)} ({', '.join(requirements)})")
    shutil.rmtree(path, ignore_errors=True)
    steps = [
        [base, "-m", "venv", str(path)],
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            shutil.rmtree(path, ignore_errors=True)
            raise RuntimeError(f"{shlex.join(step)} failed:\n{done.stdout[-2000:]}{done.stderr}")
    stamp.write_text(want)
    return python


def check_identity(config: str, info: dict) -> None:
    """Make sure each venv holds exactly the runner it is supposed to benchmark."""
    ours_src = str(REPO / "src")
    path = info["plugin_path"] or ""
    installed_ours = info["plugin"] == OURS_VERSION and not path.startswith(ours_src)
    problems = {
        "dev": not path.startswith(ours_src),
        "ours": not installed_ours or info["xdist"] is not None,
        "opponent": path.startswith(ours_src) or info["plugin"] != OPPONENT_PIN.split("==")[1],
        "xdist": info["plugin"] is not None or info["xdist"] is None,
    }
    if problems.get(config):
        raise RuntimeError(f"venv for {config!r} has the wrong packages: {info}")


@dataclass
class Interpreter:
    name: str
    pythons: dict[str, Path]  # config -> python
    info: dict[str, dict]  # config -> probe result
    unavailable: dict[str, str]  # config -> why


def prepare_interpreter(name: str, configs: list[str]) -> Interpreter:
    dev = INTERPRETERS[name] / "bin" / "python"
    if not dev.exists():
        raise SystemExit(f"{dev} is missing: run `make setup` first")
    dev_info = probe(dev)
    check_identity("dev", dev_info)
    interp = Interpreter(name, {}, {}, {})
    # ours first: without it there is nothing to compare (and seq runs in its venv).
    wanted = ["ours", *(c for c in configs if c in BENCH_VENV_REQUIREMENTS and c != "ours")]
    for config in wanted:
        source = source_digest() if config == "ours" else ""
        venv = VENVS / f"{config}-{name}"
        try:
            python = ensure_venv(venv, dev_info["base"], BENCH_VENV_REQUIREMENTS[config], source)
            interp.info[config] = probe(python)
            check_identity(config, interp.info[config])
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            if config == "ours":
                raise SystemExit(f"cannot build the bench venv for ours on {name}: {exc}") from None
            interp.unavailable[config] = str(exc).splitlines()[0]
            log(f"[bench] {config} on {name} unavailable: {exc}")
            continue
        interp.pythons[config] = python
    interp.pythons["seq"] = interp.pythons["ours"]
    return interp


# ---------------------------------------------------------------------------------------------
# Running


def cache_args(config: str, interp: str) -> list[str]:
    """pytest's cache stays on (ours orders tests longest-first from the durations kept there,
    as it would for a user from the second run on) but each configuration has its own."""
    return ["-o", f"cache_dir=.cache-{interp}-{config}"]


def config_args(config: str, suite: str, workers: int, overrides: bool = True) -> list[str]:
    """``overrides`` off: every runner gets ``workers`` threads or processes (bench/scaling.py),
    also where THREAD_OVERRIDES would give ours and the opponent more."""
    threads = THREAD_OVERRIDES.get(suite, workers) if overrides else workers
    return {
        "seq": ["-p", "no:threadpool"],
        "ours": ["--threadpool", str(threads)],
        "opponent": ["--threadpool", str(threads)],
        "xdist": ["-n", str(workers)],
    }[config]


def run_one(
    interp: Interpreter,
    config: str,
    suite: suites.Suite,
    workers: int,
    tag: str,
    overrides: bool = True,
) -> dict:
    """One timed run, as a JSON-ready record; failures keep their output in bench/results/logs.
    ``tag`` names the round (``r2``) in the log file and the progress line; ``overrides``: see
    ``config_args``."""
    python = interp.pythons[config]
    args = [
        *PYTEST_ARGS,
        *cache_args(config, interp.name),
        *config_args(config, suite.name, workers, overrides),
    ]
    result = measure.run_pytest(python, args, suite.path, RUN_TIMEOUT_S)
    problem = result.problem(suite.tests)
    record = {"seconds": result.seconds, "rss_mib": result.peak_rss_mib, "problem": problem}
    if problem:
        LOGS.mkdir(parents=True, exist_ok=True)
        logfile = LOGS / f"{interp.name}-{suite.name}-{config}-{tag}.txt"
        command = shlex.join([str(python), "-m", "pytest", *args])
        logfile.write_text(f"$ cd {suite.path} && {command}\n{result.output}")
        record["log"] = str(logfile.relative_to(REPO))
    log(
        f"[{interp.name} {tag}] {suite.name:<13} {config:<9}"
        f"{result.seconds:7.2f}s {result.peak_rss_mib:7.1f} MiB  {problem or 'ok'}"
    )
    return record


def warm_up(interp: Interpreter, suite: suites.Suite) -> None:
    """Collect once so assertion-rewritten bytecode is cached before anything is timed."""
    args = [*PYTEST_ARGS, "-p", "no:cacheprovider", "-p", "no:threadpool", "--collect-only"]
    measure.run_pytest(interp.pythons["seq"], args, suite.path, RUN_TIMEOUT_S)


def bench_interpreter(
    interp: Interpreter, suite_names: list[str], configs: list[str], rounds: int, workers: int
) -> dict[str, dict[str, list[dict]]]:
    runs: dict[str, dict[str, list[dict]]] = {}
    available = [c for c in configs if c in interp.pythons]
    generated = [suites.generate(name) for name in suite_names]
    for suite in generated:
        warm_up(interp, suite)
        runs[suite.name] = {c: [] for c in available}
    for r in range(1, rounds + 1):
        for suite in generated:
            for config in available:
                record = run_one(interp, config, suite, workers, f"r{r}")
                runs[suite.name][config].append(record)
    return runs


# ---------------------------------------------------------------------------------------------
# Summaries


def median_seconds(records: list[dict]) -> float | None:
    """Median wall time, or None if any round failed (a failing config is never timed)."""
    if not records or any(r["problem"] for r in records):
        return None
    return statistics.median(r["seconds"] for r in records)


def round_ratios(runs: dict[str, list[dict]], top: str, bottom: str) -> list[float]:
    pairs = zip(runs.get(top, []), runs.get(bottom, []), strict=False)
    return [a["seconds"] / b["seconds"] for a, b in pairs if not a["problem"] and not b["problem"]]


def fmt_time(runs: dict[str, list[dict]], config: str, unavailable: dict[str, str]) -> str:
    if config in unavailable:
        return "n/a"
    if config not in runs:
        return "-"
    value = median_seconds(runs[config])
    return "FAIL" if value is None else f"{value:.2f}"


def fmt_ratio(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):.2f}" if ratios else "-"


def fmt_rss(records: list[dict] | None) -> str:
    if not records:
        return "-"
    return f"{statistics.median(r['rss_mib'] for r in records):.0f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def time_table(results: dict, configs: list[str]) -> str:
    header = ["suite", "interp", "tests", *(f"{c} (s)" for c in configs)]
    header += [f"{a}/{b}" for a, b in RATIOS if a in configs and b in configs]
    rows = []
    for interp, data in results["interpreters"].items():
        for suite, runs in data["runs"].items():
            row = [suite, interp, str(suites.expected_tests(suite))]
            row += [fmt_time(runs, c, data["unavailable"]) for c in configs]
            row += [
                fmt_ratio(round_ratios(runs, a, b))
                for a, b in RATIOS
                if a in configs and b in configs
            ]
            rows.append(row)
    return table(header, rows)


def per_round_table(results: dict, configs: list[str]) -> str:
    pairs = [(a, b) for a, b in RATIOS if a in configs and b in configs]
    rows = []
    for interp, data in results["interpreters"].items():
        for suite, runs in data["runs"].items():
            ratios = [round_ratios(runs, a, b) for a, b in pairs]
            cells = [" ".join(f"{x:.2f}" for x in values) or "-" for values in ratios]
            rows.append([suite, interp, *cells])
    return table(["suite", "interp", *(f"{a}/{b} per round" for a, b in pairs)], rows)


def rss_table(results: dict, configs: list[str]) -> str:
    rows = []
    for interp, data in results["interpreters"].items():
        for suite, runs in data["runs"].items():
            rows.append([suite, interp, *(fmt_rss(runs.get(c)) for c in configs)])
    return table(["suite", "interp", *(f"{c} (MiB)" for c in configs)], rows)


def problems_section(results: dict) -> str:
    lines = []
    for interp, data in results["interpreters"].items():
        for config, why in data["unavailable"].items():
            lines.append(f"- {interp} {config}: unavailable ({why})")
        for suite, runs in data["runs"].items():
            for config, records in runs.items():
                for n, rec in enumerate(records, 1):
                    if rec["problem"]:
                        where = f"; log: `{rec['log']}`" if "log" in rec else ""
                        what = f"{interp} {suite} {config} round {n}"
                        lines.append(f"- {what}: {rec['problem']}{where}")
    return "\n".join(lines) or "None: every run exited 0 with the expected number of passed tests."


def ours_failures(results: dict) -> int:
    """Failed runs of ours or sequential pytest: they make the harness exit non-zero."""
    return sum(
        bool(record["problem"])
        for data in results["interpreters"].values()
        for runs in data["runs"].values()
        for config in ("seq", "ours")
        for record in runs.get(config, [])
    )


# ---------------------------------------------------------------------------------------------
# Report


def read_first(path: str, key: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{rev}{' (src/ modified)' if dirty else ''}"


def machine_facts(workers: int) -> list[str]:
    return [
        f"CPU: {read_first('/proc/cpuinfo', 'model name')}, "
        f"{os.process_cpu_count()} usable CPUs; memory: {read_first('/proc/meminfo', 'MemTotal')}",
        f"OS: {platform.system()} {platform.release()} ({platform.machine()})",
        f"Threads/workers N = {workers} (ours and opponent on io: {THREAD_OVERRIDES['io']}); "
        f"xdist always -n {workers}",
        f"Revision: {git_revision()}",
        "Load average (1/5/15 min) at start: " + " ".join(f"{x:.2f}" for x in os.getloadavg()),
    ]


def render_markdown(results: dict) -> str:
    configs = results["configs"]
    interp_lines = [
        f"- {name}: Python {data['info']['ours']['python']}"
        f"{' (free-threaded)' if data['info']['ours']['free_threaded'] else ''}; "
        + ", ".join(
            f"{c}: pytest {i['pytest']}"
            + (f" + pytest-threadpool {i['plugin']}" if c != "xdist" and i["plugin"] else "")
            + (f" + pytest-xdist {i['xdist']}" if i["xdist"] else "")
            for c, i in data["info"].items()
        )
        for name, data in results["interpreters"].items()
    ]
    return "\n".join(
        [
            "# Benchmark results",
            "",
            f"Command: `{results['command']}` ({results['rounds']} rounds, "
            f"finished {results['finished']}, took {results['elapsed_s'] / 60:.1f} min)",
            "",
            *(f"- {fact}" for fact in results["machine"]),
            *interp_lines,
            "",
            "Configurations: " + "; ".join(f"`{c}` = {CONFIGS[c]}" for c in configs) + ".",
            "Times are medians of wall-clock seconds per pytest process (startup included); ratios",
            "are medians of per-round ratios over the rounds where both runs succeeded (below 1:",
            "ours is faster). FAIL: some round exited non-zero or passed the wrong number of tests",
            "(see Problems).",
            "",
            "## Median wall time and ratios",
            "",
            time_table(results, configs),
            "",
            "## Per-round ratios",
            "",
            per_round_table(results, configs),
            "",
            "## Peak RSS (median over rounds; xdist: controller plus workers, summed)",
            "",
            rss_table(results, configs),
            "",
            "## Problems",
            "",
            problems_section(results),
            "",
        ]
    )


def draw_chart(json_path: Path, png_path: Path) -> None:
    """Render the PNG with matplotlib from a separate tools venv (never imported here)."""
    base = next((INTERPRETERS[n] for n in ("3.13", "3.13t") if INTERPRETERS[n].exists()), None)
    if base is None:
        return
    try:
        python = ensure_venv(VENVS / "tools", probe(base / "bin" / "python")["base"], (CHART_PIN,))
        subprocess.run(
            [str(python), str(BENCH / "chart.py"), str(json_path), str(png_path)], check=True
        )
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        log(f"[bench] chart skipped: {exc}")


# ---------------------------------------------------------------------------------------------
# Main


def csv(choices: list[str]):
    def parse(text: str) -> list[str]:
        items = [x.strip() for x in text.split(",") if x.strip()]
        bad = [x for x in items if x not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)} (got {text!r})")
        return items

    return parse


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interp", type=csv(list(INTERPRETERS)), default=list(INTERPRETERS))
    parser.add_argument("--suites", type=csv(list(suites.SUITES)), default=list(suites.SUITES))
    parser.add_argument("--configs", type=csv(list(CONFIGS)), default=list(CONFIGS))
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--workers", type=int, default=os.process_cpu_count() or 1)
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG")
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="where latest.{md,json,png} go (bench/results)"
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started = datetime.datetime.now(datetime.UTC)
    shutil.rmtree(LOGS, ignore_errors=True)  # logs always belong to the latest run
    python = Path(sys.executable)
    shown = python.relative_to(REPO) if python.is_relative_to(REPO) else python
    results: dict = {
        "command": shlex.join([str(shown), "bench/run.py", *argv]),
        "rounds": args.rounds,
        "configs": args.configs,
        "machine": machine_facts(args.workers),
        "interpreters": {},
    }
    for name in args.interp:
        interp = prepare_interpreter(name, args.configs)
        runs = bench_interpreter(interp, args.suites, args.configs, args.rounds, args.workers)
        results["interpreters"][name] = {
            "info": interp.info,
            "unavailable": interp.unavailable,
            "runs": runs,
        }
    finished = datetime.datetime.now(datetime.UTC)
    results["finished"] = finished.strftime("%Y-%m-%d %H:%M UTC")
    results["elapsed_s"] = (finished - started).total_seconds()
    results["machine"].append(
        "Load average at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(results, indent=1))
    markdown = render_markdown(results)
    (args.out / "latest.md").write_text(markdown)
    if not args.no_chart:
        draw_chart(args.out / "latest.json", args.out / "latest.png")
    print(markdown)
    if broken := ours_failures(results):
        log(f"[bench] {broken} run(s) of ours or sequential pytest failed; see Problems above")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
