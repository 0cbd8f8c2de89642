"""--threadpool-output live in a real terminal (Debian's tmux), SLOW lines and the end-of-run
line. The status area is checked while tests are held running, and the scrollback after the run
must equal what a classic run prints in the same terminal."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

# Test modules' head: tests held until the file named by $GATE exists (at most 60 s).
GATE_HEAD = """
import os, time, pytest
pytestmark = pytest.mark.parallelizable("children")

def _wait_for_gate():
    deadline = time.monotonic() + 60
    while not os.path.exists(os.environ["GATE"]):
        assert time.monotonic() < deadline, "gate never opened"
        time.sleep(0.02)
"""

GATED = (
    GATE_HEAD
    + """

def test_quick(): pass
def test_held_one(): _wait_for_gate()
def test_held_two(): _wait_for_gate()
def test_held_with_a_rather_long_name_that_will_not_fit_a_narrow_terminal(): _wait_for_gate()
def test_fails(): _wait_for_gate(); assert 1 == 2
"""
)


class Tmux:
    """One detached tmux server running one command in a terminal of a given size."""

    def __init__(self, directory: Path, command: str, columns: int, rows: int) -> None:
        tmux = shutil.which("tmux")
        if tmux is None:
            pytest.fail("tmux is not installed (make setup installs it)")
        self.tmux = tmux
        self.name = f"tp-{uuid.uuid4().hex[:8]}"
        self.done = directory / f"{self.name}.done"
        size = ["-x", str(columns), "-y", str(rows)]
        script = f"cd {shlex.quote(str(directory))} && {command}; touch {self.done}; sleep 60"
        subprocess.run(
            [tmux, "-L", self.name, "new-session", "-d", "-s", self.name, *size, script],
            check=True,
        )

    def screen(self, scrollback: bool = False) -> list[str]:
        args = [self.tmux, "-L", self.name, "capture-pane", "-p", "-t", self.name]
        if scrollback:
            args += ["-S", "-", "-J"]  # the whole history, wrapped lines joined
        text = subprocess.run(args, check=True, capture_output=True, text=True).stdout
        return text.rstrip("\n").splitlines()

    def wait_for(self, predicate, what: str, timeout: float = 60) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if predicate(screen):
                return screen
            if time.monotonic() > deadline:
                pytest.fail(f"{what} not seen within {timeout} s; screen:\n" + "\n".join(screen))
            time.sleep(0.05)

    def wait_done(self) -> list[str]:
        deadline = time.monotonic() + 60
        while not self.done.exists():
            if time.monotonic() > deadline:
                pytest.fail("the run in tmux did not finish within 60 s")
            time.sleep(0.05)
        lines = self.screen(scrollback=True)
        while lines and not lines[-1].strip():
            lines.pop()
        return lines

    def close(self) -> None:
        subprocess.run([self.tmux, "-L", self.name, "kill-server"], check=False)


HEAD = re.compile(r"\[#*-*\] 1/5 1 passed \d+\.\ds  running 4$")


def pytest_command(gate: Path, *args: str) -> str:
    plugins = ["-p", "no:cacheprovider", "-p", "no:flask", "-p", "no:asyncio", "-p", "no:timeout"]
    argv = [sys.executable, "-m", "pytest", *plugins, "--tb=short", *args]
    return f"env -u COLUMNS -u LINES -u CI GATE={shlex.quote(str(gate))} " + shlex.join(argv)


def normalised(lines: list[str]) -> list[str]:
    """Timings differ from run to run."""
    text = "\n".join(lines)
    text = re.sub(r"in \d+\.\d+s( \([0-9:]+\))?", "in Xs", text)
    text = re.sub(r"\d+% busy, longest \d+\.\d+s \S+", "N% busy, longest Xs T", text)
    return text.splitlines()


@pytest.mark.parametrize(("columns", "rows"), [(100, 30), (60, 16)])
def test_status_area_while_running_and_scrollback_equal_to_classic(
    pytester: pytest.Pytester, columns: int, rows: int
) -> None:
    pytester.makepyfile(test_gated=GATED)
    runs = {}
    for mode in ("live", "classic"):
        gate = pytester.path / f"gate-{mode}"
        command = pytest_command(
            gate, "--threadpool", "4", f"--threadpool-output={mode}", "--threadpool-slow=0"
        )
        tmux = Tmux(pytester.path, command, columns, rows)
        try:
            if mode == "live":
                screen = tmux.wait_for(
                    lambda s: any(HEAD.match(line) for line in s), "the status area"
                )
                status = screen[screen.index(next(x for x in screen if HEAD.match(x))) :]
                head = status[0]
                running = [line for line in status[1:] if line.strip()]
                assert len(running) == 4, status
                for line in running:
                    assert re.match(r"\s+\d+\.\ds test_gated\.py::test_", line), line
                    assert len(line) < columns, line
                held = {line.split()[-1] for line in running}
                assert "test_gated.py::test_held_one" in held
                if columns < 100:  # a name too long for the line is cut, not wrapped
                    assert any(line.endswith("...") for line in running), running
                # The area sits below the unfinished progress line.
                progress = screen[screen.index(head) - 1]
                assert progress.startswith("test_gated.py ."), screen
            gate.touch()
            runs[mode] = tmux.wait_done()
        finally:
            tmux.close()
    live, classic = runs["live"], runs["classic"]
    assert not any(re.search(r"running \d|^\[#", line) for line in live), live
    assert "1 failed, 4 passed" in live[-2]
    assert live[-1].startswith("threadpool: 4 workers, ")
    assert normalised(live) == normalised(classic)


def test_auto_is_classic_when_piped_or_under_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile("def test_a(): pass\ndef test_b(): pass\n")
    result = pytester.runpytest_subprocess("--threadpool", "2", "--threadpool-output", "auto")
    result.assert_outcomes(passed=2)
    assert "\x1b[" not in result.stdout.str()
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest_subprocess("--threadpool", "2")
    assert "\x1b[" not in result.stdout.str()


def test_bad_output_mode_is_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_a(): pass\n")
    result = pytester.runpytest_subprocess("--threadpool", "2", "--threadpool-output", "fancy")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*invalid value 'fancy': use one of auto, live, classic*"])
    assert "Traceback" not in result.stderr.str()
    pytester.makeini("[pytest]\nthreadpool_slow = soon\n")
    result = pytester.runpytest_subprocess("--threadpool", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*threadpool_slow*invalid value 'soon'*"])


@pytest.mark.parametrize("mode", ["classic", "live"])
def test_slow_lines_at_each_doubling(pytester: pytest.Pytester, mode: str) -> None:
    """A test running 3 s with threadpool_slow = 0.2 is named at 0.2, 0.4 and 0.8 s (and
    1.6 s, unless the main thread is very late), once each, in every output mode."""
    pytester.makepyfile(
        """
        import time, pytest
        pytestmark = pytest.mark.parallelizable("children")
        def test_slow(): time.sleep(3)
        def test_quick(): pass
        """
    )
    result = pytester.runpytest_subprocess(
        "--threadpool", "2", "--threadpool-slow", "0.2", f"--threadpool-output={mode}"
    )
    result.assert_outcomes(passed=2)
    plain = [re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line).strip() for line in result.outlines]
    names = [line for line in plain if line.startswith("SLOW")]
    expected = [f"SLOW {s}s test_slow_lines_at_each_doubling.py::test_slow" for s in (0.2, 0.4)]
    assert names[:3] == [*expected, expected[0].replace("0.2s", "0.8s")], names
    assert len(names) == len(set(names)) and len(names) <= 4, names
    assert "test_quick" not in result.stdout.str().split("SLOW")[-1].split("\n")[0]
    result.stdout.fnmatch_lines([f"threadpool: 2 workers, *; {len(names)} SLOW line(s)"])


def test_end_of_run_line_after_pytest_summary(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time, pytest
        pytestmark = pytest.mark.parallelizable("children")
        def test_a(): time.sleep(0.2)
        def test_b(): pass
        def test_alone(monkeypatch): pass
        """
    )
    result = pytester.runpytest_subprocess("--threadpool", "2", "--threadpool-slow", "0")
    result.assert_outcomes(passed=3)
    last = result.outlines[-1]
    assert result.outlines[-2].endswith("=") and "3 passed" in result.outlines[-2]
    match = re.fullmatch(
        r"threadpool: 2 workers, (\d+)% busy, longest (\d+\.\d)s "
        r"test_end_of_run_line_after_pytest_summary\.py::test_a; "
        r"1 test\(s\) ran with nothing else running: 1 uses monkeypatch",
        last,
    )
    assert match, last
    assert 0 < int(match[1]) <= 100 and float(match[2]) >= 0.2
    assert result.parseoutcomes() == {"passed": 3}  # pytest's summary is still found


