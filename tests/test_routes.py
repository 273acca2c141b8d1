"""The routing lab (harness/report/routes.py, `harness routes`) and the live threshold router
(pair strategy threshold:T in benchmarks/test_mmlu.py): offline equals live, case for case."""

from __future__ import annotations

import importlib.util
import json
import math
from typing import Any

import pytest
from support import BenchRun, requires_llamacpp

from harness.commands.cli import main as harness_cli
from harness.core.confidence import agreement, choice_margin, choice_probabilities, passed_share
from harness.core.record import CaseRecord
from harness.report.routes import from_records, paired_items, route_items, shown_points

THRESHOLDS = (0.3, 0.6)


def test_confidence_signals_known_values() -> None:
    assert choice_probabilities([math.log(0.5), math.log(0.3), math.log(0.2)]) == pytest.approx([0.5, 0.3, 0.2])
    assert choice_margin([math.log(0.5), math.log(0.3), math.log(0.2)]) == pytest.approx(0.2)
    assert choice_margin([0.0, None, float("-inf"), None]) == 1.0  # the oracle: certain
    assert choice_margin([-1.0, -1.0, -3.0]) == 0.0  # a tie
    assert choice_margin([-1.0]) is None
    assert passed_share([True, False, True, True]) == 0.75 and passed_share([]) is None


def _rec(model: str, item: int, correct: bool, confidence: float | None = None, tokens: int = 10,
         cost: float = 0.0, suite: str = "mmlu", source: str = "choice_margin") -> CaseRecord:
    return CaseRecord(run_id="r", case_id=f"t[{model}-{item}]", suite=suite, item_id=str(item), model=model,
                      backend="x", correct=correct, status="ok" if correct else "wrong", confidence=confidence,
                      confidence_source=source if confidence is not None else None,
                      usage={"prompt_tokens": tokens, "completion_tokens": 1}, cost=cost, timings={"wall_s": 1.0})


def test_the_lab_by_hand() -> None:
    # Small: right when sure (0.9, 0.8), wrong when not (0.2, 0.1); large right on all but item 3.
    small = [_rec("s", 0, True, 0.9), _rec("s", 1, True, 0.8), _rec("s", 2, False, 0.2), _rec("s", 3, False, 0.1)]
    large = [_rec("l", i, i != 3, 1.0, tokens=100, cost=0.01) for i in range(4)]
    [lab] = from_records(small + large, "s", "l", target=0.95)
    by_threshold = {p.threshold: p for p in lab.points}
    assert sorted(t for t in by_threshold if t is not None) == [0.0, 0.1, 0.2, 0.8, 0.9]
    assert (lab.small_accuracy, lab.large_accuracy) == (0.5, 0.75)
    at = by_threshold[0.8]  # items 2 and 3 go to the large model: right on 2, wrong on 3
    assert (at.correct, at.to_large, at.share_large, at.accuracy) == (3, 2, 0.5, 0.75)
    assert at.cost == pytest.approx(0.02) and at.large_tokens == 2 * 101
    assert at.prompt_tokens == 4 * 10 + 2 * 100 and at.latency_s == pytest.approx(6 / 4)
    assert by_threshold[0.0].to_large == 0 and by_threshold[None].to_large == 4
    assert by_threshold[None].policy == "large_alone" and by_threshold[None].accuracy == 0.75
    assert by_threshold[None].prompt_tokens == 400 and by_threshold[None].cost == pytest.approx(0.04)  # no small
    assert shown_points(lab) == lab.points and [p.threshold for p in shown_points(lab, rows=3)] == [0.0, 0.2, 0.8, None]
    # The cheapest keeping 95 % of 0.75: threshold 0.8 (0.75, two items sent); 0.9 costs more.
    assert lab.cheapest is at
    assert route_items(paired_items(small + large, "mmlu", "s", "l"), 0.85) == {"0": False, "1": True, "2": True,
                                                                                "3": True}


def test_a_code_suite_names_its_cascade() -> None:
    small = [_rec("s", i, i % 2 == 0, float(i % 2 == 0), suite="mbpp", source="tests_passed") for i in range(4)]
    large = [_rec("l", i, True, 1.0, suite="mbpp", source="tests_passed") for i in range(4)]
    [lab] = from_records(small + large, "s", "l")
    cascade = next(p for p in lab.points if p.policy == "cascade")
    assert (cascade.threshold, cascade.accuracy, cascade.to_large) == (1.0, 1.0, 2)
    assert lab.cheapest is cascade


def _guesser(bench: BenchRun) -> list[str]:
    registry = bench.pytester.path / "guesser.toml"
    registry.write_text('[[models]]\nname = "guesser"\nbackend = "scripted"\nmodel = "script"\n'
                        'options = { steps = ["A"], loglikelihood = "digest" }\n')
    return ["--models-file", str(registry)]


