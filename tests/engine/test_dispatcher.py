"""Dispatcher / Capture: per-thread routing of sys.stdout / sys.stderr writes."""

from __future__ import annotations

import gc
import io
import os
import tempfile
import threading
import weakref

import pytest

from pytest_threadpool._engine import (
    Capture,
    Dispatcher,
    fd_write_router,
    get_thread_capture,
    set_thread_capture,
)


@pytest.fixture
def capturing():
    """Set a capture for the calling thread for the duration of a `with` block."""

    class _Ctx:
        def __init__(self, capture):
            self.capture = capture

        def __enter__(self):
            self.prev = set_thread_capture(self.capture)
            return self.capture

        def __exit__(self, *exc):
            assert set_thread_capture(self.prev) is self.capture

    return lambda capture=None: _Ctx(capture or Capture())


def _write_on_threads(n_threads: int, write) -> list[Capture]:
    """Run ``write(i)`` on ``n_threads`` threads at once (from a barrier), thread ``i`` with a
    capture of its own; returns the captures."""
    barrier = threading.Barrier(n_threads)
    captures = [Capture() for _ in range(n_threads)]

    def writer(i):
        set_thread_capture(captures[i])
        try:
            barrier.wait(30)
            write(i)
        finally:
            set_thread_capture(None)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return captures


def test_fifty_threads_each_get_exactly_their_own_output():
    out = Dispatcher(io.StringIO(), stream=0, name="<stdout>")
    err = Dispatcher(io.StringIO(), stream=1, name="<stderr>")
    n_threads, n_lines = 50, 200

    def write(i):
        for j in range(n_lines):
            out.write(f"t{i}-{j} ")
            out.buffer.write(f"b{j}\n".encode())
            err.write(f"e{i}-{j}\n")

    captures = _write_on_threads(n_threads, write)
    for i, cap in enumerate(captures):
        stdout, stderr = cap.take()
        assert stdout == "".join(f"t{i}-{j} b{j}\n" for j in range(n_lines))
        assert stderr == "".join(f"e{i}-{j}\n" for j in range(n_lines))
    assert out.fallback.getvalue() == "" and err.fallback.getvalue() == ""


def test_threads_sharing_one_capture_lose_nothing():
    d = Dispatcher(io.StringIO())
    cap = Capture()
    n_threads, n_lines = 8, 2000
    barrier = threading.Barrier(n_threads)

    def writer(i):
        set_thread_capture(cap)
        try:
            barrier.wait(30)
            for j in range(n_lines):
                d.write(f"{i}:{j}\n")
        finally:
            set_thread_capture(None)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    lines = cap.take()[0].splitlines()
    assert len(lines) == n_threads * n_lines
    for i in range(n_threads):
        mine = [int(line.split(":")[1]) for line in lines if line.startswith(f"{i}:")]
        assert mine == list(range(n_lines))


def test_text_and_buffer_bytes_keep_their_order(capturing):
    d = Dispatcher(io.StringIO())
    with capturing() as cap:
        assert d.write("a") == 1
        assert d.buffer.write(b"b") == 1
        assert d.write("c") == 1
        assert d.buffer.write(memoryview(b"\xc3\xa9")) == 2
        d.buffer.write(bytearray(b"!"))
    assert cap.take() == ("abcé!", "")


def test_pass_through_without_capture():
    fallback = io.StringIO()
    d = Dispatcher(fallback)
    assert get_thread_capture() is None
    assert d.write("hello ") == 6
    d.writelines(["a", "b\n"])
    d.buffer.write(b"raw\n")  # StringIO has no .buffer: decoded text is written instead
    print("printed", 1, sep="-", file=d)
    assert fallback.getvalue() == "hello ab\nraw\nprinted-1\n"


def test_buffer_pass_through_uses_fallback_buffer():
    raw = io.BytesIO()
    fallback = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)
    d = Dispatcher(fallback)
    d.write("x")
    d.buffer.write(b"y")
    d.buffer.flush()
    assert raw.getvalue() == b"xy"


