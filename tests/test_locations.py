"""One rule each for the registry, the cache and the reports (harness/core/locations.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

import harness
from harness.core import locations
from harness.models.registry import load_registry


def test_the_registry_is_the_roots_models_toml_else_the_packaged_one_then_models_file(tmp_path: Path) -> None:
    mine = tmp_path / "mine.toml"
    assert locations.registry_files(None, tmp_path) == [locations.PACKAGED_REGISTRY]
    assert locations.registry_files(mine, tmp_path) == [locations.PACKAGED_REGISTRY, mine]
    (tmp_path / "models.toml").write_text('[[models]]\nname = "only"\nbackend = "oracle"\nmodel = "o"\n')
    assert locations.registry_files(mine, tmp_path) == [tmp_path / "models.toml", mine]
    assert list(load_registry(locations.registry_files(None, tmp_path))) == ["only"]
    assert locations.PACKAGED_REGISTRY == Path(harness.__file__).parent / "models.toml"  # package data, harness/
    assert "gemma3-270m-q4" in load_registry([locations.PACKAGED_REGISTRY])


def test_the_cache_and_the_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert locations.cache_dir() == tmp_path / "xdg" / "llm-bench-harness"
    assert locations.cache_dir(tmp_path / "c") == tmp_path / "c"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert locations.cache_dir() == Path("~/.cache/llm-bench-harness").expanduser()
    assert locations.report_dir(None, tmp_path) == tmp_path / "reports"
    assert locations.report_dir(tmp_path / "r", tmp_path) == tmp_path / "r"
