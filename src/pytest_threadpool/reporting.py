"""Reports of pool-run tests, logged through pytest's normal hooks (on the reporting lane or the
main thread)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pytest_threadpool.dict_reads import lookup
from pytest_threadpool.item_run import ItemRun
from pytest_threadpool.pytest_compat import terminal_writer


class Reporter:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.capturing = config.getoption("capture", "fd") != "no"
        self.terminal = config.pluginmanager.get_plugin("terminalreporter")
        self._report_hook = config.hook.pytest_threadpool_report

    def emit(self, run: ItemRun, before_teardown: Callable[[ItemRun], None] | None = None) -> None:
        """logstart, each phase's report, logfinish, then the test's warnings.
        ``before_teardown`` runs right before the teardown report is logged (after the call
        report, whose failure may stop the session), and may replace that report."""
        item = run.item
        ihook = item.ihook
        # Our hook, only when something implements it (checked per test: a plugin may register
        # mid-session): a call with no implementations returns None, as "not handled" does,
        # and pluggy's call overhead is most of what the main thread spends per report.
        report_hook = self._report_hook if self._report_hook.get_hookimpls() else None
        nodeid, location = item.nodeid, item.location
        ihook.pytest_runtest_logstart(nodeid=nodeid, location=location)
        for when, text in run.live_logs:
            self._print_live_log(when, text)
        live_output: list[str] = []
        inner = run.inner_reports
        for index in range(len(run.reports)):
            if before_teardown is not None and run.reports[index].when == "teardown":
                before_teardown(run)
            report = run.reports[index]
            if inner:  # subtests' reports, made during this phase: before its own report
                inner = _log_inner(ihook, inner, report.when)
            out, err = lookup(run.outputs, report.when, ("", ""))
            handled = report_hook is not None and report_hook(
                item=item, report=report, captured_out=out, captured_err=err
            )
            if handled:
                report.sections = [s for s in report.sections if not _is_output_section(s[0])]
            elif not self.capturing:
                live_output.extend(text for text in (out, err) if text)
            if live_output and report is run.reports[-1]:
                self.print_block("".join(live_output))
            ihook.pytest_runtest_logreport(report=report)
        if inner:  # made in a phase that has no report (the protocol was cut short)
            _log_inner(ihook, inner, None)
        ihook.pytest_runtest_logfinish(nodeid=nodeid, location=location)
        for message in run.warnings:
            ihook.pytest_warning_recorded.call_historic(
                kwargs=dict(warning_message=message, nodeid=nodeid, when="runtest", location=None)
            )

    def _print_live_log(self, when: str, text: str) -> None:
        terminal = self.terminal
        if terminal is None:
            return
        terminal.ensure_newline()
        terminal.write_sep("-", f"live log {when}", bold=True)
        terminal_writer(terminal).write(text if text.endswith("\n") else text + "\n")
        terminal.currentfspath = None

    def print_block(self, text: str) -> None:
        """With -s: a test's whole output, on lines of its own, before its last result."""
        terminal = self.terminal
        if terminal is None or not text:
            return
        terminal.ensure_newline()
        writer = terminal_writer(terminal)
        writer.write(text if text.endswith("\n") else text + "\n")
        writer.flush()
        terminal.currentfspath = None  # the progress line starts afresh after the block


def _log_inner(ihook: Any, inner: list[tuple[str, Any]], phase: str | None) -> list:
    """Log the reports made in ``phase`` (all of them for None), in the order they were made;
    returns the others."""
    rest = []
    for made_in, report in inner:
        if phase is None or made_in == phase:
            ihook.pytest_runtest_logreport(report=report)
        else:
            rest.append((made_in, report))
    return rest


def _is_output_section(title: str) -> bool:
    return title.startswith(("Captured stdout ", "Captured stderr "))