def test_write_requires_str():
    d = Dispatcher(io.StringIO())
    with pytest.raises(TypeError, match="write\\(\\) argument must be str, not bytes"):
        d.write(b"x")
    with pytest.raises(TypeError, match="bytes-like object is required"):
        d.buffer.write("x")
    with pytest.raises(TypeError):
        d.writelines([1])


def test_is_a_text_io_and_has_stream_attributes():
    fallback = io.StringIO()
    d = Dispatcher(fallback, stream=1, name="<stderr>")
    assert isinstance(d, io.TextIOBase) and isinstance(d, io.IOBase)
    assert isinstance(d.buffer, io.BufferedIOBase)
    assert d.name == "<stderr>" and d.stream == 1
    assert d.mode == "w" and d.buffer.mode == "wb"
    assert d.closed is False and d.newlines is None
    assert d.readable() is False and d.seekable() is False and d.writable() is True
    assert d.encoding == "utf-8"
    assert d.errors in ("replace", "strict")
    assert Dispatcher(io.StringIO()).name == "<stdout>"
    with pytest.raises(ValueError):
        Dispatcher(fallback, stream=2)
    d.close()
    assert d.write("still works") == 11
    with d as same:
        assert same is d
    with pytest.raises(io.UnsupportedOperation):
        d.detach()


def test_weak_references_like_the_streams_it_replaces():
    """sys.stdout and its buffer take weak references (structlog keeps a WeakKeyDictionary of
    write locks keyed by the stream); they die with the dispatcher."""
    d = Dispatcher(io.StringIO())
    locks = weakref.WeakKeyDictionary()
    locks[d] = "text"
    locks[d.buffer] = "binary"
    assert locks[d] == "text" and locks[d.buffer] == "binary"
    text_ref, buffer_ref = weakref.ref(d), weakref.ref(d.buffer)
    assert text_ref() is d and buffer_ref() is d.buffer
    del d
    gc.collect()  # the dispatcher and its buffer view refer to each other
    assert text_ref() is None and buffer_ref() is None and len(locks) == 0


def test_fileno_isatty_encoding_depend_on_capturing(capturing):
    with tempfile.TemporaryFile("w+", encoding="latin-1") as f:
        d = Dispatcher(f)
        assert d.fileno() == f.fileno()
        assert d.encoding == "latin-1"
        assert d.isatty() is False
        with capturing():
            with pytest.raises(io.UnsupportedOperation):
                d.fileno()
            with pytest.raises(io.UnsupportedOperation):
                d.buffer.fileno()
            assert d.encoding == "utf-8" and d.errors == "replace"
            assert d.isatty() is False
        assert d.fileno() == f.fileno()


def test_isatty_forwarded_when_not_capturing(capturing):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    d = Dispatcher(Tty())
    assert d.isatty() is True
    with capturing():
        assert d.isatty() is False


def test_print_goes_to_the_capture(capturing):
    d = Dispatcher(io.StringIO())
    with capturing() as cap:
        print("hello", "world", file=d)
        print("é", end="", file=d, flush=True)
    assert cap.take() == ("hello world\né", "")


def test_stderr_stream_fills_the_stderr_buffer(capturing):
    err = Dispatcher(io.StringIO(), stream=1)
    with capturing() as cap:
        err.write("oops\n")
        err.buffer.write(b"!")
    assert cap.take() == ("", "oops\n!")


def test_tee_records_and_passes_through(capturing):
    fallback = io.StringIO()
    d = Dispatcher(fallback)
    cap = Capture()
    cap.tee = True
    assert cap.tee is True
    with capturing(cap):
        d.write("both ")
        d.buffer.write(b"ways")
    assert cap.take() == ("both ways", "")
    assert fallback.getvalue() == "both ways"


def test_closed_capture_passes_through(capturing):
    fallback = io.StringIO()
    d = Dispatcher(fallback)
    with capturing() as cap:
        d.write("kept ")
        cap.close()
        assert cap.closed is True
        d.write("passed")
    assert cap.take() == ("kept ", "")
    assert fallback.getvalue() == "passed"