HELD_THEN_ENDED = (
    GATE_HEAD
    + """
import ctypes

def test_held(): _wait_for_gate(); time.sleep(60)
def test_ends_the_run():
    _wait_for_gate()
    if os.environ["END"] == "crash":
        ctypes.string_at(0)
    time.sleep(60)
"""
)


@pytest.mark.parametrize("end", ["ctrl-c", "crash"])
def test_status_area_is_removed_on_ctrl_c_and_on_a_crash(pytester: pytest.Pytester, end: str):
    pytester.makepyfile(test_ended=HELD_THEN_ENDED)
    gate = pytester.path / "gate"
    command = f"END={end} " + pytest_command(
        gate, "--threadpool", "4", "--threadpool-output=live", "--threadpool-slow=0"
    )
    tmux = Tmux(pytester.path, command, 100, 30)
    try:
        tmux.wait_for(lambda s: any("running 2" in line for line in s), "the status area")
        gate.touch()
        if end == "ctrl-c":
            tmux.wait_for(
                lambda s: any(re.search(r"  \d+\.\ds test_ended.py::test_held", x) for x in s),
                "the tests running",
            )
            subprocess.run([tmux.tmux, "-L", tmux.name, "send-keys", "-t", tmux.name, "C-c"])
        lines = tmux.wait_done()
    finally:
        tmux.close()
    assert not any(re.search(r"running \d|^\[[#-]+\]|^\s+\d+\.\ds test_", x) for x in lines), lines
    if end == "ctrl-c":
        assert "INTERRUPTED test_ended.py::test_held" in lines, lines
        assert any("KeyboardInterrupt" in line for line in lines), lines
    else:
        header = next(n for n, x in enumerate(lines) if x.startswith("pytest-threadpool: fatal"))
        assert lines[header - 1] == "" and lines[header - 2].startswith("collected 2"), lines
        assert any(x.endswith(": test_ended.py::test_ends_the_run") for x in lines), lines


def test_status_area_follows_a_resize(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gated=GATED)
    gate = pytester.path / "gate"
    command = pytest_command(gate, "--threadpool", "4", "--threadpool-output=live")
    tmux = Tmux(pytester.path, command, 120, 30)
    long_name = "test_held_with_a_rather_long_name_that_will_not_fit_a_narrow_terminal"
    try:
        tmux.wait_for(lambda s: any(x.endswith(long_name) for x in s), "the full name")
        subprocess.run(
            [tmux.tmux, "-L", tmux.name, "resize-window", "-t", tmux.name, "-x", "50"],
            check=True,
        )
        screen = tmux.wait_for(
            lambda s: any(re.search(r"test_held_with_a_rat\S*\.\.\.$", x) for x in s),
            "the name cut to the new width",
        )
        status = [x for x in screen if re.match(r"\[[#-]+\]|\s+\d+\.\ds ", x)]
        assert status and all(len(x) < 50 for x in status), screen
        gate.touch()
        lines = tmux.wait_done()
    finally:
        tmux.close()
    assert not any(re.search(r"running \d|^\[[#-]+\]|^\s+\d+\.\ds test_", x) for x in lines), lines
