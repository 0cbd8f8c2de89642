"""The run in a real terminal (Debian's tmux; `make setup` installs it): what the user sees."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

SUITE = """
import pytest
pytestmark = pytest.mark.parallelizable("children")

@pytest.mark.parametrize("n", range(150))
def test_a(n): pass
"""


def run_in_tmux(directory: Path, args: list[str], columns: int, rows: int = 40) -> list[str]:
    """Run pytest with ``args`` in a detached tmux terminal of the given size; return the
    screen's lines once it has finished."""
    tmux = shutil.which("tmux")
    if tmux is None:
        pytest.fail("tmux is not installed (make setup installs it)")
    session = f"tp-{uuid.uuid4().hex[:8]}"
    done = directory / f"{session}.done"
    command = (
        f"cd {shlex.quote(str(directory))} && "
        + "env -u COLUMNS -u LINES "
        + shlex.join([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args])
        + f"; touch {shlex.quote(str(done))}; sleep 60"
    )
    subprocess.run(
        [
            tmux,
            "-L",
            session,
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            str(columns),
            "-y",
            str(rows),
            command,
        ],
        check=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not done.exists():
            if time.monotonic() > deadline:
                pytest.fail("the run in tmux did not finish within 60 s")
            time.sleep(0.05)
        screen = subprocess.run(
            [tmux, "-L", session, "capture-pane", "-p", "-t", session],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        subprocess.run([tmux, "-L", session, "kill-server"], check=False)
    return screen.splitlines()


@pytest.mark.parametrize("columns", [120, 64])
def test_reporter_sees_the_real_terminal_width(pytester: pytest.Pytester, columns: int):
    """fd 1 points at a file during a threaded run (--capture=fd); the progress column and the
    separators still follow the terminal's width, as in a sequential run in the same terminal
    (the percentages of wrapped progress lines sat at column 80)."""
    pytester.makepyfile(test_width_a=SUITE, test_width_b=SUITE)
    sequential = run_in_tmux(pytester.path, ["-p", "no:threadpool"], columns)
    threaded = run_in_tmux(pytester.path, ["--threadpool", "2"], columns)
    shapes = []
    for screen in (sequential, threaded):
        # Progress lines (long files wrap, each line ending in its percentage) and the summary.
        progress = [line for line in screen if line.endswith("%]")]
        summary = [line for line in screen if "300 passed" in line]
        if len(progress) <= 2 or not summary:  # the whole screen, untruncated
            pytest.fail("unexpected screen:\n" + "\n".join(screen), pytrace=False)
        shapes.append(([len(line) for line in progress], len(summary[-1])))
    assert shapes[1] == shapes[0]
    assert shapes[0][1] == columns  # pytest's separators span the terminal


def test_each_file_is_named_once_also_when_durations_are_known(pytester: pytest.Pytester):
    """A 20-file suite, run twice so that the second run has a duration history (which once
    made every long-ish test start first and interleaved the files: 40 file names for 20).
    The threaded run's progress lines equal a sequential run's: each file once, in order."""
    for number in range(20):
        tests = "".join(
            f"def test_{i}():\n    time.sleep({0.01 + 0.001 * ((number * 7 + i * 3) % 11):.3f})\n"
            for i in range(6)
        )
        pytester.makepyfile(
            **{
                f"test_file{number:02d}": "import time, pytest\n"
                "pytestmark = pytest.mark.parallelizable('children')\n" + tests
            }
        )

    def progress_lines(*args: str) -> list[str]:
        result = pytester.runpytest("-p", "cacheprovider", *args)
        result.assert_outcomes(passed=120)
        return [line for line in result.outlines if line.startswith("test_file")]

    sequential = progress_lines()
    assert len(sequential) == 20
    progress_lines("--threadpool", "4")  # records the durations
    assert progress_lines("--threadpool", "4") == sequential
