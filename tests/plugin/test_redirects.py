"""contextlib.redirect_stdout/redirect_stderr in pool tests redirect that test's output only:
tests running meanwhile keep theirs, and what each sees equals a sequential run."""

from __future__ import annotations

import pytest

SUITE = """
import contextlib
import io
import os
import sys
import threading
import time

import pytest

pytestmark = pytest.mark.parallelizable("children")
started = threading.Barrier(2, timeout=10)  # the two tests overlap (threaded runs only)


def test_redirects(request):
    if request.config.getoption("threadpool", None):
        started.wait()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out):
        print("to the block, 1")
        time.sleep(0.2)
        print("to the test's stderr", file=sys.stderr)
        with contextlib.redirect_stderr(err):
            print("to the inner block's stderr", file=sys.stderr)
            print("to the outer block, through the inner one")
        os.write(1, b"fd-level, to the test's output\\n")
        print("to the block, 2")
    print("to the test again")
    assert out.getvalue() == (
        "to the block, 1\\n"
        "to the outer block, through the inner one\\n"
        "to the block, 2\\n"
    )
    assert err.getvalue() == "to the inner block's stderr\\n"
    assert False, "show the sections"


def test_beside(request):
    if request.config.getoption("threadpool", None):
        started.wait()
    for i in range(4):
        print("beside", i)
        time.sleep(0.1)
    assert False, "show the sections"
"""


def _sections(result: pytest.RunResult) -> dict[str, str]:
    """Each failed test's captured sections, from the terminal report."""
    text = result.stdout.str()
    sections: dict[str, str] = {}
    for test in ("test_redirects", "test_beside"):
        block = text.split(f"_ {test} _")[1].split("\n_")[0].split("\n=")[0]
        sections[test] = block[block.find("- Captured") :]
    return sections


def test_redirect_blocks_take_only_their_tests_output(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_blocks=SUITE)
    sequential = pytester.runpytest_subprocess(
        "-p",
        "no:threadpool",
        "-p",
        "no:cacheprovider",
        "-W",
        "ignore::pytest.PytestUnknownMarkWarning",
    )
    sequential.assert_outcomes(failed=2)
    threaded = pytester.runpytest_subprocess("--threadpool", "2", "-p", "no:cacheprovider")
    threaded.assert_outcomes(failed=2)
    seq, thr = _sections(sequential), _sections(threaded)
    assert thr == seq
    assert "beside 3" in thr["test_beside"] and "beside" not in thr["test_redirects"]
    assert "to the test's stderr" in thr["test_redirects"]
    assert "fd-level, to the test's output" in thr["test_redirects"]
    # sys.stdout was never swapped: no process-wide change is reported
    threaded.stdout.no_fnmatch_line("*sys.stdout*")
