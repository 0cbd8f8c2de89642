"""pytest's output capture on top of the engine's per-thread dispatcher.

pytest's CaptureManager swaps ``sys.stdout``/``sys.stderr`` (and dups fds 1/2) process-wide around
every test phase; concurrent tests would fight over that. For a threaded run we suspend pytest's
global capture once, install one engine ``Dispatcher`` per stream, and let each phase's output
come from the item's own ``Capture``, producing the same "Captured stdout/stderr <phase>" sections.
With ``--capture=fd``, fds 1 and 2 point at catch-all files for the run and fd-level output is
routed to its test where that can be known (``fd_output``); the rest is reported after the run.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from pytest_threadpool import _engine, pytest_compat
from pytest_threadpool.context import current_run
from pytest_threadpool.fd_output import AloneFds, FdRouting, uses_fd_fixture

# Bound at import: used again when the run ends, after tests that may have replaced them.
_dup2 = os.dup2


class ThreadedCapture:
    """Installed for the duration of a threaded run (``with ThreadedCapture(config):``)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.capman = config.pluginmanager.getplugin("capturemanager")
        self.enabled = config.getoption("capture", "fd") != "no"
        self._restore: list[Callable[[], None]] = []
        self.stdout: _engine.Dispatcher | None = None
        self.stderr: _engine.Dispatcher | None = None
        self.unattributed: list[tuple[int, str]] = []
        # Where the terminal's stderr is reachable during the run (fd 2 may be redirected).
        self.terminal_stderr_fd = 2
        # The terminal's stdout while fd 1 goes to the catch-all file (None: fd 1 is it).
        self.terminal_stdout_fd: int | None = None
        # --capture=fd: fd-level output routed to its test (os.write, subprocesses), and fds 1
        # and 2 of tests that run alone, phase by phase (see fd_output).
        self.fd_routing: FdRouting | None = None
        self.alone_fds: AloneFds | None = None

    def __enter__(self) -> ThreadedCapture:
        capman = self.capman
        # Streams pytest's global capture handed out (e.g. to a StreamHandler made at import).
        captured_streams: dict[int, int] = {}
        global_capture = pytest_compat.global_capture(capman)
        for index, name in enumerate(("out", "err")):
            tmpfile = getattr(getattr(global_capture, name, None), "tmpfile", None)
            if tmpfile is not None:
                captured_streams[id(tmpfile)] = index
        if capman is not None:
            capman.suspend_global_capture(in_=False)
            self._patch(capman, "resume_global_capture", lambda: None)
            self._patch(capman, "suspend_global_capture", lambda in_=False: None)
            self._patch(capman, "item_capture", self.item_capture)
        old_out, old_err = sys.stdout, sys.stderr
        out_target, err_target = old_out, old_err
        if (
            self.config.getoption("capture", "fd") == "fd"
            and _is_fd(old_out, 1)
            and _is_fd(old_err, 2)
        ):
            out_target, err_target = self._redirect_fds(old_out, old_err)
        self.stdout = _engine.Dispatcher(out_target, stream=0, name="<stdout>")
        self.stderr = _engine.Dispatcher(err_target, stream=1, name="<stderr>")
        sys.stdout, sys.stderr = self.stdout, self.stderr

        def restore_streams() -> None:
            # Leave our dispatchers in place if someone else replaced them meanwhile.
            if sys.stdout is self.stdout:
                sys.stdout = old_out
            if sys.stderr is self.stderr:
                sys.stderr = old_err

        self._restore.append(restore_streams)
        replacements = {id(old_out): self.stdout, id(old_err): self.stderr}
        dispatchers = (self.stdout, self.stderr)
        for stream_id, index in captured_streams.items():
            replacements[stream_id] = dispatchers[index]
        self._repoint_stream_handlers(replacements)
        return self

    def _redirect_fds(self, old_out: Any, old_err: Any) -> tuple[Any, Any]:
        """--capture=fd: fds 1 and 2 go to temporary files for the run, so fd-level writes of
        pool tests (os.write, subprocesses, C code) never reach the terminal mid-run. The
        terminal itself is reached through duplicates of the original fds. Whatever lands in
        the files cannot be attributed to one test: it is reported once, at the end."""
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        targets = []
        catch_all = []
        for fd, stream in ((1, old_out), (2, old_err)):
            try:
                saved = os.dup(fd)
            except OSError:
                return old_out, old_err
            sink = tempfile.TemporaryFile(buffering=0)
            catch_all.append(sink.fileno())
            _flush(stream)
            os.dup2(sink.fileno(), fd)
            encoding = getattr(stream, "encoding", None) or "utf-8"
            writer = open(saved, "w", encoding=encoding, errors="replace", closefd=True)
            targets.append(writer)
            if fd == 2:
                self.terminal_stderr_fd = saved
            else:
                self.terminal_stdout_fd = saved

            def restore(fd: int = fd, saved_writer: Any = writer, sink: Any = sink) -> None:
                _flush(sys.stdout if fd == 1 else sys.stderr)
                saved_writer.flush()
                _dup2(saved_writer.fileno(), fd)
                sink.seek(0)
                leftover = sink.read().decode("utf-8", "replace")
                sink.close()
                if leftover:
                    self.unattributed.append((fd, leftover))
                saved_writer.close()

            self._restore.append(restore)
        self._route_fd_output((catch_all[0], catch_all[1]))
        if terminal is not None:
            tw = pytest_compat.terminal_writer(terminal)
            original_file = pytest_compat.writer_file(tw)
            if original_file is old_out:
                pytest_compat.set_writer_file(tw, targets[0])
                self._restore.append(lambda: pytest_compat.set_writer_file(tw, original_file))
        return targets[0], targets[1]

    def _route_fd_output(self, catch_all: tuple[int, int]) -> None:
        """fd-level output of pool tests to their own capture where it can be known."""
        try:
            alone = AloneFds(catch_all)
        except OSError:
            return
        routing = FdRouting((*catch_all, *alone.fds)).__enter__()
        self.fd_routing, self.alone_fds = routing, alone

        def undo() -> None:
            routing.__exit__(None, None, None)
            self.fd_routing = self.alone_fds = None
            for fd, data in [*routing.close(), *alone.close()]:
                self.unattributed.append((fd, data.decode("utf-8", "replace")))

        self._restore.append(undo)

    def report_unattributed(self, terminal: Any) -> None:
        """After the run (in the terminal summary, so that the progress line is complete): the
        fd-level output no test could be given."""
        unattributed, self.unattributed = self.unattributed, []
        if terminal is None:
            return
        for fd, name in ((1, "stdout"), (2, "stderr")):
            text = "".join(text for where, text in unattributed if where == fd)
            if not text:
                continue
            terminal.write_sep(
                "-",
                f"threadpool: fd-level {name} not attributable to one test "
                "(C code writing to the fd, processes that outlived their test)",
            )
            terminal.write(text if text.endswith("\n") else text + "\n")

    def _repoint_stream_handlers(self, replacements: dict[int, _engine.Dispatcher]) -> None:
        """logging.StreamHandlers created before the run hold the old streams: point them at
        the dispatchers so a pool test's records land in its own output."""
        for ref in list(logging._handlerList):  # type: ignore[attr-defined]
            handler = ref()
            stream = getattr(handler, "stream", None)
            if not isinstance(handler, logging.StreamHandler) or id(stream) not in replacements:
                continue
            handler.setStream(replacements[id(stream)])

            def undo(handler: logging.StreamHandler = handler, stream: Any = stream) -> None:
                if handler.stream in (self.stdout, self.stderr):
                    handler.setStream(stream)

            self._restore.append(undo)

    def __exit__(self, *exc_info: object) -> None:
        while self._restore:
            self._restore.pop()()

    def _patch(self, obj: Any, name: str, value: Any) -> None:
        had = name in vars(obj)
        previous = vars(obj).get(name)

        def undo() -> None:
            if had:
                setattr(obj, name, previous)
            else:
                delattr(obj, name)

        setattr(obj, name, value)
        self._restore.append(undo)

    @contextmanager
    def item_capture(self, when: str, item: pytest.Item) -> Iterator[None]:
        run = current_run()
        if run is None or run.item is not item:
            yield
            return
        capture = run.capture
        routing = self.fd_routing
        alone = self.alone_fds if run.inline and run.capture_enabled else None
        if routing is not None:
            # capfd owns fds 1 and 2 while active: its test's fd-level writes must reach them.
            capture.route_fds = not uses_fd_fixture(item)
        if alone is not None:
            alone.start()
        try:
            # pytest's capfd (only ever in a test that runs alone: it is an unsafe fixture) is
            # started and closed around each phase, as pytest's item_capture does: closing hands
            # unread output to the phase's fd 1, i.e. to this phase's sections.
            if self._fixture_of(item) is not None:
                self.capman.activate_fixture()
            try:
                yield
            finally:
                if self._fixture_of(item) is not None:
                    self.capman.deactivate_fixture()
        finally:
            if alone is not None:
                alone.stop(capture)
            if routing is not None:
                routing.sinks.phase_end(capture, last=when == "teardown")
            if run.capsys is not None:
                out, err = run.capsys.report_output()
            else:
                out, err = capture.take()
            fd_out, fd_err = capture.take_fd()  # fd-level output kept from capsys
            out, err = out + fd_out, err + fd_err
            run.outputs[when] = (out, err)
            if self.enabled:
                item.add_report_section(when, "stdout", out)
                item.add_report_section(when, "stderr", err)

    def _fixture_of(self, item: pytest.Item) -> Any:
        """pytest's capfd/capfdbinary fixture object when ``item`` requested it, else None."""
        fixture = pytest_compat.capture_fixture(self.capman)
        if fixture is None or getattr(getattr(fixture, "request", None), "node", None) is not item:
            return None
        return fixture


