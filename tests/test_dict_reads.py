"""dict_reads.lookup: dict.get's behaviour, without dict.get (see the module docstring)."""

from __future__ import annotations

import threading

from pytest_threadpool.dict_reads import lookup


class Missing(dict):
    def __missing__(self, key):
        raise KeyError(key)


def test_lookup_returns_the_value_or_the_default():
    data = {"a": 1, "none": None}
    assert lookup(data, "a") == 1
    assert lookup(data, "none", "default") is None
    assert lookup(data, "b") is None
    assert lookup(data, "b", ("", "")) == ("", "")
    assert lookup(Missing(), "x", 7) == 7


def test_lookup_reads_values_another_thread_stored():
    data: dict[str, tuple[str, str]] = {}

    def fill() -> None:
        for when in ("setup", "call", "teardown"):
            data[when] = (f"out {when}", "")

    writer = threading.Thread(target=fill)
    writer.start()
    writer.join()
    assert [lookup(data, w) for w in ("setup", "call", "teardown", "other")] == [
        ("out setup", ""),
        ("out call", ""),
        ("out teardown", ""),
        None,
    ]


def test_values_are_pinned_once_by_the_first_thread_that_asks():
    from pytest_threadpool.dict_reads import SharedValuePins

    first = {"a": object()}
    second = {"b": object(), "c": object()}
    pins = SharedValuePins([first, second])
    assert pins.values is None  # nothing before a worker asks
    lists: list[list[object] | None] = []

    def worker() -> None:
        pins.pin_from_this_thread()
        pins.pin_from_this_thread()  # already pinned: no effect
        lists.append(pins.values)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert pins.values == [first["a"], second["b"], second["c"]]
    assert all(values is pins.values for values in lists)  # one list, shared by all workers


def test_pinning_while_another_thread_imports():
    """The values are taken under the dict's own lock: a concurrent writer cannot make the
    copy fail with "dictionary changed size during iteration"."""
    from pytest_threadpool.dict_reads import SharedValuePins

    data = {i: object() for i in range(2000)}
    done = threading.Event()

    def writer() -> None:
        key = len(data)
        while not done.is_set():
            data[key] = object()
            data.pop(key - 2000, None)
            key += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(300):
            pins = SharedValuePins([data])
            pins.pin_from_this_thread()
            assert pins.values is not None and len(pins.values) >= 1000
    finally:
        done.set()
        thread.join()
