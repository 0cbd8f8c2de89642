"""fd-level output of tests in a threaded ``--capture=fd`` run goes to the test that wrote it.

Concurrent tests cannot each own fds 1 and 2: for the whole run they point at catch-all files
(``capture_integration``). What can still be told apart is routed to the writing test's capture,
i.e. its "Captured stdout/stderr <phase>" sections, as a sequential run would show it:

- ``os.write(1 | 2, ...)`` from a thread working for a test (its worker, threads it started):
  ``os.write`` is the engine's router for the run (``_engine.fd_write_router``), which appends
  such writes to the thread's capture, in order with its ``print`` output.
- A subprocess started with inherited stdout/stderr from such a thread (``subprocess.run``,
  ``Popen``, ``check_call``, ``check_output``'s stderr, ``os.popen``, ``os.system``) gets a file
  of its test instead of the catch-all (``Popen._get_handles``). What it wrote joins the test's
  capture when the process is waited for (``wait``/``poll``, so ``run``, ``call`` and
  ``communicate``) and when each phase of the test ends. ``os.system`` runs through ``Popen``
  (``/bin/sh -c``, fds and signal dispositions inherited, the same wait status) for such threads.
- A test that runs alone (nothing else runs meanwhile): fds 1 and 2 point at files of the run
  for each of its phases (``AloneFds``), as pytest's global fd capture does, so that C code
  writing to fd 1 and pytest's ``capfd`` handing unread output back to the "original" fd 1
  (``CaptureFixture.close``) reach its sections too.

What nobody can attribute (C code of a pool test writing to fd 1, a child writing after its
test ended) stays in the catch-all files and is reported once, after the run.

Everything the run calls is bound at import: a test may replace ``os`` or ``subprocess``
functions while the run goes on.
"""

from __future__ import annotations

import _thread
import fcntl
import os
import subprocess
import tempfile
import weakref
from typing import Any

from pytest_threadpool import _engine
from pytest_threadpool.dict_reads import lookup

_os_pread = os.pread
_os_fstat = os.fstat
_os_close = os.close
_os_dup2 = os.dup2
_os_ftruncate = os.ftruncate
_os_unlink = os.unlink
_fcntl = fcntl.fcntl
_F_GETFL, _F_SETFL, _O_APPEND = fcntl.F_GETFL, fcntl.F_SETFL, os.O_APPEND
_mkstemp = tempfile.mkstemp
_allocate_lock = _thread.allocate_lock
_weakref = weakref.ref
_Popen = subprocess.Popen
_STDOUT = subprocess.STDOUT
_popen_poll = subprocess.Popen.poll
_get_thread_capture = _engine.get_thread_capture

_SINK_ATTRIBUTE = "_threadpool_fd_sink"


def _open_spool() -> int:
    """An unlinked temporary file opened for appending (children sharing it never overwrite
    each other); read with ``pread`` so that its offset is never moved under them."""
    fd, path = _mkstemp(prefix="pytest-threadpool-fd-")
    try:
        _os_unlink(path)
        _fcntl(fd, _F_SETFL, _fcntl(fd, _F_GETFL) | _O_APPEND)
    except OSError:
        _os_close(fd)
        raise
    return fd


def _read_from(fd: int, offset: int) -> tuple[bytes, int]:
    """What the file holds past ``offset``, and the new offset."""
    size = _os_fstat(fd).st_size
    if size <= offset:
        return b"", offset
    chunks = []
    while offset < size:
        data = _os_pread(fd, size - offset, offset)
        if not data:
            break
        chunks.append(data)
        offset += len(data)
    return b"".join(chunks), offset


def _routed_capture() -> _engine.Capture | None:
    """The calling thread's capture when its fd-level output goes to it."""
    capture = _get_thread_capture()
    if capture is None or capture.closed or not capture.route_fds:
        return None
    return capture


