"""_engine.prefixed_suffixes: the same answer as pytest's find_suffixes, or None."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _pytest.pathlib import find_suffixes, make_numbered_dir

from pytest_threadpool import _engine

NAMES = ["test_a0", "TEST_A1", "test_a12", "test_ab", "test_a", "other", "test_a_3", "test_a 4"]


@pytest.fixture
def populated(tmp_path: Path) -> Path:
    for name in NAMES:
        (tmp_path / name).mkdir()
    (tmp_path / "test_a7").write_text("a file counts too")
    os.symlink(tmp_path / "test_a0", tmp_path / "test_acurrent")
    return tmp_path


@pytest.mark.parametrize("prefix", ["test_a", "TEST_a", "test_", "other", "nothing", "", "."])
def test_matches_pytest_find_suffixes(populated: Path, prefix: str):
    got = _engine.prefixed_suffixes(populated, prefix)
    assert got is not None
    assert sorted(got) == sorted(find_suffixes(populated, prefix))


def test_accepts_str_and_bytes_paths(populated: Path):
    expected = sorted(find_suffixes(populated, "test_a"))
    assert sorted(_engine.prefixed_suffixes(str(populated), "test_a")) == expected
    assert sorted(_engine.prefixed_suffixes(os.fsencode(populated), "test_a")) == expected


def test_non_ascii_prefix_or_names_are_left_to_pytest(populated: Path):
    assert _engine.prefixed_suffixes(populated, "tëst") is None
    (populated / "Kelvin_\u212a").mkdir()  # str.lower() maps it to ASCII "k"
    assert _engine.prefixed_suffixes(populated, "test_a") is None


def test_missing_directory_raises_oserror(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        _engine.prefixed_suffixes(tmp_path / "missing", "x")


def test_pytest_numbering_is_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """make_numbered_dir with the engine's scan numbers exactly as with pytest's."""
    import _pytest.pathlib

    def engine_scan(root, prefix):
        suffixes = _engine.prefixed_suffixes(root, prefix)
        assert suffixes is not None
        return suffixes

    monkeypatch.setattr(_pytest.pathlib, "find_suffixes", engine_scan)
    made = [make_numbered_dir(tmp_path, "test_x").name for _ in range(3)]
    (tmp_path / "TEST_X7").mkdir()
    made.append(make_numbered_dir(tmp_path, "test_x").name)
    assert made == ["test_x0", "test_x1", "test_x2", "test_x8"]
    assert os.readlink(tmp_path / "test_xcurrent") == str(tmp_path / "test_x8")
