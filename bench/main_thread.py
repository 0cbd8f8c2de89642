"""Main-thread CPU per test of a threaded run (issue #17), against sequential pytest.

Builds the trivial suite (bench/suites.py: empty tests) in a temp dir, with 4,000 and 50,000
tests, and runs it under sequential pytest (``-p no:threadpool``), ``--threadpool 2`` and, when a
bench venv with the PyPI ``pytest-threadpool`` exists (``bench/.venvs/opponent-<interp>``, made
by bench/run.py; never created here), the opponent. A tiny plugin passed with ``-p`` records:

- main-thread CPU (``time.thread_time`` on the main thread) from ``pytest_collection_finish`` to
  ``pytest_sessionfinish``, per test: what the main thread spends running and reporting a test;
- whole-process CPU (``time.process_time``) over the same span, per test (all threads);
- the process's wall time (start-up included; load-sensitive), and collection time
  (``pytest_collection`` start to ``pytest_collection_finish``) as a share of it.

CPU times are robust to other load on the machine; wall times (the collection share) are not::

    .venv-3.13t/bin/python bench/main_thread.py [--interp 3.13t,3.13] [--sizes 4000,50000]
                                                 [--rounds 3] [--threads 2] [--src DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import suites

REPO = Path(__file__).resolve().parent.parent
INTERPRETERS = {"3.13t": REPO / ".venv-3.13t", "3.13": REPO / ".venv-3.13"}
OPPONENT_VENVS = REPO / "bench" / ".venvs"
TESTS_PER_MODULE = 200
TIMEOUT_S = 900.0
OURS = "pytest_threadpool.plugin"

PROBE = '''\
"""Records main-thread and process CPU between collection finish and session finish."""
import json
import os
import threading
import time

import pytest

_marks = {}


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_collection(session):
    _marks["collect_start"] = time.perf_counter()
    return (yield)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    _marks["collect_end"] = time.perf_counter()
    _marks["items"] = len(session.items)
    _marks["main_ident"] = threading.get_ident()
    _marks["thread0"] = time.thread_time()
    _marks["process0"] = time.process_time()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    assert threading.get_ident() == _marks["main_ident"]
    result = {
        "items": _marks["items"],
        "main_cpu_s": time.thread_time() - _marks["thread0"],
        "process_cpu_s": time.process_time() - _marks["process0"],
        "collect_s": _marks["collect_end"] - _marks["collect_start"],
    }
    with open(os.environ["MAIN_THREAD_PROBE_OUT"], "w") as f:
        json.dump(result, f)
'''


def write_suite(root: Path, tests: int) -> Path:
    """The trivial suite (suites.py's generator and pytest.ini) with ``tests`` empty tests."""
    path = root / f"trivial-{tests}"
    params = {"modules": tests // TESTS_PER_MODULE, "tests_per_module": TESTS_PER_MODULE}
    files = {"pytest.ini": suites.PYTEST_INI, **suites.GENERATORS["trivial"](params)}
    path.mkdir(parents=True)
    for rel, text in files.items():
        (path / rel).write_text(text)
    return path


def run_once(
    python: Path, args: list[str], cwd: Path, probe_dir: Path, autoload: bool, src: str = ""
) -> dict[str, float]:
    out = probe_dir / "result.json"
    out.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHON"))}
    if not autoload:
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(probe_dir), src) if p)
    env["MAIN_THREAD_PROBE_OUT"] = str(out)
    cmd = [str(python), "-m", "pytest", "-q", "-p", "main_thread_probe", *args]
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not out.exists():
        tail = (proc.stdout + proc.stderr)[-2000:]
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{tail}")
    result = json.loads(out.read_text())
    result["wall_s"] = wall
    return result


Config = tuple[str, Path, list[str], bool]  # label, python, pytest arguments, plugin autoload


def configs(interp: str, threads: int) -> tuple[list[Config], list[str]]:
    """The repo venvs carry other plugins (pytest-flask's autouse monkeypatch fixtures make
    every test run alone, on the main thread): plugin autoload is off there, and ours is
    loaded by module. The opponent's bench venv holds pytest and the opponent only."""
    python = INTERPRETERS[interp] / "bin" / "python"
    plan: list[Config] = [
        ("seq", python, [], False),
        (f"ours t={threads}", python, ["-p", OURS, "--threadpool", str(threads)], False),
    ]
    notes = []
    opponent = OPPONENT_VENVS / f"opponent-{interp}" / "bin" / "python"
    if opponent.exists():
        plan.append((f"0.4.0 t={threads}", opponent, ["--threadpool", str(threads)], True))
    else:
        notes.append(f"{interp}: no {opponent.parent.parent} (made by bench/run.py): 0.4.0 skipped")
    return plan, notes


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interp", default="3.13t,3.13")
    parser.add_argument("--sizes", default="4000,50000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--src",
        default="",
        help="import pytest_threadpool from this folder (a copy of src/, e.g. a before-snapshot)"
        " instead of the venv's editable install",
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    lines = [
        f"median of {args.rounds} rounds; CPU figures are per test, from collection finish to "
        "session finish; `collect` = collection wall time / process wall time (load-sensitive)",
        "",
        "| interp | tests | config | main-thread CPU µs/test | process CPU µs/test | wall s "
        "| collect |",
        "|---|---|---|---|---|---|---|",
    ]
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="main-thread-bench-") as tmp:
        root = Path(tmp)
        probe_dir = root / "probe"
        probe_dir.mkdir()
        (probe_dir / "main_thread_probe.py").write_text(PROBE)
        for interp in args.interp.split(","):
            plan, more = configs(interp, args.threads)
            notes += more
            for tests in sizes:
                suite = write_suite(root / interp, tests)
                for label, python, extra, autoload in plan:
                    cache = ["-o", f"cache_dir=.cache-{label.split()[0]}"]
                    collect = [*cache, *extra, "--collect-only"]
                    src = args.src if label.startswith("ours") else ""
                    run_once(python, collect, suite, probe_dir, autoload, src)  # warm-up
                    timed = [*cache, *extra]
                    run_once(python, timed, suite, probe_dir, autoload, src)  # fills the cache
                    runs = [
                        run_once(python, timed, suite, probe_dir, autoload, src)
                        for _ in range(args.rounds)
                    ]
                    assert all(r["items"] == tests for r in runs), runs
                    main_us = statistics.median(r["main_cpu_s"] for r in runs) / tests * 1e6
                    proc_us = statistics.median(r["process_cpu_s"] for r in runs) / tests * 1e6
                    share = statistics.median(r["collect_s"] / r["wall_s"] for r in runs)
                    wall = statistics.median(r["wall_s"] for r in runs)
                    line = (
                        f"| {interp} | {tests:,} | {label} | {main_us:,.0f} | {proc_us:,.0f} "
                        f"| {wall:.2f} | {share:.0%} |"
                    )
                    print(line, file=sys.stderr)
                    lines.append(line)
    print("\n".join(lines + [""] + [f"- {n}" for n in notes]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
