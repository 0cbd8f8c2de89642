"""The one door to pytest's private internals.

Every private pytest name the plugin touches is read here, by feature (is the module, class or
attribute there?), never by version number. The rest of the plugin imports these names instead
of reaching into ``_pytest`` itself, so a change in pytest has one place to be handled.

``missing()`` lists what a threaded run needs and this pytest lacks; the plugin then prints one
line naming it and runs the session sequentially, rather than failing inside the run.

Checked against pytest 8.4.2, 9.0.3, 9.1.1 and 9.2.0: the names below exist in all of them
except where a comment says otherwise.
"""

from __future__ import annotations

import importlib
from typing import Any

_ABSENT: Any = object()


def _resolve(path: str) -> Any:
    """``"package.module:Attr.attr"`` -> the object, or ``_ABSENT``."""
    module_name, _, attributes = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError:
        return _ABSENT
    for name in attributes.split(".") if attributes else ():
        obj = getattr(obj, name, _ABSENT)
        if obj is _ABSENT:
            break
    return obj


# What a threaded run cannot do without (attributes read from instances are listed where their
# class defines them; instance fields set in ``__init__`` are checked on first use instead).
REQUIRED = (
    "_pytest.runner:SetupState.setup",
    "_pytest.runner:SetupState.addfinalizer",
    "_pytest.runner:SetupState.teardown_exact",
    "_pytest.runner:runtestprotocol",
    "_pytest.runner:CallInfo",
    "_pytest.runner:_update_current_test_var",
    "_pytest.fixtures:FixtureDef.execute",
    "_pytest.fixtures:FixtureDef.finish",
    "_pytest.scope:Scope.Function",
    "_pytest.outcomes:TEST_OUTCOME",
    "_pytest.logging:LogCaptureFixture.set_level",
    "_pytest.logging:LogCaptureFixture.at_level",
    "_pytest.logging:LogCaptureFixture._finalize",
    "_pytest.logging:LogCaptureHandler",
    "_pytest.logging:LoggingPlugin._runtest_for",
    "_pytest.logging:LoggingPlugin._log_cli_enabled",
    "_pytest.logging:caplog_handler_key",
    "_pytest.logging:caplog_records_key",
    "_pytest.capture:CaptureManager.item_capture",
    "_pytest.capture:CaptureManager.suspend_global_capture",
    "_pytest.capture:CaptureManager.resume_global_capture",
    "_pytest.capture:CaptureResult",
    "_pytest.threadexception:thread_exceptions",
    "_pytest.threadexception:thread_exception_hook",
    "_pytest.unraisableexception:unraisable_exceptions",
    "_pytest.unraisableexception:unraisable_hook",
    "_pytest.warnings:catch_warnings_for_item",
    "_pytest.pathlib:find_suffixes",
    "_pytest.tmpdir:TempPathFactory.getbasetemp",
    "_pytest.assertion.util:_reprcompare",
    "_pytest.assertion.util:_assertion_pass",
    "_pytest.assertion.util:_config",
)


def missing() -> list[str]:
    """The features of ``REQUIRED`` this pytest lacks (probed now, not at import)."""
    return [path for path in REQUIRED if _resolve(path) is _ABSENT]


def _get(path: str) -> Any:
    value = _resolve(path)
    return None if value is _ABSENT else value


# -- setup state, protocol, reports -----------------------------------------------------------

SetupState: Any = _get("_pytest.runner:SetupState")
runtestprotocol: Any = _get("_pytest.runner:runtestprotocol")
CallInfo: Any = _get("_pytest.runner:CallInfo")
TEST_OUTCOME: tuple[type[BaseException], ...] = _get("_pytest.outcomes:TEST_OUTCOME") or (
    Exception,
)
Scope: Any = _get("_pytest.scope:Scope")
FUNCTION_SCOPE: Any = getattr(Scope, "Function", None)


def setupstate(session: Any) -> Any:
    return session._setupstate


def set_setupstate(session: Any, state: Any) -> None:
    session._setupstate = state


def update_current_test_module() -> Any:
    """The module whose ``_update_current_test_var`` pytest's runner calls for every phase."""
    return importlib.import_module("_pytest.runner")


def report_sections(item: Any) -> list[tuple[str, str, str]]:
    return item._report_sections


