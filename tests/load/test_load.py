"""Load: tens of thousands of tests all reported, a thousand threads, memory linear in tests."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

MODULE = """
import pytest
pytestmark = pytest.mark.parallelizable("all")

@pytest.mark.parametrize("i", range({count}))
def test_many(i):
    pass
"""

SLEEPERS = """
import time, pytest
pytestmark = pytest.mark.parallelizable("all")

@pytest.mark.parametrize("i", range({count}))
def test_sleep(i):
    time.sleep({seconds})
"""


# The child's own peak RSS, read by the child itself. Not the ru_maxrss that wait4 returns:
# Linux carries the high-water mark of the address space a process had before exec into it,
# and a child spawned by this (big, long-running) test process starts out in this process's.
PEAK_RSS_PLUGIN = """
def pytest_unconfigure(config):
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open("peak-rss-kib.txt", "w") as out:
        out.write(peak)
"""


def run_pytest(directory: Path, *args: str) -> tuple[int, str, int]:
    """Run pytest in a child process; return (exit code, output, its peak RSS in KiB)."""
    process = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=directory,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    return process.returncode, process.stdout, int((directory / "peak-rss-kib.txt").read_text())


def make_suite(path: Path, template: str, **fields: object) -> Path:
    path.mkdir()
    (path / "test_load.py").write_text(template.format(**fields))
    (path / "conftest.py").write_text(PEAK_RSS_PLUGIN)
    return path


def test_fifty_thousand_tests_every_result_reported(tmp_path: Path):
    suite = make_suite(tmp_path / "big", MODULE, count=50_000)
    code, output, _rss = run_pytest(suite, "--threadpool", "4", "--junitxml=out.xml")
    assert code == 0, output[-3000:]
    assert "50000 passed" in output
    cases = list(ET.parse(suite / "out.xml").getroot().iter("testcase"))
    assert len(cases) == 50_000
    assert len({(c.get("classname"), c.get("name")) for c in cases}) == 50_000


def test_a_thousand_threads_on_io_bound_tests(tmp_path: Path):
    suite = make_suite(tmp_path / "io", SLEEPERS, count=3000, seconds=0.01)
    code, output, _rss = run_pytest(suite, "--threadpool", "1000")
    assert code == 0, output[-3000:]
    assert "3000 passed" in output


def test_memory_grows_at_most_linearly_with_tests(tmp_path: Path):
    sizes = (3_000, 9_000, 15_000)
    peaks = []
    for count in sizes:
        suite = make_suite(tmp_path / f"n{count}", MODULE, count=count)
        code, output, rss = run_pytest(suite, "--threadpool", "4")
        assert code == 0, output[-3000:]
        peaks.append(rss)
    first_slope = (peaks[1] - peaks[0]) / (sizes[1] - sizes[0])
    second_slope = (peaks[2] - peaks[1]) / (sizes[2] - sizes[1])
    # Linear growth keeps the cost per added test flat; allow 50% for allocator noise.
    assert second_slope <= first_slope * 1.5 + 1, (sizes, peaks)
