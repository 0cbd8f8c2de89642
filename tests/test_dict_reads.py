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


def test_pinned_values_are_held_once_per_thread():
    from pytest_threadpool import dict_reads

    first = {"a": object()}
    second = {"b": object()}
    seen: list[list[object] | None] = []

    def worker() -> None:
        dict_reads.pin_values_for_this_thread([first])
        dict_reads.pin_values_for_this_thread([second])  # already pinned: no effect
        seen.append(dict_reads._pins.values)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [[first["a"]]]
    assert dict_reads._pins.values is None  # the calling thread pinned nothing
