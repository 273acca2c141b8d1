"""The public surface as the README shows it, run as written; and a plugin that stays out of the way.

The README's worked example (a toy suite in one module, registered from a conftest.py, with
options, tags and a report) is copied out of README.md into a project folder of its own and run end
to end with the oracle and a scripted model. A pytest session that uses none of the harness must
not read a registry, import a model library or write a reports folder.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from support import PROJECT

import harness.api

EXAMPLE = re.compile(r"<!-- example: (?P<name>[\w.]+) -->\n```\w+\n(?P<body>.*?)```", re.DOTALL)


def readme_example() -> dict[str, str]:
    return {m["name"]: m["body"] for m in EXAMPLE.finditer((PROJECT / "README.md").read_text(encoding="utf-8"))}


def write_example(folder: Path) -> None:
    for name, body in readme_example().items():
        (folder / name).write_text(body, encoding="utf-8")


def test_the_readme_imports_exactly_the_public_surface() -> None:
    files = readme_example()
    assert set(files) == {"models.toml", "capitals.py", "conftest.py", "test_capitals.py"}
    imported = set()
    for name, body in files.items():
        if name.endswith(".py"):
            for node in ast.walk(ast.parse(body)):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("harness"):
                    assert node.module == "harness.api", f"{name} imports {node.module}, not the public surface"
                    imported |= {alias.name for alias in node.names}
    assert imported <= set(harness.api.__all__)
    assert imported >= {"Suite", "option", "parametrize_cases", "Case", "Item", "Score", "LoadContext", "hookimpl",
                        "RunData"}
    readme = (PROJECT / "README.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in readme for name in harness.api.__all__ if name not in ("CaseRecord", "DataError"))


def test_the_readme_example_runs_with_options_tags_and_its_report(pytester: pytest.Pytester) -> None:
    write_example(pytester.path)
    result = pytester.runpytest_subprocess("--models", "oracle,always-paris", "--capitals-style", "polite",
                                           "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*harness scoreboard*", "*always-paris*capitals*single*3*0.333*",
                                 "*oracle*capitals*single*3*1.000*"])
    (run_dir,) = [p for p in (pytester.path / "reports").iterdir() if p.is_dir()]  # the root folder's reports/
    records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert len(records) == 6
    assert {(r["model"], r["item_id"], r["tags"]["continent"], r["prediction"]) for r in records} >= {
        ("always-paris", "japan", "asia", "Paris"), ("oracle", "kenya", "africa", "Nairobi")}
    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert metadata["settings"]["capitals_style"] == "polite" and metadata["settings"]["capitals_max_tokens"] == 8
    assert metadata["suites"]["capitals"] == {"tags": ["continent"], "reports": ["capitals"]}
    report = json.loads((run_dir / "capitals.json").read_text())
    assert report == {"oracle europe": 1.0, "oracle asia": 1.0, "oracle africa": 1.0,
                      "always-paris europe": 1.0, "always-paris asia": 0.0, "always-paris africa": 0.0}
    help_text = pytester.runpytest_subprocess("--help").stdout.str()
    assert "--capitals-style=HARNESS_CAPITALS_STYLE" in help_text and "harness_capitals_max_tokens" in help_text


def test_a_suite_option_checks_its_value_and_names_it(pytester: pytest.Pytester,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    write_example(pytester.path)
    monkeypatch.setenv("HARNESS_CAPITALS_MAX_TOKENS", "0")
    result = pytester.runpytest_subprocess("--models", "oracle", "-p", "no:cacheprovider")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*HARNESS_CAPITALS_MAX_TOKENS: bad value '0': --capitals-max-tokens must be at "
                                 "least 1*"])


def test_under_xdist_the_controller_starts_when_the_first_record_arrives(pytester: pytest.Pytester) -> None:
    # No harness option at all: the workers start the harness as they collect, the controller when
    # their records come; the run is written once, by the controller.
    write_example(pytester.path)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    (run_dir,) = [p for p in (pytester.path / "reports").iterdir() if p.is_dir()]
    records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert sorted(r["item_id"] for r in records) == ["france", "japan", "kenya"]  # the default model: oracle
    assert len({r["run_id"] for r in records}) == 1 and records[0]["run_id"] == run_dir.name


UNRELATED = """
import sys

def test_unrelated():
    loaded = [m for m in ("llama_cpp", "torch", "transformers", "openai", "ollama") if m in sys.modules]
    assert loaded == []
"""


@pytest.mark.parametrize("args", [(), ("-n", "2")], ids=["plain", "xdist"])
def test_an_unrelated_session_is_untouched(pytester: pytest.Pytester, args: tuple[str, ...]) -> None:
    # A registry the harness would fail to read, were it read at all.
    (pytester.path / "models.toml").write_text("this is [not toml")
    pytester.makepyfile(test_unrelated=UNRELATED)
    result = pytester.runpytest_subprocess(*args, "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    assert "harness" not in result.stdout.str().replace("llm-bench-harness", "")
    assert not (pytester.path / "reports").exists()


def test_a_harness_option_starts_it(pytester: pytest.Pytester) -> None:
    # The same unrelated session, given a harness option: now the registry is read (and is broken).
    (pytester.path / "models.toml").write_text("this is [not toml")
    pytester.makepyfile(test_unrelated=UNRELATED)
    result = pytester.runpytest_subprocess("--samples", "3", "-p", "no:cacheprovider")
    assert result.ret == 4
    result.stderr.fnmatch_lines([f"*{pytester.path / 'models.toml'}: not valid TOML*"])


def test_the_readme_task_file_runs(pytester: pytest.Pytester) -> None:
    readme = (PROJECT / "README.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```toml\n(.*?)```", readme, re.DOTALL) if 'name = "capitals_file"' in b]
    (pytester.path / "capitals.toml").write_text(block)
    (pytester.path / "capitals.csv").write_text("country,capital,continent\nFrance,Paris,europe\nJapan,Tokyo,asia\n")
    (pytester.path / "models.toml").write_text(readme_example()["models.toml"])
    pytester.makepyfile(test_tasks="from harness.run.task_cases import pytest_generate_tests, test_task  # noqa\n")
    result = pytester.runpytest_subprocess("--task", "capitals.toml", "--models", "oracle,always-paris",
                                           "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*always-paris*capitals_file*single*2*0.500*", "*oracle*capitals_file*2*1.000*"])
