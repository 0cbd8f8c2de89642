"""The package, its C engine and the plugin's registration."""

from __future__ import annotations

import subprocess
import sys
import sysconfig

import pytest

import pytest_threadpool
from pytest_threadpool import ParallelScope, _engine, not_parallelizable, parallelizable

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def test_engine_matches_interpreter_build():
    info = _engine.build_info()
    assert info["free_threaded"] is FREE_THREADED
    assert _engine.FREE_THREADED is FREE_THREADED
    assert info["c_standard"] >= 201112


def test_engine_import_keeps_gil_disabled_in_fresh_interpreter():
    code = (
        "import sys, warnings; warnings.simplefilter('error');"
        "import pytest_threadpool._engine;"
        "print(sys._is_gil_enabled())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(not FREE_THREADED)


def test_engine_uses_multi_phase_init():
    import importlib.util

    spec = importlib.util.find_spec("pytest_threadpool._engine")
    first = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(first)
    second = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(second)
    assert first is not second and first.__dict__ is not second.__dict__


def test_public_helpers():
    assert parallelizable.mark == pytest.mark.parallelizable.mark
    assert not_parallelizable.mark == pytest.mark.not_parallelizable.mark
    assert parallelizable("children").args == ("children",)
    assert [s.value for s in ParallelScope] == ["children", "parameters", "all"]
    assert ParallelScope.parse("Children") is ParallelScope.CHILDREN
    with pytest.raises(ValueError, match="children, parameters, all"):
        ParallelScope.parse("everything")
    assert set(pytest_threadpool.__all__) >= {
        "parallelizable",
        "not_parallelizable",
        "ParallelScope",
    }


def test_plugin_registers_option_and_markers(pytester: pytest.Pytester):
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--threadpool=N|auto*"])
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.parallelizable(scope)*",
            "@pytest.mark.not_parallelizable*",
            "@pytest.mark.parallel_only*",
        ]
    )


def test_markers_accepted_with_strict_markers(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import pytest
        from pytest_threadpool import parallelizable, not_parallelizable

        @parallelizable("children")
        class TestA:
            def test_one(self): pass

        @not_parallelizable
        def test_two(): pass

        @pytest.mark.parallel_only
        def test_three(): pass
        """
    )
    result = pytester.runpytest("--strict-markers")
    result.assert_outcomes(passed=2, skipped=1)


@pytest.mark.parametrize("value", ["foo", "1.5", "-2", ""])
def test_bad_threadpool_value_is_one_line_usage_error(pytester: pytest.Pytester, value: str):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(f"--threadpool={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if "error: argument --threadpool" in line]
    assert len(errors) == 1, result.errlines
    assert "'auto'" in errors[0]
    assert "Traceback" not in result.stderr.str()


def test_bad_ini_value_is_one_line_usage_error(pytester: pytest.Pytester):
    pytester.makeini("[pytest]\nthreadpool = lots\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: ini option threadpool (--threadpool): *'auto'*"])
    assert "Traceback" not in result.stderr.str()


def test_plugin_can_be_disabled(pytester: pytest.Pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("-p", "no:threadpool", "--threadpool", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unrecognized arguments: --threadpool*"])


PLUGIN_FOOTPRINT_CONFTEST = """
import sys

def pytest_sessionfinish(session):
    hooks = session.config.pluginmanager.hook.pytest_runtest_protocol.get_hookimpls()
    names = (getattr(impl.plugin, "__name__", "") for impl in hooks)
    ours = sorted(name for name in names if name.startswith("pytest_threadpool"))
    loaded = sorted(name for name in sys.modules if name.startswith("pytest_threadpool."))
    print(f"\\nOURS-PROTOCOL {ours}\\nOURS-LOADED {loaded}")
"""


@pytest.mark.parametrize("args", [[], ["--threadpool", "1"], ["--threadpool", "2"]])
def test_without_a_pool_no_protocol_hook_and_no_runner_modules(
    pytester: pytest.Pytester, args: list[str]
):
    """Without a pool the plugin stays out of every test's hook calls and start-up: no
    pytest_runtest_protocol of ours, and the execution machinery is never imported."""
    pytester.makeconftest(PLUGIN_FOOTPRINT_CONFTEST)
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=1)
    protocol = next(line for line in result.outlines if line.startswith("OURS-PROTOCOL"))
    loaded = next(line for line in result.outlines if line.startswith("OURS-LOADED"))
    if args == ["--threadpool", "2"]:
        assert "pytest_threadpool.execution" in protocol
        assert "pytest_threadpool.runner" in loaded
    else:
        assert protocol == "OURS-PROTOCOL []"
        for module in ("execution", "runner", "grouping", "item_run", "setupstate"):
            assert f"pytest_threadpool.{module}'" not in loaded
