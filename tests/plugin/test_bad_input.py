"""Every user mistake in options, ini values and marker arguments: a one-line error naming the
fix, never a traceback from our internals."""

from __future__ import annotations

import pytest

CASES = [
    # (command-line args, ini text, test source, expected error line pattern)
    (
        ["--threadpool", "many"],
        "",
        "",
        "*--threadpool: invalid value 'many': expected integer or 'auto'*",
    ),
    (
        ["--threadpool", "-3"],
        "",
        "",
        "*--threadpool: invalid value '-3': a thread count cannot be negative*",
    ),
    (
        ["--threadpool-timeout", "soon"],
        "",
        "",
        "*--threadpool-timeout: invalid value 'soon': use a number of seconds*",
    ),
    (
        ["--threadpool-timeout", "-1"],
        "",
        "",
        "*--threadpool-timeout: invalid value '-1': the timeout must be 0*",
    ),
    (
        ["--threadpool-scope", "everything"],
        "",
        "",
        "*--threadpool-scope: invalid value 'everything': use one of children, parameters, all, "
        "none*",
    ),
    (
        [],
        "threadpool = lots",
        "",
        "ERROR: ini option threadpool (--threadpool): invalid value 'lots'*",
    ),
    (
        [],
        "threadpool_scope = most",
        "",
        "ERROR: ini option threadpool_scope (--threadpool-scope): invalid value 'most'*",
    ),
    (
        [],
        "threadpool_timeout = never",
        "",
        "ERROR: ini option threadpool_timeout (--threadpool-timeout): invalid value 'never'*",
    ),
    (
        ["--threadpool", "2"],
        "",
        "import pytest\n@pytest.mark.parallelizable('sometimes')\ndef test_x(): pass\n",
        "ERROR: *test_x: invalid parallelizable scope 'sometimes'; use one of: children, "
        "parameters, all",
    ),
    (
        ["--threadpool", "2"],
        "",
        "import pytest\n@pytest.mark.parallelizable('children', 'all')\ndef test_x(): pass\n",
        "ERROR: *test_x: parallelizable takes one scope argument*",
    ),
    (
        ["--threadpool", "2"],
        "",
        "import pytest\n@pytest.mark.parallelizable(scop='all')\ndef test_x(): pass\n",
        "ERROR: *test_x: parallelizable takes one scope argument*",
    ),
    (
        ["--threadpool", "2"],
        "",
        "import pytest\n@pytest.mark.parallelizable(3)\ndef test_x(): pass\n",
        "ERROR: *test_x: invalid parallelizable scope 3; use one of*",
    ),
    (
        ["--threadpool", "2"],
        "",
        "import pytest\npytestmark = pytest.mark.parallelizable('children')\n"
        "@pytest.mark.timeout('x')\ndef test_x(): pass\ndef test_y(): pass\n",
        "ERROR: *test_x: invalid timeout 'x'; use @pytest.mark.timeout(SECONDS)*",
    ),
]


CASES += [
    (
        ["--threadpool", "2", "-n", "2", "--threadpool-output", "live"],
        "",
        "",
        "ERROR: --threadpool-output live cannot be shown under pytest-xdist (-n 2)*classic*",
    ),
    (
        ["-n", "2"],
        "threadpool = 2\nthreadpool_output = live",
        "",
        "ERROR: ini threadpool_output = live cannot be shown under pytest-xdist (-n 2)*",
    ),
]


@pytest.mark.parametrize(("args", "ini", "source", "pattern"), CASES)
def test_user_mistake_gives_one_line_error(
    pytester: pytest.Pytester, args: list[str], ini: str, source: str, pattern: str
):
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(test_input=source or "def test_x(): pass\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([pattern])
    matching = [line for line in result.errlines if line.startswith("ERROR:") or ": error:" in line]
    assert len([line for line in matching if "usage:" not in line]) == 1, result.errlines
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
