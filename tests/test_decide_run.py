"""--decide A,B end to end: the oracle against a scripted model that always answers "A" on the
MMLU sample (32 questions, 8 of them "A"), serially and under pytest-xdist."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support import PROJECT, BenchRun

from harness.run.decide import DECISION_FILE, PLAN_FILE, order_key

ITEMS = 32


def _registry(bench: BenchRun) -> list[str]:
    registry = bench.pytester.path / "scripted.toml"
    registry.write_text('[[models]]\nname = "always-a"\nbackend = "scripted"\nmodel = "script"\n'
                        'options = { steps = ["A"], then = "repeat" }\n')
    return ["--models-file", str(registry), "--models", "oracle,always-a", "-rs"]


def _decision(run_dir: Path) -> dict:
    return json.loads((run_dir / DECISION_FILE).read_text())["suites"]["mmlu"]


def test_a_worse_model_is_decided_early_and_the_rest_skipped(bench: BenchRun) -> None:
    result = bench(*_registry(bench), "--decide", "always-a,oracle", "--margin", "5", "--run-id", "d1")
    assert result.ret == 0, result.stdout.str()
    run_dir = bench.reports / "d1"
    decision = _decision(run_dir)
    used = decision["items"]
    assert decision["decision"] == "worse" and 2 <= used < ITEMS and decision["population"] == ITEMS
    assert decision["high"] <= 0 and decision["ran_not_counted"] == 0  # serially nothing runs after it
    assert decision["fixed_size_items"] >= 1
    outcomes = result.parseoutcomes()
    assert (outcomes["passed"], outcomes["skipped"]) == (2 * used, 2 * (ITEMS - used))
    result.stdout.fnmatch_lines([
        f"decision: mmlu: always-a is worse than oracle, after {used} of {ITEMS} items; A - B *; a fixed-size test "
        "would need * items",
        f"*SKIPPED*decided (--decide): always-a is worse than oracle, after {used} of {ITEMS} items*",
    ])
    records = bench.records(run_dir)
    order = json.loads((run_dir / PLAN_FILE).read_text())["suites"]["mmlu"]
    assert order == sorted(order, key=lambda item: order_key(0, "mmlu", item)) and len(order) == ITEMS
    # A's case, then B's, in the seeded order: exactly the first `used` items ran.
    expected = [(i, m) for i in order[:used] for m in ("always-a", "oracle")]
    assert [(r["item_id"], r["model"]) for r in records] == expected
    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert metadata["decision"]["suites"]["mmlu"]["items"] == used
    html = (run_dir / "report.html").read_text()
    assert "<h2>Decision</h2>" in html and "always-a is worse than oracle" in html


def test_decide_under_xdist_stops_at_the_same_kind_of_answer(bench: BenchRun) -> None:
    result = bench(*_registry(bench), "--decide", "oracle,always-a", "--margin", "5", "--run-id", "d2", "-n", "2")
    assert result.ret == 0, result.stdout.str()
    run_dir = bench.reports / "d2"
    decision = _decision(run_dir)
    used = decision["items"]
    assert decision["decision"] == "non_inferior" and used < ITEMS and decision["low"] > -0.05
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] + outcomes.get("skipped", 0) == 2 * ITEMS and outcomes.get("skipped", 0) > 0
    records = bench.records(run_dir)
    order = json.loads((run_dir / PLAN_FILE).read_text())["suites"]["mmlu"]
    ran = {(r["item_id"], r["model"]) for r in records}
    # The test counted the first `used` items of the seeded order, both sides of each; cases a worker
    # had already started when the decision was written ran too, and are reported as such.
    assert {(i, m) for i in order[:used] for m in ("oracle", "always-a")} <= ran
    assert decision["ran_not_counted"] == len(records) - 2 * used
    result.stdout.fnmatch_lines(["*decision: mmlu: oracle is not worse than always-a by more than 5 points*"])


def test_decide_needs_two_variants_that_both_ran(bench: BenchRun) -> None:
    result = bench("--models", "oracle", "--decide", "oracle")
    assert result.ret == 4 and "--decide" in result.stderr.str() and "two different variants" in result.stderr.str()
    result = bench("--models", "oracle", "--decide", "oracle,nobody")
    assert result.ret == 4 and "no item has cases of both variants" in result.stderr.str()
    result = bench("--models", "oracle", "--decide", "oracle,x", "--decide-alpha", "0.7")
    assert result.ret == 4 and "--decide-alpha" in result.stderr.str()


def test_a_resumed_decision_counts_the_earlier_records(bench: BenchRun, monkeypatch: pytest.MonkeyPatch) -> None:
    args = (*_registry(bench), "--decide", "always-a,oracle")
    whole = bench(*args, "--run-id", "whole")
    assert whole.ret == 0
    crash = bench.crash_after(3, monkeypatch)
    # The crash plugin's folder, and this checkout's harness ahead of any installed one.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join((str(bench.pytester.path), str(PROJECT))))
    crashed = bench(*args, *crash, "--run-id", "cut")
    assert crashed.ret == 3 and len(bench.records(bench.reports / "cut")) == 3
    resumed = bench(*args, "--resume", "cut")
    assert resumed.ret == 0, resumed.stdout.str()
    # The earlier attempt's three records count again; the decision is the uninterrupted run's.
    expected = {k: v for k, v in _decision(bench.reports / "whole").items() if k != "ran_not_counted"}
    assert {k: v for k, v in _decision(bench.reports / "cut").items() if k != "ran_not_counted"} == expected
    records = bench.records(bench.reports / "cut")
    assert len(records) == len({r["case_id"] for r in records}) == 2 * expected["items"]
