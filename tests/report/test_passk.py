"""pass@k and pass^k against brute force over every k-subset of the samples."""

from __future__ import annotations

from itertools import combinations

import pytest

from harness.report.passk import ks_for, markdown, pass_at_k, pass_hat_k, scores, summarize


def brute(n: int, c: int, k: int, every: bool) -> float:
    samples = [True] * c + [False] * (n - c)
    subsets = list(combinations(samples, k))
    hits = sum(all(s) if every else any(s) for s in subsets)
    return hits / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 7])
def test_estimators_match_the_subset_average(n: int) -> None:
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute(n, c, k, every=False))
            assert pass_hat_k(n, c, k) == pytest.approx(brute(n, c, k, every=True))


def test_known_values_and_bad_input() -> None:
    assert pass_at_k(10, 1, 1) == pytest.approx(0.1)
    assert pass_at_k(10, 1, 5) == pytest.approx(0.5)
    assert pass_hat_k(10, 9, 2) == pytest.approx(0.8)
    assert pass_at_k(3, 0, 3) == 0.0 and pass_hat_k(3, 3, 3) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        pass_hat_k(3, 1, 4)


def test_scores_of_one_problem() -> None:
    assert ks_for(1) == [1] and ks_for(3) == [1, 3] and ks_for(12) == [1, 5, 10, 12]
    got = scores([True, False, True])
    assert got == pytest.approx({"pass@1": 2 / 3, "pass^1": 2 / 3, "pass@3": 1.0, "pass^3": 0.0})


def record(model: str, strategy: str, passed: list[bool], settled: bool | None = None, status: str = "ok") -> dict:
    extra = {"isolation": "bwrap, no network", "sandbox_s": 0.5}
    if settled is not None:
        extra["settled_by_small"] = settled
    return {"suite": "mbpp", "model": model, "strategy": strategy, "status": status,
            "scores": scores(passed) if status != "error" else {}, "extra": extra, "cost": 0.01,
            "usage": {"prompt_tokens": 10, "completion_tokens": 5}, "timings": {"model_s": 1.0}}


def test_summary_rows_side_by_side() -> None:
    rows = summarize([
        record("small", "single", [True, False]), record("small", "single", [False, False]),
        record("small+large", "cascade", [True], settled=True), record("small+large", "cascade", [True], settled=False),
        record("small+large", "cascade", [], status="error"),
    ])
    single = next(r for r in rows if r["strategy"] == "single")
    cascade = next(r for r in rows if r["strategy"] == "cascade")
    assert single["pass@1"] == pytest.approx(0.25) and single["pass@2"] == pytest.approx(0.5)
    assert single["settled_by_small"] is None and single["sandbox_s"] == pytest.approx(1.0)
    assert (cascade["items"], cascade["errors"], cascade["settled_by_small"]) == (3, 1, 0.5)
    assert cascade["pass@1"] == 1.0 and cascade["prompt_tokens"] == 30
    table = markdown(rows)
    assert "| small | single | 2 | 0 | 0.250 | 0.500 | 0.250 | 0.000 | - |" in table
    assert "Sandbox: bwrap, no network" in table
