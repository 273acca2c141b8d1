"""summarize(): grouping, accuracy without errors, throughput, sums and ordering."""

from __future__ import annotations

from typing import Any

import pytest

from harness.core.record import CaseRecord
from harness.report.aggregate import SummaryRow, summarize


def record(
    case: str,
    *,
    model: str = "m1",
    suite: str = "mmlu",
    strategy: str = "single",
    status: str = "ok",
    correct: bool | None = True,
    usage: dict[str, Any] | None = None,
    timings: dict[str, Any] | None = None,
    cost: float = 0.0,
) -> dict[str, Any]:
    return CaseRecord(
        run_id="run",
        case_id=case,
        suite=suite,
        item_id=case,
        model=model,
        backend="fake",
        strategy=strategy,
        status=status,  # type: ignore[arg-type]
        correct=correct,
        usage=usage or {},
        timings=timings or {},
        cost=cost,
    ).to_dict()


def test_groups_by_model_suite_strategy() -> None:
    records = [
        record("a", model="m1"),
        record("b", model="m2"),
        record("c", model="m1", strategy="cascade"),
        record("d", model="m1"),
        record("e", model="m1", suite="gsm8k"),
    ]
    rows = summarize(records)
    keys = [(row.model, row.suite, row.strategy, row.items) for row in rows]
    assert keys == [
        ("m1", "gsm8k", "single", 1),
        ("m1", "mmlu", "cascade", 1),
        ("m1", "mmlu", "single", 2),
        ("m2", "mmlu", "single", 1),
    ]


def test_sorted_by_suite_then_model_then_strategy() -> None:
    records = [
        record("1", model="zeta", suite="arc"),
        record("2", model="alpha", suite="mmlu", strategy="single"),
        record("3", model="alpha", suite="mmlu", strategy="agent"),
        record("4", model="beta", suite="arc"),
    ]
    order = [(row.suite, row.model, row.strategy) for row in summarize(records)]
    assert order == [
        ("arc", "beta", "single"),
        ("arc", "zeta", "single"),
        ("mmlu", "alpha", "agent"),
        ("mmlu", "alpha", "single"),
    ]


def test_accuracy_excludes_errors_and_timeouts() -> None:
    records = [
        record("1", status="ok", correct=True),
        record("2", status="ok", correct=True),
        record("3", status="ok", correct=True),
        record("4", status="wrong", correct=False),
        record("5", status="error", correct=None),
        record("6", status="timeout", correct=None),
    ]
    (row,) = summarize(records)
    assert row.items == 6
    assert row.scored == 4
    assert row.correct == 3
    assert row.errors == 2
    assert row.accuracy == 0.75  # errors are not wrong answers: 3/4, not 3/6
    assert row.ci_low == pytest.approx(0.3006, abs=1e-4)
    assert row.ci_high == pytest.approx(0.9544, abs=1e-4)


def test_only_errors_gives_no_accuracy() -> None:
    (row,) = summarize([record("1", status="error", correct=None)])
    assert (row.scored, row.errors) == (0, 1)
    assert row.accuracy is None and row.ci_low is None and row.ci_high is None


def test_missing_correct_falls_back_to_status() -> None:
    rows = summarize([record("1", status="ok", correct=None), record("2", status="wrong", correct=None)])
    assert (rows[0].scored, rows[0].correct) == (2, 1)


def test_tokens_latency_and_cost() -> None:
    records = [
        record(
            "1",
            usage={"prompt_tokens": 100, "completion_tokens": 20, "source": "server"},
            timings={"wall_s": 1.0, "model_s": 0.5},
            cost=0.25,
        ),
        record(
            "2",
            usage={"prompt_tokens": 50, "completion_tokens": 10},
            timings={"wall_s": 2.0, "model_s": 1.0},
            cost=0.5,
        ),
        # Tokens but no model time: in the sums, not in tokens/s; no wall_s: not in latency.
        record(
            "3",
            status="error",
            correct=None,
            usage={"prompt_tokens": 7, "completion_tokens": 0},
            timings={"model_s": 0},
        ),
    ]
    (row,) = summarize(records)
    assert row.prompt_tokens == 157
    assert row.completion_tokens == 30
    assert row.tokens_per_s == pytest.approx(180 / 1.5)
    assert row.mean_latency_s == pytest.approx(1.5)
    assert row.cost == pytest.approx(0.75)


def test_no_model_time_gives_no_throughput() -> None:
    (row,) = summarize([record("1", usage={"prompt_tokens": 5, "completion_tokens": 5})])
    assert row.tokens_per_s is None
    assert row.mean_latency_s is None


def test_to_dict_and_empty_input() -> None:
    assert summarize([]) == []
    (row,) = summarize([record("1")])
    data = row.to_dict()
    assert list(data) == [
        "model", "suite", "strategy", "items", "scored", "correct", "accuracy", "ci_low", "ci_high",
        "errors", "crashes", "invalid", "mean_latency_s", "tokens_per_s", "prompt_tokens", "completion_tokens", "cost",
        "settled_by_small",
        # issue 11: time and resources
        "wall_s", "latency_p50_s", "latency_p95_s", "model_s", "cpu_s", "cpu_percent_mean",
        # issue 25: user and system CPU apart, mean and peak of CPU % and RSS
        "cpu_percent_peak", "cpu_user_s", "cpu_system_s", "rss_mean_mb", "rss_peak_mb",
        "gpu_util_mean", "gpu_util_peak", "gpu_memory_mean_mb", "gpu_memory_peak_mb", "gpu_energy_j",
        # issue 23: the share of prompt tokens computed, not taken from a prefix cache
        "prompt_computed_share",
        # issue 23: the run's speed against the engine's own
        "prompt_tokens_per_s", "completion_tokens_per_s", "engine_prompt_tokens_per_s",
        "engine_decode_tokens_per_s", "prompt_engine_share", "decode_engine_share",
    ]
    assert SummaryRow(**data) == row


def test_prompt_computed_share_sums_what_the_backends_said() -> None:
    reuse = [record("1", timings={"server": {"prompt_computed": 600.0, "prompt_reused": 0.0}}),
             record("2", timings={"server": {"prompt_computed": 90.0, "prompt_reused": 510.0}})]
    silent = [record("3", model="m2", timings={"wall_s": 1.0})]
    rows = {row.model: row for row in summarize(reuse + silent)}
    assert rows["m1"].prompt_computed_share == (600 + 90) / (600 + 90 + 510)
    assert rows["m2"].prompt_computed_share is None  # no backend said: not 0, not 1
