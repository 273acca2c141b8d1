"""The parity check (report/parity.py, `harness parity`) on two recorded runs with known flips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.commands.cli import main
from harness.core.record import CaseRecord
from harness.report.parity import parity

LETTERS = "ABCD"


def _record(run: str, suite: str, item: int, prediction: str, reference: str,
            loglikelihoods: dict[str, float] | None = None, status: str = "ok") -> CaseRecord:
    correct = prediction == reference
    return CaseRecord(run_id=run, case_id=f"test_{suite}[m-{item}]", suite=suite, item_id=f"q{item}", model="m",
                      backend="llamacpp", prediction=prediction, reference=reference, correct=correct,
                      status=status if status != "ok" else ("ok" if correct else "wrong"),
                      extra={"loglikelihoods": loglikelihoods} if loglikelihoods else {})


def _runs() -> tuple[list[CaseRecord], list[CaseRecord]]:
    """MMLU: 10 items, B flips q3 (right -> wrong) and q7 (wrong -> right); every choice's
    log-likelihood moves by 0.01 * item in B. GSM8K: 4 items, B flips q1 (right -> wrong) and
    errs on q2 (left out: both sides must be scored)."""
    a, b = [], []
    for i in range(10):
        base = {c: -1.0 - k for k, c in enumerate(LETTERS)}
        moved = {c: v + 0.01 * i for c, v in base.items()}
        reference = "A"
        first = "A" if i != 7 else "B"
        second = {3: "C", 7: "A"}.get(i, first)
        a.append(_record("a", "mmlu", i, first, reference, base))
        b.append(_record("b", "mmlu", i, second, reference, moved))
    for i in range(4):
        a.append(_record("a", "gsm8k", i, "42", "42"))
        b.append(_record("b", "gsm8k", i, {1: "41"}.get(i, "42"), "42", status="error" if i == 2 else "ok"))
    return a, b


def test_parity_counts_same_answers_flips_and_loglikelihood_deltas() -> None:
    a, b = _runs()
    results = {r.suite: r for r in parity(a, b)}
    mmlu, gsm8k = results["mmlu"], results["gsm8k"]
    assert (mmlu.items, mmlu.same_answer, mmlu.same_share) == (10, 8, 0.8)
    assert [(f.item_id, f.prediction_a, f.prediction_b, f.correct_a, f.correct_b) for f in mmlu.flips] == \
        [("q3", "A", "C", True, False), ("q7", "B", "A", False, True)]
    # One right -> wrong, one wrong -> right: no score difference, an interval around 0.
    assert mmlu.score.difference == 0.0 and mmlu.score.ci_low < 0 < mmlu.score.ci_high
    assert mmlu.choices_compared == 40
    assert mmlu.loglikelihood_delta is not None
    assert mmlu.loglikelihood_delta["max"] == pytest.approx(0.09)
    assert mmlu.loglikelihood_delta["p50"] == pytest.approx(0.045)
    assert (gsm8k.items, gsm8k.same_answer, gsm8k.loglikelihood_delta) == (3, 2, None)
    assert gsm8k.score.difference == pytest.approx(-1 / 3)
    assert [f.item_id for f in gsm8k.flips] == ["q1"]


def _write(folder: Path, records: list[CaseRecord]) -> Path:
    folder.mkdir()
    (folder / "results.jsonl").write_text("".join(r.to_json() + "\n" for r in records))
    return folder


def test_harness_parity_prints_the_table_and_the_flips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _runs()
    run_a, run_b = _write(tmp_path / "a", a), _write(tmp_path / "b", b)
    assert main(["parity", str(run_a), str(run_b)]) == 0
    out = capsys.readouterr().out
    assert "0.800" in out and "mmlu single:m -> single:m: 2 flipped item(s)" in out
    assert "q3: A 'A' (right)  B 'C' (wrong)" in out
    assert main(["parity", str(run_a), str(run_b), "--json"]) == 0
    data = {r["suite"]: r for r in json.loads(capsys.readouterr().out)}
    assert data["gsm8k"]["same_share"] == pytest.approx(2 / 3) and len(data["mmlu"]["flips"]) == 2


def test_parity_of_runs_with_nothing_in_common_fails(tmp_path: Path) -> None:
    a, b = _runs()
    run_a = _write(tmp_path / "a", [r for r in a if r.suite == "mmlu"])
    run_b = _write(tmp_path / "b", [r for r in b if r.suite == "gsm8k"])
    assert main(["parity", str(run_a), str(run_b)]) == 1