def set_report_sections(item: Any, sections: list[tuple[str, str, str]]) -> None:
    item._report_sections = sections


def option_dest_map(config: Any) -> dict[str, str]:
    """``Config._opt2dest``, read by ``getoption`` for every call (see dict_reads)."""
    return getattr(config, "_opt2dest", {})


# -- fixtures ---------------------------------------------------------------------------------

FixtureDef: Any = _get("_pytest.fixtures:FixtureDef")
# pytest >= 9.0 gives the ``request`` fixture a FixtureDef subclass, made anew per request;
# 8.4 uses a PseudoFixtureDef that is not a FixtureDef (so nothing needs excluding there).
RequestFixtureDef: Any = _get("_pytest.fixtures:RequestFixtureDef")
FIXTUREDEF_SCOPE_FIELD = "_scope"  # FixtureDef's scope (a Scope), an instance field
FIXTUREDEF_FINALIZERS_FIELD = "_finalizers"


def fixturedef_scope(fixturedef: Any) -> Any:
    return fixturedef._scope


def fixture_info(item: Any) -> Any:
    """The item's FuncFixtureInfo (``name2fixturedefs``), or None for non-Python items."""
    return getattr(item, "_fixtureinfo", None)


def param_scopes(callspec: Any) -> dict[str, Any]:
    """Argument name -> Scope of ``parametrize(..., scope=...)`` arguments."""
    return callspec._arg2scope


def item_request(item: Any) -> Any:
    return getattr(item, "_request", None)


def renew_item_request(item: Any) -> None:
    """A fresh fixture request for ``item`` (as pytest makes for a re-run), if it has one."""
    init = getattr(item, "_initrequest", None)
    if init is not None:
        init()


# -- logging, capture, terminal ---------------------------------------------------------------

LogCaptureFixture: Any = _get("_pytest.logging:LogCaptureFixture")
LogCaptureHandler: Any = _get("_pytest.logging:LogCaptureHandler")
caplog_handler_key: Any = _get("_pytest.logging:caplog_handler_key")
caplog_records_key: Any = _get("_pytest.logging:caplog_records_key")
CaptureResult: Any = _get("_pytest.capture:CaptureResult")


def caplog_item(fixture: Any) -> Any:
    return fixture._item


def log_cli_enabled(logging_plugin: Any) -> bool:
    return bool(logging_plugin._log_cli_enabled())


def global_capture(capman: Any) -> Any:
    return getattr(capman, "_global_capturing", None)


def capture_fixture(capman: Any) -> Any:
    """The capfd/capsys fixture object the CaptureManager activates around each phase."""
    return getattr(capman, "_capture_fixture", None)


def terminal_writer(terminal: Any) -> Any:
    """The TerminalReporter's TerminalWriter (None if there is no reporter)."""
    return getattr(terminal, "_tw", None)


def writer_file(writer: Any) -> Any:
    return writer._file


def set_writer_file(writer: Any, file: Any) -> None:
    writer._file = file


def writer_terminal_width(writer: Any) -> int | None:
    """A width set on the TerminalWriter (its ``fullwidth`` setter), None when it asks the
    terminal each time."""
    return getattr(writer, "_terminal_width", None)


def set_writer_terminal_width(writer: Any, columns: int | None) -> None:
    writer._terminal_width = columns


# -- unhandled exceptions, warnings, assertion rewriting, tmp_path -----------------------------

threadexception: Any = _get("_pytest.threadexception")
unraisableexception: Any = _get("_pytest.unraisableexception")
pytest_warnings: Any = _get("_pytest.warnings")
assertion_util: Any = _get("_pytest.assertion.util")
pytest_pathlib: Any = _get("_pytest.pathlib")
TempPathFactory: Any = _get("_pytest.tmpdir:TempPathFactory")
# pytest >= 9.2 filters hidden frames out of an exception group's traceback too; older ones
# index the filtered traceback's first entry (an IndexError when every frame is hidden).
GROUP_TRACEBACKS_FILTERED: bool = _get("_pytest._code.code:_filter_tracebackexception") is not None


def basetemp(factory: Any) -> Any:
    return factory._basetemp


# pytest's clock: ``time`` and ``perf_counter`` bound at its import (every pytest we support).
pytest_timing: Any = _get("_pytest.timing")