def test_take_and_peek(capturing):
    d = Dispatcher(io.StringIO())
    e = Dispatcher(io.StringIO(), stream=1)
    with capturing() as cap:
        d.write("one")
        e.write("err")
        assert cap.peek() == ("one", "err")
        assert cap.peek() == ("one", "err")
        assert cap.take() == ("one", "err")
        assert cap.take() == ("", "")
        d.write("two")
    assert cap.peek() == ("two", "")
    assert "stdout=3B" in repr(cap)


def test_invalid_utf8_bytes_are_replaced(capturing):
    d = Dispatcher(io.StringIO())
    with capturing() as cap:
        d.buffer.write(b"a\xffb")
        d.write("\ud800")  # lone surrogate
    assert cap.take()[0] == "a\ufffdb?"


def test_flush_and_reconfigure_forward_only_when_not_capturing(capturing):
    class Recorder(io.StringIO):
        flushes = 0
        reconfigured = None

        def flush(self):
            Recorder.flushes += 1

        def reconfigure(self, **kw):
            Recorder.reconfigured = kw

    d = Dispatcher(Recorder())
    with capturing():
        d.flush()
        d.reconfigure(encoding="ascii")
    assert Recorder.flushes == 0 and Recorder.reconfigured is None
    d.flush()
    d.reconfigure(line_buffering=True)
    assert Recorder.flushes == 1 and Recorder.reconfigured == {"line_buffering": True}


def test_fallback_is_swappable():
    first, second = io.StringIO(), io.StringIO()
    d = Dispatcher(first)
    d.write("1")
    assert d.fallback is first
    d.fallback = second
    d.write("2")
    d.fallback = None
    assert d.write("dropped") == 7
    assert (first.getvalue(), second.getvalue()) == ("1", "2")


def test_thread_capture_set_get_and_type_check():
    a, b = Capture(), Capture()
    assert set_thread_capture(a) is None
    assert get_thread_capture() is a
    assert set_thread_capture(b) is a
    assert set_thread_capture(None) is b
    assert get_thread_capture() is None
    with pytest.raises(TypeError):
        set_thread_capture("nope")
    with pytest.raises(TypeError):
        Capture(1)

    seen = []
    t = threading.Thread(target=lambda: seen.append(get_thread_capture()))
    set_thread_capture(a)
    try:
        t.start()
        t.join()
    finally:
        set_thread_capture(None)
    assert seen == [None]  # per thread


class _RecordingWrite:
    """Stands in for os.write: records what reached it, raises os.write's errors."""

    def __init__(self):
        self.calls = []

    def __call__(self, fd, data):
        data = bytes(memoryview(data))  # TypeError for what is not bytes-like, as os.write
        self.calls.append((fd, data))
        return len(data)


def test_fd_write_router_routes_fds_1_and_2_of_a_capturing_thread(capturing):
    original = _RecordingWrite()
    write = fd_write_router(original)
    # no capture: everything goes to the original
    assert write(1, b"plain\n") == 6
    with capturing() as cap:
        assert write(1, b"out ") == 4
        assert write(2, memoryview(b"err\n")) == 4
        assert write(1, bytearray(b"more\n")) == 5
        assert write(3, b"other fd") == 8  # not 1 or 2
        assert write(2**70, b"huge fd") == 7  # overflow: the original's business
        with pytest.raises(TypeError):
            write(1, "not bytes")
        with pytest.raises(TypeError):
            write(1)
    assert cap.take() == ("out more\n", "err\n")
    assert original.calls == [(1, b"plain\n"), (3, b"other fd"), (2**70, b"huge fd")]
    with pytest.raises(TypeError):
        fd_write_router(None)


def test_fd_write_router_honours_tee_route_fds_and_separate_fds(capturing):
    original = _RecordingWrite()
    write = fd_write_router(original)
    with capturing() as cap:
        cap.tee = True
        write(1, b"both\n")
        cap.tee = False
        cap.route_fds = False
        write(2, b"to the fd\n")
        cap.route_fds = True
        cap.separate_fds = True
        write(1, b"fd level\n")
        cap.separate_fds = False
        cap.close()
        write(1, b"closed\n")
    assert cap.take() == ("both\n", "")
    assert cap.take_fd() == ("fd level\n", "")
    assert original.calls == [(1, b"both\n"), (2, b"to the fd\n"), (1, b"closed\n")]


