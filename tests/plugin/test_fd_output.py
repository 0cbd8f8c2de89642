"""fd-level output of pool tests goes to the test that wrote it, as in a sequential run.

With ``--capture=fd`` fds 1 and 2 point at catch-all files for a whole threaded run. Output a
test's subprocesses (inherited stdout/stderr), its ``os.write(1|2, ...)`` calls and pytest's
``capfd`` (unread output handed back on close) produce must still land in that test's "Captured
stdout/stderr <phase>" sections and junitxml ``<system-out>``/``<system-err>``; only what nobody
can attribute (C code writing to fd 1, children outliving their test) is printed after the run,
on lines of its own.

Every session runs in a subprocess (fds 1 and 2 are process-wide), once sequentially and once
with ``--threadpool 4``, and the two are compared. The engine's ``os.write`` router is also
checked directly.
"""

from __future__ import annotations

import os
import re
import threading
import xml.etree.ElementTree as ET

import pytest

from pytest_threadpool import _engine

THREADED = ("--threadpool", "4")
JUNIT = ("-o", "junit_logging=all", "-p", "no:cacheprovider")
END_BLOCK = "threadpool: fd-level"
SECTION_HEADER = re.compile(r"^_{3,} (\S+) _{3,}$")
CAPTURED_HEADER = re.compile(r"^-{3,} Captured (stdout|stderr) (setup|call|teardown) -{3,}$")


def run_both(pytester: pytest.Pytester, *args: str) -> dict[str, tuple[pytest.RunResult, dict]]:
    """The session run sequentially and threaded: (result, junit output per test) for each."""
    runs = {}
    for mode, extra in (("sequential", ()), ("threaded", THREADED)):
        xml = f"{mode}.xml"
        result = pytester.runpytest_subprocess(*extra, *JUNIT, f"--junitxml={xml}", *args)
        runs[mode] = (result, junit_output(pytester.path / xml))
    return runs


def junit_output(path) -> dict[str, tuple[str, str]]:
    """Test name -> (captured stdout, captured stderr) as junitxml records them."""
    cases = {}
    for case in ET.parse(path).iter("testcase"):
        found = {"system-out": "", "system-err": ""}
        for child in case:
            if child.tag in found:
                # "---- Captured Out ----\n<text>\n" (junit_logging=all)
                text = (child.text or "").split(" ---")[-1].lstrip("-\n")
                found[child.tag] = text.removesuffix("\n")
        cases[case.get("name")] = (found["system-out"], found["system-err"])
    return cases


def failure_sections(text: str) -> dict[str, str]:
    """Test name -> its block in the FAILURES/ERRORS part of the terminal output."""
    sections: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        match = SECTION_HEADER.match(line)
        if match:
            current = match.group(1)
            sections[current] = ""
        elif line.startswith("=") or (line.startswith("-") and not CAPTURED_HEADER.match(line)):
            current = None  # the next part of the summary (or "- generated xml file")
        elif current is not None:
            sections[current] += line + "\n"
    return sections


def captured(section: str) -> dict[tuple[str, str], str]:
    """(stream, phase) -> text of the "Captured <stream> <phase>" parts of a failure block."""
    parts: dict[tuple[str, str], str] = {}
    current = None
    for line in section.splitlines():
        match = CAPTURED_HEADER.match(line)
        if match:
            current = (match.group(1), match.group(2))
            parts[current] = ""
        elif current is not None:
            parts[current] += line + "\n"
    return parts


def end_block(text: str) -> str:
    """The after-the-run block of unattributable fd-level output ('' when there is none)."""
    return "".join(text.split(END_BLOCK)[1:])


