"""``contextlib.redirect_stdout`` / ``redirect_stderr`` in pool tests, for that test only.

The context managers swap ``sys.stdout`` (or ``sys.stderr``) of the whole process: in a pool,
every test running meanwhile would print into the block's target, and its own output would be
missing (seen in idna's CLI tests). During a threaded run a block entered on a pool test's
thread swaps nothing: the thread's writes go to a capture of the block's own, and when the
block ends, what was written to the redirected stream is written to the block's target and the
rest (the other stream, fd-level writes) goes back to the test's output, as a sequential run
would have sent it there. The target thus receives the text when the block ends, not while it
runs; inside the block ``sys.stdout`` is still the run's dispatcher, not the target, and
threads the test starts write to the test's output, not to the target. Blocks on the main
thread (tests that run alone) and with capture off (``-s``) behave as usual.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from pytest_threadpool import _engine
from pytest_threadpool.context import current_run

_REDIRECT_STREAM = contextlib._RedirectStream  # type: ignore[attr-defined]
_ORIGINAL_ENTER = _REDIRECT_STREAM.__enter__
_ORIGINAL_EXIT = _REDIRECT_STREAM.__exit__
_set_thread_capture = _engine.set_thread_capture
_Capture = _engine.Capture
_sys = sys
_STACK = "_threadpool_blocks"  # per context manager: (capture outside, the block's) or None


def _enter(self: Any) -> Any:
    run = current_run()
    blocks = self.__dict__.setdefault(_STACK, [])
    if run is None or run.inline:
        blocks.append(None)
        return _ORIGINAL_ENTER(self)
    block = _Capture()
    block.separate_fds = True  # fd-level writes are not redirected: kept apart
    outside = _set_thread_capture(block)
    if outside is None:  # this thread's output is not captured (-s): as usual
        _set_thread_capture(None)
        blocks.append(None)
        return _ORIGINAL_ENTER(self)
    blocks.append((outside, block))
    return self._new_target


def _exit(self: Any, *exc_info: Any) -> Any:
    blocks = self.__dict__.get(_STACK)
    entry = blocks.pop() if blocks else None
    if entry is None:
        return _ORIGINAL_EXIT(self, *exc_info)
    outside, block = entry
    _set_thread_capture(outside)
    out, err = block.take()
    fd_out, fd_err = block.take_fd()
    redirected, other, other_name = (
        (out, err, "stderr") if self._stream == "stdout" else (err, out, "stdout")
    )
    if other:  # back where it would have gone: the enclosing block's capture or the test's
        getattr(_sys, other_name).write(other)
    for stream, text in ((0, fd_out), (1, fd_err)):
        if text:
            outside.write_fd(stream, text.encode())
    if redirected:
        self._new_target.write(redirected)
    return None


@contextlib.contextmanager
def per_test_redirects() -> Iterator[None]:
    _REDIRECT_STREAM.__enter__ = _enter
    _REDIRECT_STREAM.__exit__ = _exit
    try:
        yield
    finally:
        _REDIRECT_STREAM.__enter__ = _ORIGINAL_ENTER
        _REDIRECT_STREAM.__exit__ = _ORIGINAL_EXIT
