"""C execution engine of pytest-threadpool: worker pool, output dispatcher, watchdog, crash
attribution. Safe on free-threaded CPython; the import does not re-enable the GIL."""

import os
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeVar, final

_T = TypeVar("_T")

FREE_THREADED: Final[bool]
"""Built for (and running on) a free-threaded CPython."""

def build_info() -> dict[str, Any]:
    """How this engine was compiled (free_threaded, compiler, c_standard)."""

# Clocks read with clock_gettime, never through the time module: a test may replace
# time.monotonic & co process-wide (freezegun rebinds every module attribute that is a real
# time function), so the runner takes its timings from here.

def monotonic() -> float:
    """CLOCK_MONOTONIC in seconds; the clock of ``time.monotonic()``."""

def perf_counter() -> float:
    """The clock of ``time.perf_counter()`` (CLOCK_MONOTONIC on Linux), in seconds; values
    compare with ``time.perf_counter()``'s."""

def wall_time() -> float:
    """CLOCK_REALTIME in seconds since the epoch; the clock of ``time.time()``."""

def thread_time() -> float:
    """CPU seconds used by the calling thread (CLOCK_THREAD_CPUTIME_ID); the clock of
    ``time.thread_time()``."""

class TaskTimeout(BaseException):
    """Raised asynchronously inside a task whose ``timeout`` passed (a ``BaseException``, so
    ``except Exception`` in a test does not swallow it). Also the ``exception`` of a hung task's
    result, with the message ``"task hung: no response {grace}s after its {timeout}s timeout"``."""

# Interruptible waits (waits.c). The runner installs them for a threaded run in place of
# time.sleep, threading._allocate_lock (the lock every Condition.wait blocks on: Event, Queue,
# Barrier, Semaphore) and, through wait_until, Thread.join. On a pool worker running a task, a
# TaskTimeout or interrupt() delivered to that task ends the wait at once and is raised there,
# exactly once; on every other thread they behave like the originals.

def sleep(seconds: float, /) -> None:
    """``time.sleep`` that a timeout or interrupt of the calling pool task ends (raising it);
    waits detached on the worker's wake event (no polling). Elsewhere, and for anything but a
    positive finite int/float, the ``time.sleep`` bound when the engine was imported."""

def allocate_waiter_lock() -> Any:
    """``_thread.allocate_lock()``, except on a pool worker running a task: a
    :class:`WaiterLock` whose blocking acquire a delivery to that task interrupts."""
@final
class WaiterLock:
    """A lock for ``threading.Condition``'s waiters on a pool task (made only by
    :func:`allocate_waiter_lock`): ``acquire``/``release``/``locked`` and the context manager
    as ``_thread.lock``; its releases wake the waiting worker."""

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool: ...
    def release(self) -> None: ...
    def locked(self) -> bool: ...
    def __enter__(self) -> bool: ...
    def __exit__(self, *args: object) -> None: ...

def wait_until(step: Callable[[float], object], timeout: float | None = None, /) -> bool:
    """Call ``step(slice)`` (``slice`` <= 0.05 s) until it returns true (True) or ``timeout``
    seconds pass (False). On a pool task a delivery made meanwhile is raised between steps
    (what ``Thread.join`` uses: a thread's end has no wake-up to hook)."""

def in_task() -> bool:
    """The calling thread is a pool worker running a task."""

def set_task_deadline(seconds: float, /) -> bool:
    """From a pool task: its deadline becomes now + ``seconds`` (0: none), replacing the one
    ``submit(timeout=...)`` armed; a TaskTimeout delivered for the previous deadline and not
    raised yet is dropped. False (nothing done) on any other thread. Used for pytest-timeout's
    ``func_only``: the deadline covers the call phase only."""
@final
class TaskResult:
    """Outcome of one task, in completion order, from :meth:`Pool.next_result`. Immutable; only
    the engine creates it."""

    @property
    def id(self) -> int: ...
    @property
    def label(self) -> str: ...
    @property
    def value(self) -> Any:
        """``fn(arg)``'s return value; None if it raised, was cancelled or hung."""
    @property
    def exception(self) -> BaseException | None:
        """The exception the call raised, with its ``__traceback__`` (for a timed-out task: the
        ``TaskTimeout`` raised where it was stuck)."""
    @property
    def worker(self) -> int:
        """Index of the worker that ran it; -1 if it never started."""
    @property
    def queue_wait(self) -> float:
        """Seconds from submit (or from the last dependency completing) to start; 0.0 if it
        never started."""
    @property
    def run_time(self) -> float:
        """Seconds the call ran (until it returned, or until it was declared hung)."""
    @property
    def cancelled(self) -> bool: ...
    @property
    def timed_out(self) -> bool:
        """The watchdog delivered ``TaskTimeout`` and the call ended with an exception (a call
        that returned normally at its deadline is never reported timed out). True when hung."""
    @property
    def hung(self) -> bool:
        """The task did not stop within ``grace`` seconds after its deadline: its result was
        published without waiting and its worker abandoned and replaced."""
    @property
    def stack(self) -> str | None:
        """For a hung task: its stack when it was abandoned. On the GIL build this is
        ``traceback.format_stack`` of the worker's frame from ``sys._current_frames()``. On the
        free-threaded build reading another thread's frames is unsafe, so this is a short
        explanatory string instead (a task blocked in an interruptible wait is not hung: its
        TaskTimeout traceback shows where it stopped). None for every other task."""