class ChildSink:
    """The files a test's subprocesses write to instead of fds 1 and 2 (made when first
    needed), and how far each has been moved into the test's capture."""

    __slots__ = ("_children", "_fds", "_lock", "_offsets", "capture", "finished")

    def __init__(self, capture: _engine.Capture) -> None:
        self.capture = capture
        self._fds = [-1, -1]
        self._offsets = [0, 0]
        self._children: list[Any] = []  # weak references to the Popen objects
        self._lock = _allocate_lock()
        self.finished = False  # the test is over: later output is not its own any more

    def fd(self, stream: int) -> int:
        """The file for ``stream`` (0: stdout, 1: stderr); -1 when none can be had."""
        with self._lock:
            if self.finished:
                return -1
            if self._fds[stream] < 0:
                try:
                    self._fds[stream] = _open_spool()
                except OSError:
                    return -1
            return self._fds[stream]

    def track(self, process: Any) -> None:
        with self._lock:
            self._children.append(_weakref(process))

    def drain(self) -> None:
        """Move what the children wrote since the last drain into the test's capture."""
        with self._lock:
            if self.finished:
                return
            for stream in (0, 1):
                fd = self._fds[stream]
                if fd < 0:
                    continue
                data, self._offsets[stream] = _read_from(fd, self._offsets[stream])
                if data:
                    self.capture.write_fd(stream, data)

    def finish(self) -> bool:
        """The test's last phase ended: drain. True when no child can write any more (the
        files may be closed); otherwise later output is read at the end of the run."""
        self.drain()
        with self._lock:
            self.finished = True
            children = list(self._children)
        for ref in children:
            process = ref()
            if process is None:
                return False  # collected without being waited for: it may still run
            if process.returncode is None and _popen_poll(process) is None:
                return False
        return True

    def leftovers(self) -> list[tuple[int, bytes]]:
        """What arrived after the last drain (children that outlived their test); closes."""
        found = []
        with self._lock:
            self.finished = True
            for stream in (0, 1):
                fd = self._fds[stream]
                if fd < 0:
                    continue
                try:
                    data, self._offsets[stream] = _read_from(fd, self._offsets[stream])
                except OSError:
                    data = b""
                if data:
                    found.append((stream + 1, data))
            self._close_locked()
        return found

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        for stream in (0, 1):
            fd = self._fds[stream]
            self._fds[stream] = -1
            if fd >= 0:
                try:
                    _os_close(fd)
                except OSError:
                    pass


class ChildSinks:
    """One ``ChildSink`` per capture whose threads started a subprocess."""

    def __init__(self) -> None:
        self._lock = _allocate_lock()
        self._live: dict[_engine.Capture, ChildSink] = {}
        self._retired: list[ChildSink] = []  # their test ended while a child still ran

    def sink_for(self, capture: _engine.Capture) -> ChildSink:
        sink = lookup(self._live, capture)
        if sink is None:
            with self._lock:
                sink = lookup(self._live, capture)
                if sink is None:
                    sink = self._live[capture] = ChildSink(capture)
        return sink

    def phase_end(self, capture: _engine.Capture, *, last: bool) -> None:
        """A phase of the test owning ``capture`` ended (``last``: its teardown)."""
        if not self._live:
            return
        sink = lookup(self._live, capture)
        if sink is None:
            return
        if not last:
            sink.drain()
            return
        with self._lock:
            if lookup(self._live, capture) is sink:
                del self._live[capture]
        if sink.finish():
            sink.close()
        else:
            with self._lock:
                self._retired.append(sink)

    def close(self) -> list[tuple[int, bytes]]:
        """End of the run: (fd, bytes) nobody could attribute; every file is closed."""
        with self._lock:
            sinks = [*self._live.values(), *self._retired]
            self._live.clear()
            self._retired.clear()
        found: list[tuple[int, bytes]] = []
        for sink in sinks:
            found.extend(sink.leftovers())
        return found


