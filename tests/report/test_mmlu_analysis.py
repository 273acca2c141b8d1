"""The MMLU analysis from hand-made records with known answers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from harness.core.record import CaseRecord
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


def test_subjects_hard_for_every_model_and_the_rank_agreement() -> None:
    out = []
    # Three models, three subjects of 10 items. law: every model near chance (2, 3, 1 right);
    # math: a knows it (9), b and c near chance; history: all good. The three agree on the order.
    right = {"law": {"a": 2, "b": 3, "c": 1}, "math": {"a": 9, "b": 3, "c": 2}, "history": {"a": 10, "b": 8, "c": 7}}
    for subject, by_model in right.items():
        for model, k in by_model.items():
            out += [rec(subject, n, model, n < k) for n in range(10)]
    analysis = mmlu_analysis.analyse(aggregate(out))
    errors = analysis["errors"]
    assert errors["hard_for_every_model"] == ["law"]
    agreement = errors["rank_agreement"]
    assert agreement["subjects"] == 3
    # a: law < math < history; b: law = math < history (tie); c: law < math < history.
    # Rank sums law 3.5, math 5.5, history 9 (mean 6, squared deviations 15.5) over m=3 models and
    # n=3 subjects; b's tie adds 2**3 - 2 = 6: W = 12 * 15.5 / (9 * (27 - 3) - 3 * 6).
    assert agreement["kendall_w"] == pytest.approx(12 * 15.5 / (9 * 24 - 3 * 6))
    rho = {(p["a"], p["b"]): p["rho"] for p in agreement["spearman"]}
    assert rho[("single:a", "single:c")] == pytest.approx(1.0)
    assert rho[("single:a", "single:b")] == pytest.approx(0.8660254, abs=1e-6)


def test_one_model_names_no_subject_hard_for_all() -> None:
    out = [rec("law", n, "a", False) for n in range(8)] + [rec("math", n, "a", True) for n in range(8)]
    errors = mmlu_analysis.analyse(aggregate(out))["errors"]
    assert errors["hard_for_every_model"] == []
    assert errors["rank_agreement"] == {"subjects": 2, "kendall_w": None, "spearman": []}


def test_time_plot_parts_real_against_cpu_user_system_and_gpu() -> None:
    from harness.report.mmlu_plots import time_parts

    analysis = {"models": {
        "single:cpu": {"wall_s": 10.0, "cpu_s": 16.0, "cpu_user_s": 15.0, "cpu_system_s": 1.0, "gpu_util_mean": None},
        "single:gpu": {"wall_s": 4.0, "cpu_s": 4.0, "cpu_user_s": 3.5, "cpu_system_s": 0.5, "gpu_util_mean": 75.0},
        "single:old": {"wall_s": 2.0, "cpu_s": 1.0},  # a record from before the split
    }}
    parts = time_parts(analysis)
    assert parts["single:cpu"] == {"wall_s": 10.0, "cpu_user_s": 15.0, "cpu_system_s": 1.0, "gpu_s": None}
    assert parts["single:gpu"] == {"wall_s": 4.0, "cpu_user_s": 3.5, "cpu_system_s": 0.5, "gpu_s": 3.0}
    assert parts["single:old"] == {"wall_s": 2.0, "cpu_user_s": 1.0, "cpu_system_s": 0.0, "gpu_s": None}


def test_user_and_system_cpu_reach_the_analysis() -> None:
    records = [CaseRecord(run_id="r", case_id=f"c{n}", suite="mmlu", item_id=f"q{n}", tags={"subject": "law"},
                          model="a", backend="fake", correct=True, status="ok", timings={"wall_s": 1.0},
                          resources={"cpu_s": 0.75, "cpu_user_s": 0.5, "cpu_system_s": 0.25, "duration_s": 1.0})
               for n in range(4)]
    figures = mmlu_analysis.analyse(aggregate(records))["models"]["single:a"]
    assert (figures["cpu_s"], figures["cpu_user_s"], figures["cpu_system_s"]) == (3.0, 2.0, 1.0)
