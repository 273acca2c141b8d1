"""The MMLU analysis from hand-made records with known answers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from harness.record import CaseRecord
from harness.report import mmlu_analysis
from harness.report.aggregate import aggregate


def rec(subject: str, n: int, model: str, correct: bool, wall: float = 1.0) -> CaseRecord:
    # The item id says nothing of the subject: the analysis reads the record's tag.
    item_id = f"q{n}-{len(subject)}"
    return CaseRecord(run_id="r", case_id=f"{model}-{item_id}", suite="mmlu", item_id=item_id,
                      tags={"subject": subject},
                      model=model, backend="fake", correct=correct, status="ok" if correct else "wrong",
                      timings={"wall_s": wall}, resources={"cpu_s": wall / 2, "duration_s": wall})


def records() -> list[CaseRecord]:
    out = []
    for n in range(4):
        # model a: all astronomy right, half of high_school_math; model b: one astronomy, no math
        out.append(rec("astronomy", n, "a", True))
        out.append(rec("high_school_math", n, "a", n < 2))
        out.append(rec("astronomy", n, "b", n == 0, wall=3.0))
        out.append(rec("high_school_math", n, "b", False, wall=3.0))
    return out


def test_per_subject_per_model_accuracy_chance_flag_and_errors() -> None:
    analysis = mmlu_analysis.analyse(aggregate(records()))
    subjects = analysis["subjects"]
    assert subjects["astronomy"]["single:a"]["accuracy"] == 1.0
    assert subjects["high_school_math"]["single:a"]["accuracy"] == 0.5
    assert subjects["astronomy"]["single:b"]["correct"] == 1
    assert subjects["high_school_math"]["single:b"]["wall_s"] == 12.0
    assert subjects["high_school_math"]["single:b"]["cpu_s"] == 6.0
    models = analysis["models"]
    assert models["single:a"]["accuracy"] == 0.75 and models["single:b"]["accuracy"] == 0.125
    # b's interval [0.02, 0.47] includes 25 %; a's [0.41, 0.93] does not
    assert models["single:b"]["chance_in_interval"] and not models["single:a"]["chance_in_interval"]
    errors = analysis["errors"]
    assert errors["missed_by_every_model"] == ["q2-16", "q3-16"]  # high_school_math 2 and 3
    (overlap,) = errors["wrong_overlap"]
    assert (overlap["both_wrong"], overlap["either_wrong"]) == (2, 7)
    assert overlap["jaccard"] == pytest.approx(2 / 7)
    assert errors["hardest_subjects"][0] == "high_school_math"
    assert errors["easiest_subjects"][0] == "astronomy"
    assert errors["subject_mean_accuracy"]["astronomy"] == pytest.approx((1.0 + 0.25) / 2)


def test_files_are_written(tmp_path: Path) -> None:
    folder = mmlu_analysis.write(tmp_path, aggregate(records()))
    assert folder is not None
    data = json.loads((folder / "analysis.json").read_text())
    assert set(data["models"]) == {"single:a", "single:b"}
    with open(folder / "subjects.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["subject"], r["variant"], r["correct"]) for r in rows] == [
        ("astronomy", "single:a", "4"), ("astronomy", "single:b", "1"),
        ("high_school_math", "single:a", "2"), ("high_school_math", "single:b", "0")]
    pytest.importorskip("matplotlib")
    assert {p.name for p in folder.glob("*.png")} == {"heatmap.png", "accuracy.png", "efficiency.png", "time.png"}


def test_a_record_without_the_tag_is_untagged_not_parsed_from_its_id() -> None:
    old = CaseRecord.from_dict({"suite": "mmlu", "model": "a", "item_id": "astronomy-0", "case_id": "c",
                                "status": "ok", "correct": True})
    assert old.tags == {}
    analysis = mmlu_analysis.analyse(aggregate([old]))
    assert list(analysis["subjects"]) == [mmlu_analysis.UNTAGGED]


def test_a_run_keeps_every_choice_loglikelihood_and_writes_the_analysis(bench) -> None:  # type: ignore[no-untyped-def]
    assert bench("--models", "oracle", "--samples", "5", "--run-id", "ll").ret == 0
    records = bench.records(bench.reports / "ll")
    assert len(records) == 5
    for record in records:
        values = record["extra"]["loglikelihoods"]
        assert sorted(values) == ["A", "B", "C", "D"]
        # the oracle: the reference is certain, every other letter impossible (-inf, kept as null)
        assert values[record["reference"]] == 0.0
        assert all(v is None for letter, v in values.items() if letter != record["reference"])
    # Each record carries its subject as a tag, the same as its item's input.
    assert all(r["tags"] == {"subject": r["item_id"].rsplit("-", 1)[0]} for r in records)
    analysis = json.loads((bench.reports / "ll" / "mmlu" / "analysis.json").read_text())
    assert analysis["models"]["single:oracle"]["accuracy"] == 1.0