class ThreadCaptureFixture:
    """``capsys``/``capsysbinary``/``capteesys`` for a test that runs in the thread pool:
    reads exactly that test's output, whatever other tests print meanwhile.

    ``capteesys`` also passes the output on "as defined by --capture": live to the terminal
    with ``-s``, otherwise into the test's report sections (as pytest's does)."""

    def __init__(self, capture: _engine.Capture, *, binary: bool, tee: bool, live: bool) -> None:
        self._capture = capture
        self._binary = binary
        self._tee = tee
        capture.tee = tee and live
        self._pending = ("", "")  # taken for a report section, not read by the test yet
        self._read = ("", "")  # read by the test since the last report section

    def readouterr(self) -> Any:
        new_out, new_err = self._capture.take()
        out, err = self._pending[0] + new_out, self._pending[1] + new_err
        self._pending = ("", "")
        if self._tee:
            self._read = (self._read[0] + out, self._read[1] + err)
        if self._binary:
            return _result(out.encode("utf-8"), err.encode("utf-8"))
        return _result(out, err)

    def report_output(self) -> tuple[str, str]:
        """Output for the current phase's report sections."""
        if not self._tee:
            return "", ""  # capsys owns the output; unread text shows at teardown
        new_out, new_err = self._capture.take()
        self._pending = (self._pending[0] + new_out, self._pending[1] + new_err)
        out, err = self._read[0] + new_out, self._read[1] + new_err
        self._read = ("", "")
        return out, err

    @contextmanager
    def disabled(self) -> Iterator[None]:
        """Temporarily pass this thread's output straight through (as pytest's does)."""
        previous = _engine.set_thread_capture(None)
        try:
            yield
        finally:
            _engine.set_thread_capture(previous)

    def close(self) -> None:
        # Unread output stays in the item's capture and shows in its teardown section.
        self._capture.tee = False