def _offline_equals_live(records: list[dict[str, Any]], small: str, large: str, items: int = 32) -> None:
    typed = [CaseRecord.from_dict(r) for r in records]
    pairs = paired_items(typed, "mmlu", small, large)
    assert len(pairs) == items
    routed_counts = []
    for threshold in THRESHOLDS:
        live = {r.item_id: r for r in typed if r.strategy == f"threshold:{threshold:g}"}
        assert len(live) == items
        routed = route_items(pairs, threshold)
        routed_counts.append(sum(routed.values()))
        for item, to_large in routed.items():
            rec, (alone_small, alone_large) = live[item], pairs[item]
            answered = alone_large if to_large else alone_small
            assert rec.settled_by_small is (not to_large), item
            assert (rec.prediction, rec.counts_correct) == (answered.prediction, answered.counts_correct), item
            tokens = alone_small.usage.prompt_tokens + (alone_large.usage.prompt_tokens if to_large else 0)
            assert rec.usage.prompt_tokens == tokens, item
            assert set(rec.per_model) == ({small, large} if to_large else {small}), item
        [lab] = from_records(typed, small, large)
        point = next(p for p in lab.points if p.threshold == threshold)
        assert point.live
        assert point.correct == sum(r.counts_correct for r in live.values())
        assert point.to_large == sum(not r.settled_by_small for r in live.values())
    assert 0 < routed_counts[0] < routed_counts[1] <= items  # the thresholds route differently


def test_offline_lab_equals_the_live_threshold_router(bench: BenchRun) -> None:
    thresholds = ",".join(map(str, THRESHOLDS))
    result = bench(*_guesser(bench), "--models", "guesser,oracle", "--small-model", "guesser", "--large-model",
                   "oracle", "--route-thresholds", thresholds, "--run-id", "r")
    assert result.ret == 0, result.stdout.str()
    run_dir = bench.reports / "r"
    records = bench.records(run_dir)
    guesses = [r for r in records if r["model"] == "guesser"]
    assert {r["confidence_source"] for r in guesses} == {"choice_margin"}
    assert len({round(r["confidence"], 6) for r in guesses}) > 20  # every degree of confidence
    _offline_equals_live(records, "guesser", "oracle")
    # The run's own report, and `harness routes` from its folder.
    [lab] = json.loads((run_dir / "routes" / "routes.json").read_text())
    assert lab["large_accuracy"] == 1.0 and lab["cheapest"]["accuracy"] >= 0.95
    if importlib.util.find_spec("matplotlib") is not None:  # the frontier plot, inlined in the page
        assert (run_dir / "mmlu" / "routes.png").is_file()
    html = (run_dir / "report.html").read_text()
    assert "Routing lab: mmlu, guesser then oracle" in html
    assert harness_cli(["routes", str(run_dir), "--target", "0.5"]) == 0
    [again] = json.loads((run_dir / "routes" / "routes.json").read_text())
    assert again["target"] == 0.5 and again["cheapest"]["accuracy"] >= 0.5


def test_routes_of_a_run_without_confidence_says_why(bench: BenchRun, capsys: pytest.CaptureFixture[str]) -> None:
    result = bench("--models", "oracle", "--run-id", "plain", target="test_gsm8k.py")
    assert result.ret == 0
    assert harness_cli(["routes", str(bench.reports / "plain"), "--small", "oracle", "--large", "x"]) == 2
    assert "no suite where the small model's single records carry a confidence" in capsys.readouterr().err


@requires_llamacpp
def test_offline_equals_live_on_the_default_models(bench: BenchRun) -> None:
    # 12 of the sample's questions: smollm2's choice margins there run from about 0.23 to 0.63,
    # so 0.3 sends a few to gemma and 0.6 nearly all.
    small, large = "smollm2-135m", "gemma3-270m-q4"
    result = bench("--models", f"{small},{large}", "--small-model", small, "--large-model", large, "--samples", "12",
                   "--route-thresholds", ",".join(map(str, THRESHOLDS)), "--run-id", "real", "--monitor-interval", "0")
    assert result.ret == 0, result.stdout.str()
    _offline_equals_live(bench.records(bench.reports / "real"), small, large, items=12)


def test_generation_confidence_scores_the_answer_again(bench: BenchRun) -> None:
    result = bench("--models", "oracle", "--generation-confidence", "--run-id", "g", target="test_gsm8k.py")
    assert result.ret == 0, result.stdout.str()
    records = bench.records(bench.reports / "g")
    assert len(records) == 8
    # The oracle's answer is certain (log 1 = 0): exp(mean log-probability) = 1; one more call each.
    assert {(r["confidence"], r["confidence_source"], r["extra"]["mean_logprob"], r["attempts"])
            for r in records} == {(1.0, "mean_logprob", 0.0, 2)}
    plain = bench("--models", "oracle", "--run-id", "p", target="test_gsm8k.py")
    assert plain.ret == 0
    assert {(r["confidence"], r["attempts"]) for r in bench.records(bench.reports / "p")} == {(None, 1)}


def test_agreement_among_k_samples(bench: BenchRun) -> None:
    registry = bench.pytester.path / "wavering.toml"
    # Per item: the greedy answer 5, then samples 6 and 5 (the script repeats its last step after).
    steps = ["The answer is 5.", "The answer is 6.", "The answer is 5."] * 8
    registry.write_text('[[models]]\nname = "wavering"\nbackend = "scripted"\nmodel = "script"\n'
                        f"options = {{ steps = {json.dumps(steps)} }}\n")
    result = bench("--models-file", str(registry), "--models", "wavering", "--samples-per-item", "3",
                   "--run-id", "k", target="test_gsm8k.py")
    assert result.ret == 0, result.stdout.str()
    records = bench.records(bench.reports / "k")
    assert {(r["prediction"], round(r["confidence"], 6), r["confidence_source"], r["attempts"]) for r in records} == {
        ("5", round(2 / 3, 6), "agreement", 3)}
    assert all(r["extra"]["sampled_answers"] == ["6", "5"] for r in records)
    assert agreement(["5", "6", None], "5") == pytest.approx(1 / 3) and agreement(["5"], None) == 0.0