def test_fd_write_router_routes_only_while_the_fd_is_one_of_the_runs_files(capturing):
    """With ``owned``, a write to fd 1/2 is routed only while that fd refers to one of the
    owned files; a test that pointed fd 1 elsewhere (a dup2 of its own) writes there."""
    original = _RecordingWrite()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as runs, tempfile.TemporaryFile() as elsewhere:
        try:
            os.dup2(runs.fileno(), 1)
            os.dup2(elsewhere.fileno(), 2)
            write = fd_write_router(original, owned=[runs.fileno()])
            with capturing() as cap:
                assert write(1, b"routed\n") == 7
                assert write(2, b"fd 2 is elsewhere\n") == 18
                os.dup2(elsewhere.fileno(), 1)  # what click's CliRunner(capture="fd") does
                assert write(1, b"fd 1 is elsewhere\n") == 18
                os.dup2(runs.fileno(), 1)
                assert write(1, b"routed again\n") == 13
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        with pytest.raises(OSError):
            fd_write_router(original, [_closed_fd()])
        with pytest.raises(TypeError):
            fd_write_router(original, ["1"])
        with pytest.raises(TypeError):
            fd_write_router(original, 1)
    assert cap.take() == ("routed\nrouted again\n", "")
    assert original.calls == [(2, b"fd 2 is elsewhere\n"), (1, b"fd 1 is elsewhere\n")]


def _closed_fd() -> int:
    with tempfile.TemporaryFile() as file:
        return file.fileno()


def test_fd_write_router_survives_a_buffer_that_drops_the_capture():
    """Getting the data's buffer may run Python code (__buffer__) that replaces the thread's
    capture: the capture the write started with must stay valid until the write is done."""
    original = _RecordingWrite()
    write = fd_write_router(original)

    class Sneaky:
        def __buffer__(self, flags):
            set_thread_capture(None)  # drops the only reference to the capture
            return memoryview(b"sneaky\n")

        def __release_buffer__(self, view):
            view.release()

    set_thread_capture(Capture())
    try:
        assert write(1, Sneaky()) == 7
    finally:
        set_thread_capture(None)
    assert get_thread_capture() is None
    assert original.calls == []


def test_fd_write_router_threads_keep_their_own_fd_output():
    original = _RecordingWrite()
    write = fd_write_router(original)
    n_threads, n_lines = 16, 300

    def write_lines(i):
        for j in range(n_lines):
            write(1 + j % 2, f"{i}:{j}\n".encode())

    captures = _write_on_threads(n_threads, write_lines)
    for i, cap in enumerate(captures):
        out, err = cap.take()
        assert out == "".join(f"{i}:{j}\n" for j in range(0, n_lines, 2))
        assert err == "".join(f"{i}:{j}\n" for j in range(1, n_lines, 2))
    assert original.calls == []


def test_sys_stdout_replacement_end_to_end_with_pool_workers(run_py):
    proc = run_py(
        """
        import io, sys
        from pytest_threadpool._engine import Capture, Dispatcher, Pool, set_thread_capture
        real_out, real_err = sys.stdout, sys.stderr
        sys.stdout = Dispatcher(real_out, stream=0, name="<stdout>")
        sys.stderr = Dispatcher(real_err, stream=1, name="<stderr>")
        assert isinstance(sys.stdout, io.TextIOBase)

        def task(i):
            cap = Capture()
            set_thread_capture(cap)
            try:
                print(f"out {i}")
                print(f"err {i}", file=sys.stderr)
                sys.stdout.buffer.write(b"bytes\\n")
                sys.stdout.flush()
            finally:
                set_thread_capture(None)
            return cap.take()

        print("main before")
        with Pool(4) as pool:
            ids = [pool.submit(task, i) for i in range(40)]
            results = {}
            while len(results) < len(ids):
                r = pool.next_result(timeout=30)
                results[r.id] = r
        for n, tid in enumerate(ids):
            r = results[tid]
            assert r.exception is None, r.exception
            assert r.value == (f"out {n}\\nbytes\\n", f"err {n}\\n"), r.value
        print("main after")
        sys.stdout, sys.stderr = real_out, real_err
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "main before\nmain after\n"
    assert proc.stderr == ""