def test_subprocess_output_of_a_failing_pool_test_is_in_its_sections(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import os, subprocess, sys, pytest
        pytestmark = pytest.mark.parallelizable("children")
        # Markers are printed upper-case: a failure's source listing shows them lower-case.
        CHILD = (
            "import sys; print(sys.argv[1].upper()); print(sys.argv[2].upper(), file=sys.stderr)"
        )

        def test_fails():
            print("py-before")
            subprocess.run([sys.executable, "-c", CHILD, "run-out", "run-err"], check=True)
            print("py-after")
            out = subprocess.check_output([sys.executable, "-c", CHILD, "co-out", "co-err"])
            assert out == b"CO-OUT\\n"  # what the test reads is unchanged
            subprocess.check_call(
                [sys.executable, "-c", CHILD, "merged-out", "merged-err"],
                stderr=subprocess.STDOUT,
            )
            with subprocess.Popen([sys.executable, "-c", CHILD, "popen-out", "popen-err"]) as p:
                pass
            assert p.returncode == 0
            assert os.system("echo system-out | tr a-z A-Z; exit 3") == 3 << 8
            assert 0

        def test_other():
            print("other")
        """
    )
    runs = run_both(pytester)
    for mode, (result, junit) in runs.items():
        result.assert_outcomes(passed=1, failed=1)
        text = result.stdout.str()
        out, err = junit["test_fails"]
        assert (
            out == "py-before\nRUN-OUT\npy-after\nMERGED-OUT\nMERGED-ERR\nPOPEN-OUT\nSYSTEM-OUT\n"
        )
        assert err == "RUN-ERR\nCO-ERR\nPOPEN-ERR\n", mode
        parts = captured(failure_sections(text)["test_fails"])
        assert parts == {("stdout", "call"): out, ("stderr", "call"): err}, mode
        for marker in ("RUN-OUT", "RUN-ERR", "CO-ERR", "MERGED-ERR", "POPEN-OUT", "SYSTEM-OUT"):
            assert text.count(marker) == 1, (mode, marker)
        assert END_BLOCK not in text, mode
    assert runs["threaded"][1]["test_fails"] == runs["sequential"][1]["test_fails"]


def test_subprocess_output_of_a_passing_pool_test_appears_nowhere(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import os, subprocess, sys, pytest
        pytestmark = pytest.mark.parallelizable("children")

        def test_passes():
            subprocess.run([sys.executable, "-c", "print('QUIET-CHILD')"], check=True)
            subprocess.run(
                [sys.executable, "-c", "import sys; sys.stderr.write('QUIET-ERR')"], check=True
            )
            os.system("echo QUIET-SYSTEM")

        def test_other():
            pass
        """
    )
    runs = run_both(pytester)
    for mode, (result, junit) in runs.items():
        result.assert_outcomes(passed=2)
        text = result.stdout.str()
        for marker in ("QUIET-CHILD", "QUIET-ERR", "QUIET-SYSTEM"):
            assert marker not in text, (mode, marker)
        assert junit["test_passes"] == ("QUIET-CHILD\nQUIET-SYSTEM\n", "QUIET-ERR"), mode


def test_os_write_of_a_failing_pool_test_and_its_threads(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import os, sys, threading, pytest
        pytestmark = pytest.mark.parallelizable("children")

        @pytest.fixture
        def fx():
            os.write(1, b"FX-SETUP\\n")
            yield
            os.write(2, b"FX-TEARDOWN\\n")

        def test_writes(fx):
            print("printed")
            assert os.write(1, b"WRITE-1\\n") == 8
            assert os.write(2, memoryview(b"WRITE-2\\n")) == 8
            helper = threading.Thread(target=os.write, args=(1, b"FROM-THREAD\\n"))
            helper.start()
            helper.join()
            sys.stdout.write("printed-again\\n")
            with pytest.raises(TypeError):
                os.write(1, "not bytes")
            assert 0

        def test_quiet():
            os.write(1, b"QUIET-WRITE\\n")
        """
    )
    runs = run_both(pytester)
    for mode, (result, _junit) in runs.items():
        result.assert_outcomes(passed=1, failed=1)
        text = result.stdout.str()
        parts = captured(failure_sections(text)["test_writes"])
        assert parts[("stdout", "setup")] == "FX-SETUP\n", mode
        assert parts[("stdout", "call")] == "printed\nWRITE-1\nFROM-THREAD\nprinted-again\n"
        assert parts[("stderr", "call")] == "WRITE-2\n", mode
        assert parts[("stderr", "teardown")] == "FX-TEARDOWN\n", mode
        assert "QUIET-WRITE" not in text, mode
        assert END_BLOCK not in text, mode
    assert runs["threaded"][1]["test_writes"] == runs["sequential"][1]["test_writes"]


def test_capfd_unread_output_is_in_the_call_section(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import os, subprocess, sys, pytest
        pytestmark = pytest.mark.parallelizable("children")

        def test_unread(capfd):
            print("CAPFD-PRINT")
            os.write(1, b"CAPFD-WRITE\\n")
            os.write(2, b"CAPFD-ERR\\n")
            assert 0

        def test_reads(capfd):
            os.system("echo hello")
            subprocess.run([sys.executable, "-c", "print('child')"], check=True)
            os.write(1, b"raw\\n")
            print("printed")
            assert capfd.readouterr().out == "hello\\nchild\\nraw\\nprinted\\n"

        def test_pool_neighbour():
            pass
        """
    )
    runs = run_both(pytester)
    for mode, (result, junit) in runs.items():
        result.assert_outcomes(passed=2, failed=1)
        text = result.stdout.str()
        parts = captured(failure_sections(text)["test_unread"])
        assert parts[("stdout", "call")] == "CAPFD-PRINT\nCAPFD-WRITE\n", mode
        assert parts[("stderr", "call")] == "CAPFD-ERR\n", mode
        assert junit["test_unread"] == ("CAPFD-PRINT\nCAPFD-WRITE\n", "CAPFD-ERR\n"), mode
        assert END_BLOCK not in text, mode


