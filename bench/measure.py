"""Run one pytest process and measure it: wall time, peak RSS, exit code and outcome counts.

Peak RSS is the larger of the child's own ``ru_maxrss`` (from ``os.wait4``) and the peak of the
summed RSS of its whole process tree, sampled from /proc every 20 ms, so multi-process runners
(pytest-xdist) are charged for all of their workers.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

SAMPLE_INTERVAL_S = 0.02
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
# Environment variables that would change how pytest or the interpreter behaves (bytecode
# caching stays on, as on a developer's machine, so start-up is not dominated by compiling).
SCRUBBED_ENV_PREFIXES = (
    "PYTEST_",
    "PYTHON_GIL",
    "PYTHONPATH",
    "PYTHONWARNINGS",
    "PYTHONDONTWRITEBYTECODE",
)
COUNT_RE = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected)\b")


@dataclass(frozen=True)
class RunResult:
    seconds: float
    peak_rss_mib: float
    returncode: int
    counts: dict[str, int] = field(default_factory=dict)
    output: str = ""
    timed_out: bool = False

    def problem(self, expected_passed: int) -> str | None:
        """None when the run passed exactly ``expected_passed`` tests and exited 0."""
        if self.timed_out:
            return f"timed out after {self.seconds:.0f}s"
        passed = self.counts.get("passed", 0)
        if self.returncode == 0 and passed == expected_passed and len(self.counts) == 1:
            return None
        outcome = ", ".join(f"{n} {k}" for k, n in self.counts.items()) or "no summary line"
        return f"exit code {self.returncode}, {outcome} (expected {expected_passed} passed)"


def scrubbed_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_ENV_PREFIXES)}


def parse_counts(output: str) -> dict[str, int]:
    """Outcome counts from pytest's final summary line (``400 passed, 1 skipped in 3.2s``)."""
    for line in reversed(output.splitlines()):
        found = COUNT_RE.findall(line)
        if found and " in " in line:
            counts: dict[str, int] = {}
            for number, kind in found:
                kind = "error" if kind.startswith("error") else kind
                counts[kind] = counts.get(kind, 0) + int(number)
            return counts
    return {}


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            with open(f"{task.path}/children") as f:
                kids.extend(int(k) for k in f.read().split())
    except OSError:
        pass
    return kids


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_KIB
    except (OSError, IndexError, ValueError):
        return 0


def tree_rss_kib(root: int) -> int:
    """Summed resident memory of ``root`` and all of its descendants."""
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += _rss_kib(pid)
        stack.extend(_children(pid))
    return total


class TreeRssSampler(threading.Thread):
    """Samples the process tree's RSS until stopped; ``peak_kib`` holds the maximum seen."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peak_kib = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak_kib = max(self.peak_kib, tree_rss_kib(self.root))
            self._stop_event.wait(SAMPLE_INTERVAL_S)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _kill_group(proc: subprocess.Popen[bytes], flag: list[bool]) -> None:
    flag.append(True)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_pytest(python: Path, args: list[str], cwd: Path, timeout_s: float) -> RunResult:
    """Run ``python -m pytest *args`` in ``cwd`` (its own session, output to a temp file)."""
    return run_command([str(python), "-m", "pytest", *args], cwd, timeout_s)


def run_command(argv: list[str], cwd: Path, timeout_s: float) -> RunResult:
    """Run ``argv`` in ``cwd`` and measure it like a pytest run; its outcome counts are read
    from a pytest-style summary line (``400 passed in 1.2s``) if it prints one."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=scrubbed_env(),
            start_new_session=True,
        )
        sampler = TreeRssSampler(proc.pid)
        sampler.start()
        killed: list[bool] = []
        timer = threading.Timer(timeout_s, _kill_group, (proc, killed))
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        timer.cancel()
        sampler.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if killed:  # reap what is left of the group (xdist workers)
            _kill_group(proc, [])
        out.seek(0)
        output = out.read().decode(errors="replace")
    return RunResult(
        seconds=seconds,
        peak_rss_mib=max(usage.ru_maxrss, sampler.peak_kib) / 1024,
        returncode=proc.returncode,
        counts=parse_counts(output),
        output=output,
        timed_out=bool(killed),
    )