@final
class Pool:
    """A fixed set of worker threads (``threading.Thread`` objects named ``f"{name}-{i}"``,
    daemon, running a C loop) executing submitted calls, highest ``priority`` first and FIFO
    among equals, honouring ``deps``.

    Shut down automatically at interpreter exit (atexit) or when collected: a forgotten pool
    never hangs exit. At exit, running tasks get ``grace`` seconds, then a KeyboardInterrupt and
    ``grace`` more seconds; threads still busy after that are left to the interpreter."""

    def __init__(
        self, workers: int, *, name: str = "threadpool-worker", grace: float = 2.0
    ) -> None:
        """``workers`` threads (1..4096); ``grace``: seconds after a task's deadline before it
        counts as hung."""
    def start(self) -> None:
        """Start the worker threads (idempotent). RuntimeError after shutdown."""
    def submit(
        self,
        fn: Callable[[_T], Any],
        arg: _T = ...,
        *,
        priority: float = 0.0,
        label: str = "",
        timeout: float = 0.0,
        deps: Sequence[int] = (),
    ) -> int:
        """Queue ``fn(arg)`` (``arg`` defaults to None); returns its id (1, 2, ...). The task
        becomes ready once every id in ``deps`` completed (unknown or completed ids count as
        completed). ``timeout > 0`` arms the watchdog from the moment the task starts. Callable
        from any thread, before or after start(). RuntimeError after shutdown."""
    def post(self, obj: object) -> None:
        """Put ``obj`` into the result stream (any thread); next_result returns it as-is."""
    def next_result(self, timeout: float | None = None) -> TaskResult | Any | None:
        """The next completed task's result or posted object. None when ``timeout`` seconds
        pass first (0: poll), or, with ``timeout=None``, at once when nothing is queued,
        running or waiting to be fetched (or the pool was never started). Waits detached in
        50 ms slices and runs signal handlers between them: if one raises (Ctrl-C), queued tasks
        are cancelled and running ones get KeyboardInterrupt before the exception propagates."""
    def cancel(self) -> int:
        """Cancel every task that has not started (including those waiting on deps); each still
        yields a TaskResult with ``cancelled=True``. Returns how many."""
    def interrupt(self, exc_type: type[BaseException] = ...) -> int:
        """Raise ``exc_type`` (default KeyboardInterrupt) asynchronously in every running task;
        delivery is gated so it never lands in a later task. Returns how many."""
    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop accepting tasks, cancel queued ones (their results stay fetchable) and, with
        ``wait``, join the workers and the watchdog (interruptible; up to ``timeout`` seconds).
        Abandoned (hung) workers are not waited for. A task calling it does not wait for its own
        worker. Idempotent."""
    @property
    def workers(self) -> int:
        """Number of worker threads the pool keeps (hung ones are replaced)."""
    @property
    def alive(self) -> int:
        """Worker threads currently live and not abandoned."""
    @property
    def pending(self) -> int:
        """Queued + running tasks + results (and posted objects) not yet fetched."""
    @property
    def running(self) -> list[tuple[int, int, str]]:
        """``(worker_index, task_id, label)`` of each running task."""
    @property
    def replaced(self) -> int:
        """Workers abandoned as hung and replaced."""
    @property
    def name(self) -> str: ...
    @property
    def grace(self) -> float: ...
    def __enter__(self) -> Self:
        """start() and return the pool."""
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> Literal[False]:
        """shutdown(wait=True)."""

@final
class Capture:
    """Per-task output sink: one byte buffer for stdout and one for stderr, filled by a
    :class:`Dispatcher` when this capture is the writing thread's current capture. Thread-safe:
    threads started by a test may share it."""

    def __init__(self) -> None: ...
    def take(self) -> tuple[str, str]:
        """(stdout, stderr) written since the last take, decoded as UTF-8 with
        errors="replace"; clears both buffers."""
    def peek(self) -> tuple[str, str]:
        """Like take() without clearing."""
    def close(self) -> None:
        """Later writes pass through to the dispatcher's fallback."""
    @property
    def closed(self) -> bool: ...
    tee: bool
    """When True, writes are recorded and also passed through to the fallback (capteesys)."""
    route_fds: bool
    """When True (default), fd-level writes of the threads using this capture (``os.write`` to
    fds 1/2 through :func:`fd_write_router`) come here instead of going to the fds."""
    separate_fds: bool
    """When True, fd-level output (routed writes, :meth:`write_fd`) goes to buffers of its own,
    read by :meth:`take_fd` only (``capsys`` reads ``take()`` and must not see it)."""
    def write_fd(self, stream: int, data: bytes | bytearray | memoryview, /) -> None:
        """Append fd-level output (e.g. what a subprocess wrote) to ``stream`` (0: stdout,
        1: stderr): to the ``take()`` buffers, or to the ``take_fd()`` ones while
        ``separate_fds`` is set."""
    def take_fd(self) -> tuple[str, str]:
        """fd-level (stdout, stderr) kept apart while ``separate_fds`` was set; clears them."""

