"""Every model's predictions in one CSV, BLEU/chrF++ over valid answers and with invalid ones as
empty, a plot per field, and `harness rescore` on an outside CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from harness.commands.cli import main
from harness.core.record import CaseRecord
from harness.report import extraction_more
from harness.report.extraction_metrics import extraction_records

pytest.importorskip("sacrebleu")
pytest.importorskip("rouge_score")

REFERENCES = [{"name": "Anna Schmidt", "city": "Berlin"}, {"name": "Karl Weber", "city": "Hamburg"},
              {"name": "Eva Braun", "city": "Köln"}]


def rec(i: int, model: str, valid: bool = True) -> CaseRecord:
    ref = REFERENCES[i]
    return CaseRecord(run_id="r", case_id=f"{model}-{i}", suite="extraction", item_id=str(i), model=model,
                      backend="fake", reference=json.dumps(ref), prediction=json.dumps(ref) if valid else None,
                      status="ok" if valid else "invalid_output", correct=valid,
                      extra={"index": i, "row": {"source": f"text {i}", **ref}})


def test_combined_csv_and_two_ways(tmp_path: Path) -> None:
    records = [rec(i, "good") for i in range(3)] + [rec(0, "shaky"), rec(1, "shaky", valid=False), rec(2, "shaky")]
    extraction_more.write(tmp_path, records)
    with open(tmp_path / "extraction" / "predictions.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == ["source", "name", "city", "pred_name[good]", "pred_city[good]",
                              "pred_name[shaky]", "pred_city[shaky]"]
    assert [row["pred_city[shaky]"] for row in table] == ["Berlin", "", "Köln"]
    assert [row["source"] for row in table] == ["text 0", "text 1", "text 2"]
    rows = {(r["model"], r["field"]): r for r in extraction_more.two_ways(extraction_records(records))}
    shaky = rows[("shaky", "name")]
    assert (shaky["n_total"], shaky["n_valid"]) == (3, 2)
    assert shaky["chrf_valid_only"] == pytest.approx(100.0)
    assert shaky["chrf_invalid_as_empty"] < 100.0
    assert rows[("good", "city")]["chrf_invalid_as_empty"] == pytest.approx(100.0)
    pytest.importorskip("matplotlib")
    assert sorted(p.name for p in (tmp_path / "extraction" / "fields").glob("field-*.png")) == [
        "field-city.png", "field-name.png"]


def test_rescore_scores_an_outside_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "theirs.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "name", "pred_name"])
        writer.writerow(["a", "Anna Schmidt", "Anna Schmidt"])
        writer.writerow(["b", "Karl Weber", ""])  # the other tool's invalid answer
    assert main(["rescore", str(path)]) == 0
    with open(tmp_path / "theirs.metrics.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert (row["model"], row["field"], row["n_total"], row["n_valid"]) == ("theirs", "name", "2", "1")
    assert float(row["exact_match_valid_only"]) == 1.0 and float(row["exact_match_invalid_as_empty"]) == 0.5
    assert "wrote" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text("source,name\nx,y\n")
    assert main(["rescore", str(bad)]) == 2
    assert "no pred_<field> columns" in capsys.readouterr().err