def test_overlapping_subprocesses_of_concurrent_tests_each_go_to_their_test(
    pytester: pytest.Pytester,
):
    # Four tests start a child each, wait until all four children run (they block on stdin
    # after printing), then let them finish: the children's lifetimes overlap for certain.
    pytester.makepyfile(
        """
        import subprocess, sys, threading, pytest
        pytestmark = pytest.mark.parallelizable("children")
        started = threading.Barrier(4, timeout=30)
        CHILD = (
            "import sys; print('OUT-' + sys.argv[1], flush=True);"
            "print('ERR-' + sys.argv[1], file=sys.stderr, flush=True);"
            "sys.stdin.read(); print('LATE-' + sys.argv[1])"
        )

        @pytest.mark.parametrize("tag", ["A", "B", "C", "D"])
        @pytest.mark.parallelizable("all")
        def test_child(tag):
            child = subprocess.Popen([sys.executable, "-c", CHILD, tag], stdin=subprocess.PIPE)
            started.wait()
            child.communicate(b"")
            assert child.returncode == 0
            assert 0, tag
        """
    )
    # Only threaded: one test at a time cannot pass the barrier.
    result = pytester.runpytest_subprocess(*THREADED, *JUNIT, "--junitxml=threaded.xml")
    junit = junit_output(pytester.path / "threaded.xml")
    result.assert_outcomes(failed=4)
    text = result.stdout.str()
    sections = failure_sections(text)
    for tag in "ABCD":
        name = f"test_child[{tag}]"
        assert junit[name] == (f"OUT-{tag}\nLATE-{tag}\n", f"ERR-{tag}\n")
        for marker in (f"OUT-{tag}", f"ERR-{tag}", f"LATE-{tag}"):
            assert text.count(marker) == 1, marker
            assert sections[name].count(marker) == 1, marker
        parts = captured(sections[name])
        assert parts[("stdout", "call")] == f"OUT-{tag}\nLATE-{tag}\n"
        assert parts[("stderr", "call")] == f"ERR-{tag}\n"
    assert END_BLOCK not in text


