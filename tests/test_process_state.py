"""process_state: the readings taken around each test, shared while nothing changes."""

from __future__ import annotations

import os

from pytest_threadpool.process_state import StateWatch, snapshot


def test_unchanged_state_gives_one_shared_reading():
    """Runs in flight hold their readings: equal readings are one object (memory), and the
    comparison of a run's two readings takes the identity fast path."""
    first = snapshot()
    assert snapshot() is first
    assert snapshot() is first


def test_a_change_gives_a_new_reading_and_is_reported(monkeypatch):
    before = snapshot()
    monkeypatch.setenv("PROCESS_STATE_TEST_VARIABLE", "1")
    after = snapshot()
    assert after is not before
    assert snapshot() is after  # the new state is shared in turn
    watch = StateWatch()
    watch.observe("t::changer", before, after)
    watch.observe("t::other", before, after)  # the same change seen by a second test
    watch.observe("t::quiet", after, snapshot())  # nothing changed during this one
    assert [c.describe() for c in watch.changes] == [
        "os.environ: 1 added (PROCESS_STATE_TEST_VARIABLE), during t::changer "
        "(or a test running alongside it: t::other)"
    ]
    monkeypatch.delenv("PROCESS_STATE_TEST_VARIABLE")
    restored = snapshot()
    assert restored is not after
    assert restored == before  # equal values again (a new reading: the latest was `after`)


def test_pytests_own_variable_is_not_a_change(monkeypatch):
    before = snapshot()
    monkeypatch.setitem(os.environ, "PYTEST_CURRENT_TEST", "x.py::t (call)")
    assert snapshot() is before
