"""Crash attribution: label slots and the fatal-signal handler (run in subprocesses)."""

from __future__ import annotations

import signal
import sys
import threading

import pytest

from pytest_threadpool import _engine

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

CRASH_SCRIPT = """
import ctypes, faulthandler, os, sys, threading
{faulthandler}
from pytest_threadpool import _engine
_engine.install_crash_handler()
_engine.install_crash_handler()  # idempotent
_engine.set_crash_label("tests/test_main.py::test_on_main")
pool = _engine.Pool(2)
pool.start()
started = threading.Event()
def waits(_):
    started.set()
    threading.Event().wait(30)
pool.submit(waits, label="tests/test_x.py::test_waits")
def crash(_):
    started.wait(30)
    {crash}
pool.submit(crash, label="tests/test_x.py::test_crash")
pool.next_result(timeout=30)
print("not reached")
"""


def _lines_after(stderr: str, header: str) -> list[str]:
    lines = stderr.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith(header))
    out = []
    for line in lines[i + 1 :]:
        if not line.startswith("  "):
            break
        out.append(line)
    return out


def test_segfault_in_worker_names_the_running_tests(run_py):
    proc = run_py(
        CRASH_SCRIPT.format(faulthandler="faulthandler.enable()", crash="ctypes.string_at(0)")
    )
    assert proc.returncode == -signal.SIGSEGV, proc.stderr
    err = proc.stderr
    header = "pytest-threadpool: fatal signal SIGSEGV (11); tests running at that moment:"
    assert header in err
    lines = _lines_after(err, header)
    assert "  main thread: tests/test_main.py::test_on_main" in lines
    assert any(
        line.startswith("  threadpool-worker-") and line.endswith(": tests/test_x.py::test_crash")
        for line in lines
    ), lines
    assert any(line.endswith(": tests/test_x.py::test_waits") for line in lines), lines
    # faulthandler's report follows ours
    assert err.index(header) < err.index("Fatal Python error: Segmentation fault")
    assert "not reached" not in proc.stdout


def test_abort_without_faulthandler_still_dies_from_the_signal(run_py):
    proc = run_py(CRASH_SCRIPT.format(faulthandler="", crash="os.abort()"))
    assert proc.returncode == -signal.SIGABRT, proc.stderr
    assert "pytest-threadpool: fatal signal SIGABRT (6); tests running at that moment:" in (
        proc.stderr
    )
    assert ": tests/test_x.py::test_crash" in proc.stderr


def test_uninstall_restores_previous_handler(run_py):
    proc = run_py(
        """
        import ctypes, faulthandler
        faulthandler.enable()
        from pytest_threadpool import _engine
        _engine.install_crash_handler()
        _engine.uninstall_crash_handler()
        _engine.uninstall_crash_handler()
        ctypes.string_at(0)
        """
    )
    assert proc.returncode == -signal.SIGSEGV
    assert "pytest-threadpool: fatal signal" not in proc.stderr
    assert "Fatal Python error: Segmentation fault" in proc.stderr


def test_crash_labels_track_running_tasks(pool_factory):
    pool = pool_factory(2, name="crashlbl")
    pool.start()
    started = threading.Event()
    release = threading.Event()

    def hold(_):
        started.set()
        release.wait(10)

    pool.submit(hold, label="tests/test_y.py::test_" + "z" * 400)
    assert started.wait(10)
    mine = [(n, lbl) for n, lbl in _engine.crash_labels() if n.startswith("crashlbl-")]
    assert len(mine) == 1
    name, label = mine[0]
    assert name in ("crashlbl-0", "crashlbl-1")
    assert label.startswith("tests/test_y.py::test_zzz") and len(label.encode()) == 255
    release.set()
    assert pool.next_result(timeout=10).exception is None
    assert not [n for n, _ in _engine.crash_labels() if n.startswith("crashlbl-")]


def test_set_crash_label_for_the_calling_thread():
    try:
        _engine.set_crash_label("tests/test_main.py::test_é")
        assert ("main thread", "tests/test_main.py::test_é") in _engine.crash_labels()
        seen = []

        def other():
            _engine.set_crash_label("side")
            seen.extend(_engine.crash_labels())
            _engine.set_crash_label(None)

        t = threading.Thread(target=other, name="side-thread")
        t.start()
        t.join()
        assert ("side-thread", "side") in seen
    finally:
        _engine.set_crash_label(None)
    assert not [x for x in _engine.crash_labels() if x[0] == "main thread"]
    with pytest.raises(TypeError):
        _engine.set_crash_label(3)
    assert _engine.CRASH_SLOTS >= 1024


def test_crash_preamble_is_written_before_the_report(run_py):
    """The live status area is erased before a crash report (the preamble), and b'' clears it;
    more than 32 bytes or a str is refused."""
    script = """
        import os
        from pytest_threadpool import _engine
        _engine.install_crash_handler()
        _engine.set_crash_preamble(b"\\x1b[J\\n")
        {clear}
        os.abort()
        """
    proc = run_py(script.format(clear=""))
    assert proc.returncode == -signal.SIGABRT, proc.stderr
    assert proc.stderr.startswith("\x1b[J\npytest-threadpool: fatal signal SIGABRT"), proc.stderr
    proc = run_py(script.format(clear='_engine.set_crash_preamble(b"")'))
    assert proc.stderr.startswith("pytest-threadpool: fatal signal SIGABRT"), proc.stderr
    with pytest.raises(ValueError, match="longer than 32"):
        _engine.set_crash_preamble(b"x" * 33)
    with pytest.raises(TypeError):
        _engine.set_crash_preamble("\x1b[J")  # type: ignore[arg-type]
