"""Generated benchmark suites: every parameter lives in SUITES, at the top of this file.

Each suite is written to ``bench/.suites/<name>/`` (git-ignored) with its own ``pytest.ini`` so
the repository's pytest configuration does not apply. Tests only use the public markers
(``pytest.mark.parallelizable("children")`` as a module-level ``pytestmark``), so the same files
run under sequential pytest, pytest-xdist, our plugin and the PyPI ``pytest-threadpool``.
Files are rewritten only when their content changes, so bytecode caches stay warm.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SUITES: dict[str, dict[str, int | float]] = {
    # 400 tests of pure-Python arithmetic; 160k loop iterations take ~10-20 ms here.
    "cpu": {"modules": 8, "tests_per_module": 50, "loops": 160_000},
    # 4,000 empty tests: measures the per-test overhead of each runner.
    "trivial": {"modules": 20, "tests_per_module": 200},
    # 400 tests that sleep 20 ms (I/O stand-in; ours and the opponent get 64 threads here).
    "io": {"modules": 4, "tests_per_module": 100, "sleep_s": 0.02},
    # Function fixtures with yield teardown, plus tmp_path.
    "fixtures": {"modules": 8, "tests_per_module": 50},
    # Every test prints 200 lines (captured output).
    "prints": {"modules": 8, "tests_per_module": 50, "lines": 200},
    # One module: many short tests, then a few long ones at the end of collection order.
    "skewed": {"short_tests": 200, "short_loops": 20_000, "long_tests": 4, "long_loops": 5_000_000},
    # 40 modules x 10 tests: each module is its own parallel group.
    "many-groups": {"modules": 40, "tests_per_module": 10, "loops": 50_000},
    # An expensive session fixture (sleep plus a large list) used by every test.
    "shared-setup": {
        "modules": 4,
        "tests_per_module": 50,
        "setup_sleep_s": 0.5,
        "setup_items": 2_000_000,
        "loops": 50_000,
    },
}

SUITES_DIR = Path(__file__).resolve().parent / ".suites"

PYTEST_INI = """\
[pytest]
markers =
    parallelizable(scope): run tests under this node concurrently
    not_parallelizable: always run alone
    parallel_only: skip unless run with a thread pool
"""

MODULE_HEADER = """\
import time

import pytest

pytestmark = pytest.mark.parallelizable("children")
"""

WORK_FUNCTION = """

def work(n):
    total = 0
    for i in range(n):
        total += (i * i) % 7
    return total
"""


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    tests: int  # how many tests a correct run passes


def _tests(count: int, body: Callable[[int], str], args: str = "") -> str:
    """``count`` test functions; ``body(i)`` gives the (indented) body of test ``i``."""
    return "".join(f"\n\ndef test_{i:04d}({args}):\n{body(i)}" for i in range(count))


def _modules(p: dict, preamble: str, body: Callable[[int], str], args: str = "") -> dict[str, str]:
    per = int(p["tests_per_module"])
    return {
        f"test_m{m:02d}.py": MODULE_HEADER + preamble + _tests(per, body, args)
        for m in range(int(p["modules"]))
    }


def _cpu(p: dict) -> dict[str, str]:
    return _modules(p, WORK_FUNCTION, lambda i: f"    assert work({p['loops']}) >= 0\n")


def _trivial(p: dict) -> dict[str, str]:
    return _modules(p, "", lambda i: "    pass\n")


def _io(p: dict) -> dict[str, str]:
    return _modules(p, "", lambda i: f"    time.sleep({p['sleep_s']})\n")


FIXTURES_PREAMBLE = """

@pytest.fixture
def resource():
    state = {"open": True, "items": []}
    yield state
    assert state["open"]
    state["open"] = False


@pytest.fixture
def workdir(tmp_path):
    path = tmp_path / "work"
    path.mkdir()
    yield path
    for child in path.iterdir():
        child.unlink()
"""


def _fixtures(p: dict) -> dict[str, str]:
    def body(i: int) -> str:
        return (
            f'    target = workdir / "data-{i}.txt"\n'
            f'    target.write_text("{i}")\n'
            '    resource["items"].append(target.read_text())\n'
            f'    assert resource["items"] == ["{i}"]\n'
        )

    return _modules(p, FIXTURES_PREAMBLE, body, "resource, workdir")


def _prints(p: dict) -> dict[str, str]:
    def body(i: int) -> str:
        return f'    for n in range({p["lines"]}):\n        print(f"test {i} line {{n}}: output")\n'

    return _modules(p, "", body)


def _skewed(p: dict) -> dict[str, str]:
    short = _tests(int(p["short_tests"]), lambda i: f"    assert work({p['short_loops']}) >= 0\n")
    long = "".join(
        f"\n\ndef test_long_{i}():\n    assert work({p['long_loops']}) >= 0\n"
        for i in range(int(p["long_tests"]))
    )
    return {"test_skewed.py": MODULE_HEADER + WORK_FUNCTION + short + long}


def _many_groups(p: dict) -> dict[str, str]:
    return _cpu(p)


SHARED_CONFTEST = """\
import time

import pytest


@pytest.fixture(scope="session")
def dataset():
    time.sleep({sleep})
    return list(range({items}))
"""


def _shared_setup(p: dict) -> dict[str, str]:
    def body(i: int) -> str:
        return f"    assert dataset[{i}] == {i}\n    assert work({p['loops']}) >= 0\n"

    files = _modules(p, WORK_FUNCTION, body, "dataset")
    files["conftest.py"] = SHARED_CONFTEST.format(sleep=p["setup_sleep_s"], items=p["setup_items"])
    return files


GENERATORS: dict[str, Callable[[dict], dict[str, str]]] = {
    "cpu": _cpu,
    "trivial": _trivial,
    "io": _io,
    "fixtures": _fixtures,
    "prints": _prints,
    "skewed": _skewed,
    "many-groups": _many_groups,
    "shared-setup": _shared_setup,
}


def expected_tests(name: str) -> int:
    p = SUITES[name]
    if name == "skewed":
        return int(p["short_tests"]) + int(p["long_tests"])
    return int(p["modules"]) * int(p["tests_per_module"])


def _write_if_changed(path: Path, files: dict[str, str]) -> None:
    digest = hashlib.sha256(repr(sorted(files.items())).encode()).hexdigest()
    stamp = path / ".stamp"
    if stamp.is_file() and stamp.read_text() == digest:
        return
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    for rel, text in files.items():
        (path / rel).write_text(text)
    stamp.write_text(digest)


def generate(name: str, root: Path = SUITES_DIR) -> Suite:
    """Write suite ``name`` (if needed) and describe it."""
    files = {"pytest.ini": PYTEST_INI, **GENERATORS[name](SUITES[name])}
    path = root / name
    _write_if_changed(path, files)
    return Suite(name=name, path=path, tests=expected_tests(name))