def _identity(fd: int) -> tuple[int, int] | None:
    try:
        st = _os_fstat(fd)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class FdRouting:
    """``os.write``, ``os.system`` and ``subprocess.Popen`` routed for the run (a context
    manager; undone on exit, unless someone replaced them meanwhile).

    ``owned``: the fds of the files the run points fds 1 and 2 at. Output is routed only while
    fd 1 (2) still refers to one of them: a test that pointed fd 1 elsewhere itself (click's
    ``CliRunner(capture="fd")``, its own ``dup2``) writes there, and so do its children, as in
    a sequential run."""

    def __init__(self, owned: tuple[int, ...] = ()) -> None:
        self.sinks = ChildSinks()
        self._undo: list[Any] = []
        self._owned = tuple(owned)
        self._identities = frozenset(_identity(fd) for fd in owned) - {None}

    def _points_at_run_file(self, fd: int) -> bool:
        return not self._owned or _identity(fd) in self._identities

    def __enter__(self) -> FdRouting:
        sinks = self.sinks
        points_at_run_file = self._points_at_run_file
        previous_get_handles = _Popen._get_handles  # type: ignore[attr-defined]
        previous_wait = _Popen.wait
        previous_poll = _Popen.poll

        def _get_handles(self: Any, stdin: Any, stdout: Any, stderr: Any) -> Any:
            handles = previous_get_handles(self, stdin, stdout, stderr)
            if stdout is not None and stderr is not None:
                return handles  # nothing inherited
            capture = _routed_capture()
            if capture is None:
                return handles
            sink = sinks.sink_for(capture)
            p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite = handles
            redirected = False
            if stdout is None and points_at_run_file(1):
                out = sink.fd(0)
                if out >= 0:
                    redirected = True
                    c2pwrite = out
                    if isinstance(stderr, int) and stderr == _STDOUT:
                        errwrite = out  # was the parent's fd 1
            if stderr is None and points_at_run_file(2):
                err = sink.fd(1)
                if err >= 0:
                    redirected = True
                    errwrite = err
            if not redirected:
                return handles
            # c2pread/errread stay -1: Popen leaves our files open (as for a file object)
            sink.track(self)
            setattr(self, _SINK_ATTRIBUTE, sink)
            return p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite

        def wait(self: Any, timeout: float | None = None) -> int:
            status = previous_wait(self, timeout=timeout)
            sink = getattr(self, _SINK_ATTRIBUTE, None)
            if sink is not None:
                sink.drain()
            return status

        def poll(self: Any) -> int | None:
            status = previous_poll(self)
            if status is not None:
                sink = getattr(self, _SINK_ATTRIBUTE, None)
                if sink is not None:
                    sink.drain()
            return status

        previous_system = os.system
        previous_write = os.write

        def system(command: Any) -> int:
            if _routed_capture() is None:
                return previous_system(command)
            # What system(3) does, through Popen so that the shell's fds 1 and 2 can be the
            # test's: /bin/sh -c, every fd and signal disposition inherited, the wait status.
            try:
                process = _Popen(command, shell=True, close_fds=False, restore_signals=False)
            except OSError:
                return -1  # as system(3) when no child can be made
            returncode = process.wait()
            return returncode << 8 if returncode >= 0 else -returncode

        system.__doc__ = previous_system.__doc__
        router = _engine.fd_write_router(previous_write, self._owned or None)
        self._replace(_Popen, "_get_handles", _get_handles, previous_get_handles)
        self._replace(_Popen, "wait", wait, previous_wait)
        self._replace(_Popen, "poll", poll, previous_poll)
        self._replace(os, "system", system, previous_system)
        self._replace(os, "write", router, previous_write)
        return self

    def _replace(self, owner: Any, name: str, new: Any, previous: Any) -> None:
        setattr(owner, name, new)

        def undo() -> None:
            if getattr(owner, name, None) is new:
                setattr(owner, name, previous)

        self._undo.append(undo)

    def __exit__(self, *exc_info: object) -> None:
        while self._undo:
            self._undo.pop()()

    def close(self) -> list[tuple[int, bytes]]:
        """(fd, bytes) written by children after their test ended; closes their files."""
        return self.sinks.close()


class AloneFds:
    """fds 1 and 2 during one phase of a test that runs alone: files of the run, moved into the
    test's capture when the phase ends (pytest's global fd capture, phase by phase). Between
    phases fds 1 and 2 are the run's catch-all files again."""

    def __init__(self, catch_all: tuple[int, int]) -> None:
        self._catch_all = catch_all
        self._fds = (_open_spool(), _open_spool())
        self._active = False

    @property
    def fds(self) -> tuple[int, int]:
        """The files fds 1 and 2 point at during a phase."""
        return self._fds

    def start(self) -> None:
        for stream, fd in enumerate(self._fds):
            _os_dup2(fd, stream + 1)
        self._active = True

    def stop(self, capture: _engine.Capture) -> None:
        if not self._active:
            return
        self._active = False
        for stream, fd in enumerate(self._fds):
            _os_dup2(self._catch_all[stream], stream + 1)
            data, _ = _read_from(fd, 0)
            _os_ftruncate(fd, 0)
            if data:
                capture.write_fd(stream, data)

    def close(self) -> list[tuple[int, bytes]]:
        """What arrived after the last phase (children outliving their test); closes."""
        found = []
        for stream, fd in enumerate(self._fds):
            try:
                data, _ = _read_from(fd, 0)
            except OSError:
                data = b""
            if data:
                found.append((stream + 1, data))
            try:
                _os_close(fd)
            except OSError:
                pass
        return found


def uses_fd_fixture(item: Any) -> bool:
    """Does the item use pytest's capfd/capfdbinary (which own fds 1 and 2 while active)?"""
    names = getattr(item, "fixturenames", ())
    return "capfd" in names or "capfdbinary" in names
