"""Command-line and ini options, parsed into one immutable settings object."""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass

import pytest

from pytest_threadpool.markers import ParallelScope

SCOPE_NONE = "none"
DEFAULT_SCOPE_CHOICES = (*(s.value for s in ParallelScope), SCOPE_NONE)


def usable_cpus() -> int:
    return os.process_cpu_count() or 1


def parse_workers(value: str) -> int:
    """``--threadpool`` value: a positive integer or ``auto``."""
    text = str(value).strip().lower()
    if text == "auto":
        return usable_cpus()
    try:
        workers = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid value {value!r}: expected integer or 'auto' (e.g. --threadpool 4)"
        ) from None
    if workers < 0:
        raise argparse.ArgumentTypeError(
            f"invalid value {value!r}: a thread count cannot be negative; use 1 or more, or 'auto'"
        )
    return workers


def _parse_seconds(value: str, example: str, out_of_range: str) -> float:
    """A number of seconds >= 0 (0: off); the messages name the option's own forms."""
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid value {value!r}: use a number of seconds ({example})"
        ) from None
    if seconds < 0 or seconds != seconds:
        raise argparse.ArgumentTypeError(f"invalid value {value!r}: {out_of_range}")
    return seconds


def parse_timeout(value: str) -> float:
    return _parse_seconds(
        value, "e.g. 30 or 2.5", "the timeout must be 0 (off) or a positive number of seconds"
    )


def _parse_choice(value: str, choices: tuple[str, ...]) -> str:
    text = str(value).strip().lower()
    if text not in choices:
        raise argparse.ArgumentTypeError(
            f"invalid value {value!r}: use one of {', '.join(choices)}"
        )
    return text


OUTPUT_CHOICES = ("auto", "live", "classic")
DEFAULT_SLOW = 30.0


def parse_output(value: str) -> str:
    return _parse_choice(value, OUTPUT_CHOICES)


def parse_slow(value: str) -> float:
    return _parse_seconds(
        value, "e.g. 30 or 2.5; 0: off", "use 0 (off) or a positive number of seconds"
    )


def parse_default_scope(value: str) -> str:
    return _parse_choice(value, DEFAULT_SCOPE_CHOICES)


def addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("threadpool", "parallel execution in a thread pool (pytest-threadpool)")
    group.addoption(
        "--threadpool",
        dest="threadpool",
        metavar="N|auto",
        type=parse_workers,
        default=None,
        help="run parallelizable tests in N threads ('auto': one per usable CPU). "
        "Without it pytest runs as if the plugin were absent.",
    )
    group.addoption(
        "--threadpool-scope",
        dest="threadpool_scope",
        metavar="SCOPE",
        type=parse_default_scope,
        default=None,
        help="scope applied to tests that no marker decides: "
        + ", ".join(DEFAULT_SCOPE_CHOICES)
        + " (default: ini threadpool_scope, else none)",
    )
    group.addoption(
        "--threadpool-timeout",
        dest="threadpool_timeout",
        metavar="SECONDS",
        type=parse_timeout,
        default=None,
        help="fail a test that runs longer than SECONDS (0: off; default: ini threadpool_timeout)",
    )
    group.addoption(
        "--threadpool-output",
        dest="threadpool_output",
        metavar="MODE",
        type=parse_output,
        default=None,
        help="auto (default: live on a terminal, classic when piped or under CI), live (a "
        "status area with progress and running tests below the results) or classic "
        "(default: ini threadpool_output)",
    )
    group.addoption(
        "--threadpool-slow",
        dest="threadpool_slow",
        metavar="SECONDS",
        type=parse_slow,
        default=None,
        help="print 'SLOW <seconds> <test>' when a running test passes SECONDS, again at "
        f"2x, 4x... (0: off; default: ini threadpool_slow, else {DEFAULT_SLOW:g})",
    )
    parser.addini("threadpool", "thread count used when --threadpool is not given (N or auto)")
    parser.addini(
        "threadpool_scope",
        "default parallel scope for tests without markers: " + ", ".join(DEFAULT_SCOPE_CHOICES),
        default=SCOPE_NONE,
    )
    parser.addini(
        "threadpool_timeout", "per-test timeout in seconds for --threadpool runs (0: off)"
    )
    parser.addini("threadpool_output", "output mode of --threadpool runs: auto, live or classic")
    parser.addini(
        "threadpool_slow",
        f"seconds after which a running test is named in a SLOW line (0: off; default "
        f"{DEFAULT_SLOW:g})",
    )
    parser.addini(
        "threadpool_unsafe_fixtures",
        "fixtures that make a test run alone (nothing else runs while it runs)",
        type="linelist",
        default=[
            "benchmark",  # pytest-benchmark: timings taken beside other tests mean nothing
            "capfd",
            "capfdbinary",
            "freezer",  # pytest-freezer: freezegun patches the clock for the whole process
            # pyfakefs: os, open, pathlib and io of the whole process see the fake file system
            "fs",
            "fs_class",
            "fs_module",
            "fs_session",
            "mocker",  # pytest-mock: its patches are process-wide, as monkeypatch's are
            "monkeypatch",
            "recwarn",
            "requests_mock",  # requests-mock: every requests.Session of the process is mocked
            # pytest's subtests: each subtest captures like capfd (fds 1 and 2 and sys.stdout
            # of the whole process) and suspends the global capture to log its report
            "subtests",
            "time_machine",  # time-machine: travels the clock of the whole process
        ],
    )
    parser.addini(
        "threadpool_safe_fixtures",
        "fixtures trusted to be thread-safe although they request an unsafe fixture or patch "
        "(what they request or call does not make a test run alone)",
        type="linelist",
        default=[],
    )


