"""A non-editable install, as a user gets it: the package (with its default registry as package data)
in a fresh virtual environment, reusing the dependencies already installed here.

In that environment an unrelated pytest run is untouched, and a project outside the checkout with
its own models.toml runs the README's example with the oracle and a scripted model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from support import PROJECT
from test_public_surface import UNRELATED, write_example


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a virtual environment holding a wheel-style install of this checkout."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"  # what a wheel is built from, copied so the build leaves the checkout alone
    shutil.copytree(PROJECT / "harness", source / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT / name, source / name)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; "
                                "print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True,
                               check=True).stdout.strip())
    # The dependencies already installed here, reused: a .pth line puts their folder on the path
    # (its own .pth files, such as an editable install of the harness, are not run from there).
    (site / "reuse-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                           "--no-index", "--quiet", "--target", str(site), str(source)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return venv / "bin" / "python"


def run(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("HARNESS_")}
    return subprocess.run([str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_install_is_the_package_with_its_registry(installed: Path, tmp_path: Path) -> None:
    done = run(installed, "-c", "import harness, harness.core.locations as l; print(harness.__file__); "
                                "print(l.PACKAGED_REGISTRY.is_file())", cwd=tmp_path)
    path, shipped = done.stdout.split()
    assert str(installed.parents[1]) in path and str(PROJECT) not in path
    assert shipped == "True"
    listed = run(installed, "-c", "from harness.commands.cli import main; raise SystemExit(main(['models', '--json']))",
                 cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "gemma3-270m-q4" in {m["name"] for m in json.loads(listed.stdout)}  # the packaged default
    # The built-in suites register through the installed entry points (group harness.suites).
    found = run(installed, "-c", "from harness.suites.unit import entry_point_suites; "
                                 "print(' '.join(s.name for s in entry_point_suites()))", cwd=tmp_path)
    assert found.stdout.split() == ["chat_memory", "extraction", "gsm8k", "humaneval", "mbpp", "mmlu", "vue"]
    assert "--mmlu-mode" in run(installed, "-m", "pytest", "--help", cwd=tmp_path).stdout


def test_an_unrelated_test_file_passes_untouched(installed: Path, tmp_path: Path) -> None:
    (tmp_path / "test_unrelated.py").write_text(UNRELATED)
    done = run(installed, "-m", "pytest", "-p", "no:cacheprovider", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "llm-bench-harness" in done.stdout  # the plugin is installed and loaded ...
    assert "harness" not in done.stdout.replace("llm-bench-harness", "")  # ... and says nothing
    assert not (tmp_path / "reports").exists()


def test_a_users_own_benchmark_runs_with_its_own_models(installed: Path, tmp_path: Path) -> None:
    project = tmp_path / "my-project"
    project.mkdir()
    write_example(project)  # the README's example: models.toml, capitals.py, conftest.py, test_capitals.py
    listed = run(installed, "-c", "from harness.commands.cli import main; raise SystemExit(main(['models', '--json']))",
                 cwd=project)
    assert [m["name"] for m in json.loads(listed.stdout)] == ["oracle", "always-paris"]  # models.toml here
    done = run(installed, "-m", "pytest", "--models", "oracle,always-paris", "-p", "no:cacheprovider", cwd=project)
    assert done.returncode == 0, done.stdout + done.stderr
    (run_dir,) = [p for p in (project / "reports").iterdir() if p.is_dir()]
    records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert sorted((r["model"], r["correct"]) for r in records) == [
        ("always-paris", False), ("always-paris", False), ("always-paris", True),
        ("oracle", True), ("oracle", True), ("oracle", True)]
    assert json.loads((run_dir / "capitals.json").read_text())["always-paris asia"] == 0.0
    assert (run_dir / "report.html").is_file()