def _result(out: Any, err: Any) -> Any:
    return pytest_compat.CaptureResult(out, err)


def _capture_fixture(request: pytest.FixtureRequest, name: str, *, binary: bool, tee: bool):
    run = current_run()
    if run is None or run.item is not request.node:
        # Not one of our runs (cannot happen in a threaded session): pytest's own fixture.
        yield request.getfixturevalue(name)
        return
    live = request.config.getoption("capture", "fd") == "no"
    fixture = ThreadCaptureFixture(run.capture, binary=binary, tee=tee, live=live)
    run.capsys = fixture
    # fd-level output (os.write, subprocesses) is not capsys's to read: it goes to the report
    # sections only, as pytest's fd capture takes it in a sequential run.
    run.capture.separate_fds = True
    # A main-thread test under -s does not capture by default; capsys needs it to.
    previous = _engine.set_thread_capture(run.capture)
    try:
        yield fixture
    finally:
        _engine.set_thread_capture(previous)
        run.capture.separate_fds = False
        run.capsys = None
        fixture.close()


class CaptureFixtures:
    """Thread-aware ``capsys``, ``capsysbinary`` and ``capteesys``, registered as a plugin only
    for threaded runs (they override pytest's, which swap process-wide streams)."""

    @pytest.fixture
    def capsys(self, request: pytest.FixtureRequest):
        yield from _capture_fixture(request, "capsys", binary=False, tee=False)

    @pytest.fixture
    def capsysbinary(self, request: pytest.FixtureRequest):
        yield from _capture_fixture(request, "capsysbinary", binary=True, tee=False)

    @pytest.fixture
    def capteesys(self, request: pytest.FixtureRequest):
        yield from _capture_fixture(request, "capteesys", binary=False, tee=True)


def _flush(stream: Any) -> None:
    try:
        stream.flush()
    except Exception:  # whatever a test left in sys.stdout: closed, replaced, broken
        pass


def _is_fd(stream: Any, fd: int) -> bool:
    """Is ``stream`` writing to file descriptor ``fd`` (the terminal, not a capture buffer)?"""
    try:
        return stream.fileno() == fd
    except (AttributeError, OSError, ValueError):
        return False
