"""The `harness` command on real runs made by the plugin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import BenchRun

from harness.commands.cli import main


def test_models_lists_the_registry_and_what_runs_here(capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")
    assert main(["models", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["oracle"]["runs_here"] is True
    # No Ollama server answers on the test machine (OLLAMA_HOST pointed at a closed port).
    assert rows["tinyllama"]["runs_here"] is False and "no Ollama server answers" in rows["tinyllama"]["why_not"]
    assert rows["gemma3-270m-q4"]["default"] is True


def test_report_rerenders_a_finished_run(bench: BenchRun, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench("--models", "oracle", "--samples", "4", "--run-id", "r1").ret == 0
    run_dir = bench.reports / "r1"
    before = {name: (run_dir / name).read_text() for name in ("summary.json", "summary.csv", "summary.md")}
    for name in before:
        (run_dir / name).unlink()
    assert main(["report", str(run_dir)]) == 0
    assert "oracle" in capsys.readouterr().out
    assert {name: (run_dir / name).read_text() for name in before} == before


def test_compare_counts_changed_cases(bench: BenchRun, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench("--models", "oracle", "--samples", "4", "--run-id", "a").ret == 0
    assert bench("--models", "oracle", "--samples", "4", "--run-id", "b").ret == 0
    # Make one case of run b wrong, as a different model version might.
    results = bench.reports / "b" / "results.jsonl"
    records = [json.loads(line) for line in results.read_text().splitlines()]
    records[0]["correct"], records[0]["status"] = False, "wrong"
    results.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["compare", str(bench.reports / "a"), str(bench.reports / "b")]) == 0
    out = capsys.readouterr().out
    assert "4 cases in both runs" in out
    assert "1.000   0.750  -0.250" in out
    assert "1 cases changed correctness" in out


def test_report_of_a_missing_run_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err


def test_report_rewrites_every_report_from_typed_records(bench: BenchRun, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench("--models", "oracle", "--samples", "3", "--run-id", "r2", target="test_mbpp.py").ret == 0
    run_dir = bench.reports / "r2"
    code_md = (run_dir / "code.md").read_text()
    (run_dir / "code.md").unlink()
    comparison = run_dir / "comparison" / "mbpp" / "comparison.json"
    comparison.unlink()
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "code.md").read_text() == code_md and comparison.is_file()
    # A record that cannot be read names its line, instead of a KeyError deep in a report.
    (run_dir / "results.jsonl").write_text('{"case_id": "x", "schema": 2, "model": "m", "item_id": "1"}\n')
    assert main(["report", str(run_dir)]) == 2
    assert "record 1 (x): case record 'x' lacks suite" in capsys.readouterr().err


def test_compare_matches_two_runs_of_different_models_by_item(bench: BenchRun,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    registry = bench.pytester.path / "scripted.toml"
    registry.write_text('[[models]]\nname = "always-a"\nbackend = "scripted"\nmodel = "script"\n'
                        'options = { steps = ["A"], then = "repeat" }\n')
    assert bench("--models", "oracle", "--samples", "6", "--run-id", "a").ret == 0
    assert bench("--models-file", str(registry), "--models", "always-a", "--samples", "6", "--run-id", "b").ret == 0
    capsys.readouterr()  # the runs' own output
    references = {r["item_id"]: r["reference"] for r in bench.records(bench.reports / "a")}
    right_b = sum(ref == "A" for ref in references.values())
    assert main(["compare", str(bench.reports / "a"), str(bench.reports / "b"), "--json"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("6 cases in both runs (6 in A, 6 in B)")
    (result,) = json.loads(out[out.index("\n") + 1:])
    assert (result["a"], result["b"], result["items"]) == ("single:oracle", "single:always-a", 6)
    assert (result["accuracy_a"], result["a_only"], result["b_only"]) == (1.0, 6 - right_b, 0)
    assert result["difference"] == pytest.approx((right_b - 6) / 6)
    from harness.report.stats import mcnemar_exact

    assert result["p_value"] == pytest.approx(mcnemar_exact(6 - right_b, 0))