@dataclass(frozen=True)
class Settings:
    workers: int  # 0 when --threadpool was not given
    default_scope: ParallelScope | None
    timeout: float  # 0 = no timeout
    unsafe_fixtures: frozenset[str]
    safe_fixtures: frozenset[str] = frozenset()
    output: str = "auto"  # one of OUTPUT_CHOICES
    slow: float = DEFAULT_SLOW  # 0 = no SLOW lines

    def sequential(self) -> Settings:
        """The same settings for a session whose tests run one at a time."""
        return dataclasses.replace(self, workers=1)

    @property
    def enabled(self) -> bool:
        return self.workers > 0

    @property
    def parallel(self) -> bool:
        return self.workers > 1


def _from_ini(config: pytest.Config, name: str, parse, flag: str):
    raw = config.getini(name)
    if raw in (None, "", []):
        return None
    try:
        return parse(raw)
    except argparse.ArgumentTypeError as exc:
        raise pytest.UsageError(f"ini option {name} ({flag}): {exc}") from None


def fixture_names(config: pytest.Config, name: str) -> frozenset[str]:
    """A fixture-list ini option: one name a line, or several on a line separated by spaces or
    commas (``-o threadpool_safe_fixtures="a b"`` gives one line)."""
    return frozenset(
        word for line in config.getini(name) for word in line.replace(",", " ").split()
    )


def load(config: pytest.Config) -> Settings:
    """Read options; user mistakes raise pytest.UsageError with a one-line message."""
    workers = config.getoption("threadpool")
    if workers is None:
        workers = _from_ini(config, "threadpool", parse_workers, "--threadpool") or 0
    scope = config.getoption("threadpool_scope")
    if scope is None:
        scope = _from_ini(config, "threadpool_scope", parse_default_scope, "--threadpool-scope")
    timeout = config.getoption("threadpool_timeout")
    if timeout is None:
        timeout = _from_ini(config, "threadpool_timeout", parse_timeout, "--threadpool-timeout")
    output = config.getoption("threadpool_output", None)
    if output is None:
        output = _from_ini(config, "threadpool_output", parse_output, "--threadpool-output")
    slow = config.getoption("threadpool_slow", None)
    if slow is None:
        slow = _from_ini(config, "threadpool_slow", parse_slow, "--threadpool-slow")
    return Settings(
        workers=workers,
        output=output or "auto",
        slow=DEFAULT_SLOW if slow is None else slow,
        default_scope=None if scope in (None, SCOPE_NONE) else ParallelScope(scope),
        timeout=timeout or 0.0,
        unsafe_fixtures=fixture_names(config, "threadpool_unsafe_fixtures"),
        safe_fixtures=fixture_names(config, "threadpool_safe_fixtures"),
    )