def fd_write_router(original: Callable[[int, Any], int], /) -> Callable[[int, Any], int]:
    """A stand-in for ``os.write`` bound to ``original`` (the real one): a write to fd 1 or 2
    from a thread whose current capture is open and routes fds goes into that capture (its
    ``take()`` buffers, or ``take_fd()``'s while ``separate_fds`` is set) and returns the length;
    with ``tee`` set it also reaches the fd. Any other call is passed to ``original`` unchanged
    (its errors included)."""

def set_thread_capture(capture: Capture | None, /) -> Capture | None:
    """Make ``capture`` the calling thread's current capture (None: clear); returns the previous
    one. Holds a strong reference while set: clear it before the thread ends."""

def get_thread_capture() -> Capture | None:
    """The calling thread's current capture."""
@final
class Dispatcher:
    """Stand-in for ``sys.stdout``/``sys.stderr``: ``write`` goes to the calling thread's open
    current :class:`Capture` (``stream`` 0: its stdout buffer, 1: its stderr buffer), otherwise
    to ``fallback``. Registered as an ``io.TextIOBase``. Attributes that depend on capturing
    (``fileno``, ``isatty``, ``encoding``, ``errors``) answer per calling thread."""

    fallback: Any
    """Where writes go when the calling thread does not capture (swappable)."""

    def __init__(self, fallback: Any, *, stream: int = 0, name: str | None = None) -> None:
        """``name`` defaults to ``"<stdout>"``/``"<stderr>"``."""
    @property
    def stream(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def mode(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    @property
    def newlines(self) -> None: ...
    @property
    def encoding(self) -> str:
        """ "utf-8" while the calling thread captures, else the fallback's (or "utf-8")."""
    @property
    def errors(self) -> str:
        """ "replace" while the calling thread captures, else the fallback's (or "replace")."""
    @property
    def line_buffering(self) -> bool: ...
    @property
    def write_through(self) -> bool: ...
    @property
    def buffer(self) -> DispatcherBuffer: ...
    def write(self, s: str, /) -> int: ...
    def writelines(self, lines: Iterable[str], /) -> None: ...
    def flush(self) -> None: ...
    def fileno(self) -> int:
        """io.UnsupportedOperation while the calling thread captures, else the fallback's."""
    def isatty(self) -> bool: ...
    def readable(self) -> bool: ...
    def seekable(self) -> bool: ...
    def writable(self) -> bool: ...
    def reconfigure(self, **kwargs: Any) -> None:
        """Ignored while the calling thread captures, else forwarded to the fallback."""
    def detach(self) -> Any:
        """Always raises io.UnsupportedOperation."""
    def close(self) -> None:
        """No-op: the dispatcher stays installed for objects that keep a reference."""
    def __enter__(self) -> Self: ...
    def __exit__(self, *args: object) -> None: ...

@final
class DispatcherBuffer:
    """``Dispatcher.buffer``: raw bytes go to the same per-stream capture buffer as text (order
    preserved), or to ``fallback.buffer`` when not capturing."""

    @property
    def name(self) -> str: ...
    @property
    def mode(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def write(self, b: bytes | bytearray | memoryview, /) -> int: ...
    def flush(self) -> None: ...
    def fileno(self) -> int: ...
    def isatty(self) -> bool: ...
    def readable(self) -> bool: ...
    def seekable(self) -> bool: ...
    def writable(self) -> bool: ...

def install_crash_handler(fd: int = 2, /) -> None:
    """On SIGSEGV, SIGBUS, SIGFPE, SIGABRT or SIGILL, write to ``fd`` (async-signal-safe)::

        pytest-threadpool: fatal signal SIGSEGV (11); tests running at that moment:
          threadpool-worker-3: tests/test_x.py::test_crash
          main thread: <label>

    then restore and run the previous handler (faulthandler's traceback follows) so the process
    still dies from the signal. Idempotent."""

def uninstall_crash_handler() -> None:
    """Restore the previous handlers (where ours is still installed)."""

def set_crash_label(label: str | None, /) -> None:
    """Label reported for the calling thread on a crash (None: idle). Workers set theirs to the
    running task's label automatically. Labels are truncated to 255 bytes."""

def set_crash_preamble(data: bytes, /) -> None:
    """Bytes (at most 32) written before a crash report (b'': none)."""

def crash_labels() -> list[tuple[str, str]]:
    """``(thread name, label)`` of every busy slot, as the crash handler would print them."""

CRASH_SLOTS: Final[int]

def prefixed_suffixes(root: str | bytes | os.PathLike[str], prefix: str, /) -> list[str] | None:
    """The remainders of the names in directory ``root`` that start with ``prefix`` (ASCII
    case-insensitively), as pytest's ``find_suffixes(root, prefix)`` yields them; scanned with
    ``readdir`` while detached. ``None`` when ``prefix`` or an entry name is not ASCII (the
    caller then uses pytest's scan). Raises ``OSError`` if the directory cannot be read."""