def test_capsys_does_not_read_fd_level_output(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import os, subprocess, sys, pytest
        pytestmark = pytest.mark.parallelizable("children")

        def test_capsys(capsys):
            print("sys-level")
            os.write(1, b"FD-LEVEL\\n")
            subprocess.run([sys.executable, "-c", "print('CHILD-LEVEL')"], check=True)
            assert capsys.readouterr().out == "sys-level\\n"
            assert 0

        def test_other():
            pass
        """
    )
    runs = run_both(pytester)
    for mode, (result, junit) in runs.items():
        result.assert_outcomes(passed=1, failed=1)
        assert junit["test_capsys"] == ("FD-LEVEL\nCHILD-LEVEL\n", ""), mode
        assert END_BLOCK not in result.stdout.str(), mode


def test_unattributable_output_is_reported_after_the_complete_progress_line(
    pytester: pytest.Pytester,
):
    # C code writing to fd 1 in a pool test, and a child writing after its test ended (it waits
    # for a file the next test creates), cannot be told apart from other tests' output: they
    # are printed once, after the run, and never on the progress line.
    pytester.makepyfile(
        test_progress="""
        import ctypes, os, subprocess, sys, time, pytest
        pytestmark = pytest.mark.parallelizable("children")
        CHILD = (
            "import os, sys, time\\n"
            "deadline = time.monotonic() + 30\\n"
            "while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:\\n"
            "    time.sleep(0.01)\\n"
            "print('OUTLIVED', flush=True)\\n"
            "open(sys.argv[2], 'w').close()\\n"
        )

        def test_c_write():
            ctypes.CDLL(None).write(1, b"C-LEVEL-WRITE\\n", 14)

        def test_starts_child(tmp_path_factory):
            base = tmp_path_factory.getbasetemp()
            subprocess.Popen([sys.executable, "-c", CHILD, base / "go", base / "done"])

        @pytest.mark.not_parallelizable
        def test_after(tmp_path_factory):
            base = tmp_path_factory.getbasetemp()
            (base / "go").touch()
            deadline = time.monotonic() + 30
            while not (base / "done").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert (base / "done").exists()
            assert 0
        """
    )
    result = pytester.runpytest_subprocess(*THREADED, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    lines = result.stdout.lines
    progress = [line for line in lines if line.startswith("test_progress.py ")]
    assert len(progress) == 1 and progress[0].rstrip().endswith("[100%]"), lines
    assert progress[0].split()[1] == "..F", lines
    header = [line for line in lines if END_BLOCK in line]
    assert len(header) == 1 and header[0].startswith("-"), lines
    assert "fd-level stdout" in header[0]
    block = end_block(result.stdout.str())
    assert "C-LEVEL-WRITE" in block and "OUTLIVED" in block
    assert result.stdout.str().count("OUTLIVED") == 1
    assert "OUTLIVED" not in failure_sections(result.stdout.str())["test_after"]


# -- the engine's os.write router -------------------------------------------------------------


@pytest.fixture
def router_and_pipe():
    read_end, write_end = os.pipe()
    previous = _engine.set_thread_capture(None)
    try:
        yield _engine.fd_write_router(os.write), read_end, write_end
    finally:
        _engine.set_thread_capture(previous)
        os.close(read_end)
        os.close(write_end)


def test_router_takes_fds_1_and_2_of_a_capturing_thread_only(router_and_pipe):
    write, read_end, write_end = router_and_pipe
    capture = _engine.Capture()
    _engine.set_thread_capture(capture)
    assert write(1, b"out ") == 4
    assert write(2, bytearray(b"err")) == 3
    assert write(1, memoryview(b"more")) == 4
    assert write(write_end, b"elsewhere") == 9  # other fds: the real os.write
    with pytest.raises(TypeError):
        write(1, "text")
    with pytest.raises(TypeError):
        write(1)
    assert capture.take() == ("out more", "err")
    assert os.read(read_end, 100) == b"elsewhere"
    capture.route_fds = False  # e.g. capfd owns the fds: pass through
    capture.close()
    _engine.set_thread_capture(None)
    assert write(write_end, b"x") == 1
    assert capture.take() == ("", "")


def test_router_keeps_fd_output_apart_while_capsys_reads(router_and_pipe):
    write, _read_end, _write_end = router_and_pipe
    capture = _engine.Capture()
    _engine.set_thread_capture(capture)
    capture.separate_fds = True
    write(1, b"fd-level ")
    capture.write_fd(1, b"child-err")
    _engine.set_thread_capture(None)
    assert capture.take() == ("", "")
    assert capture.take_fd() == ("fd-level ", "child-err")
    capture.separate_fds = False
    capture.write_fd(0, b"in order")
    assert capture.take() == ("in order", "")
    with pytest.raises(ValueError):
        capture.write_fd(2, b"")


def test_router_from_many_threads_loses_nothing(router_and_pipe):
    write, _read_end, _write_end = router_and_pipe
    captures = [_engine.Capture() for _ in range(8)]
    start = threading.Barrier(len(captures), timeout=30)

    def writer(capture: _engine.Capture) -> None:
        _engine.set_thread_capture(capture)
        try:
            start.wait()
            for _ in range(2000):
                write(1, b"o")
                write(2, b"e")
        finally:
            _engine.set_thread_capture(None)

    threads = [threading.Thread(target=writer, args=(capture,)) for capture in captures]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for capture in captures:
        assert capture.take() == ("o" * 2000, "e" * 2000)
