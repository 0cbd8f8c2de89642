"""Per-item state carried from the main thread to the worker that runs the item and back."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_threadpool import _engine


@dataclass(eq=False, slots=True)
class ItemRun:
    item: pytest.Item
    nextitem: pytest.Item | None
    index: int  # position in session.items
    closes: list[pytest.Node]  # collectors torn down after this item (innermost first)
    inline: bool = False  # runs on the main thread with nothing else running
    capture_enabled: bool = True  # route its output into ``capture`` (else pass it through)
    alone_reason: str | None = None
    nodeid: str = ""  # the item's, read once (a property on pytest 9)
    file: str = ""  # the file its progress is reported under (ThreadedSession._file_of)
    run_time: float | None = None  # seconds it ran (pool-style runs; None: not recorded)
    capture: _engine.Capture = field(default_factory=_engine.Capture)
    chain_key: object = None  # variants sharing it run one after another (see Planner)
    reports: list[pytest.TestReport] = field(default_factory=list)
    # (when, stdout, stderr) per phase, as taken from the capture
    outputs: dict[str, tuple[str, str]] = field(default_factory=dict)
    warnings: list[warnings.WarningMessage] = field(default_factory=list)
    warning_keys: set[tuple] = field(default_factory=set)  # shown-once bookkeeping
    # The thread-aware capsys-like fixture the test requested, if any.
    capsys: Any = None
    # Logging: handlers receiving this test's records in the current phase, its caplog level
    # overrides (logger name -> level) and its live-log text per phase (--log-cli-level).
    log_handlers: list[Any] = field(default_factory=list)
    log_levels: dict[str, int] = field(default_factory=dict)
    live_logs: list[tuple[str, str]] = field(default_factory=list)
    # Unhandled exceptions of threads it started and unraisable exceptions it caused.
    thread_exceptions: list[Any] = field(default_factory=list)
    unraisable_exceptions: list[Any] = field(default_factory=list)
    protocol_done: bool = False  # later records go to pytest's shared queue
    # Teardown errors of its own (function-scope) finalizers, the list its ItemSetupState
    # fills. The state itself is not kept: its callback refers back to this run, and that
    # cycle would leave every finished run to the cyclic GC.
    item_errors: list[BaseException] = field(default_factory=list)
    cpu_time: float | None = None  # seconds of its thread's CPU (for the GIL-build scheduler)
    # Process-wide state when it started and ended (process_state.snapshot()).
    state_before: tuple[Any, ...] | None = None
    state_after: tuple[Any, ...] | None = None
    phase: str = ""  # the protocol phase its thread is in ("setup", "call", "teardown")
    # Reports its own code logged while it ran (subtests: pytest's subtests fixture, unittest's
    # subTest), with the phase they were made in; logged with its reports (reporting.py).
    inner_reports: list[tuple[str, Any]] = field(default_factory=list)
    ready_at: float = 0.0  # when it finished and waited to be reported (engine clock)
    started_at: float = 0.0  # when its worker started it (engine clock; 0: not yet)
    slow_at: float = 0.0  # running time of its next SLOW line (0: the first threshold)
