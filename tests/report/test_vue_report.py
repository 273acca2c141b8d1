"""The Vue report from hand-made records: mean score and spreads per model and mode, warnings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.core.record import CaseRecord
from harness.report import vue_report
from harness.report.aggregate import aggregate


def rec(n: int, model: str, mode: str, score: float, stdev: float, gpu: list[dict[str, Any]] | None = None
        ) -> CaseRecord:
    return CaseRecord(run_id="r", case_id=f"{mode}-{model}-{n}", suite="vue", item_id=str(n), model=model,
                      backend="fake", strategy=mode, correct=score >= 7, status="ok" if score >= 7 else "wrong",
                      scores={"score": score, "score_stdev": stdev},
                      resources={"duration_s": 1.0, "cpu_s": 0.5, "gpu": gpu or []})


def test_mean_spread_and_warnings(tmp_path: Path) -> None:
    idle = [{"index": 0, "samples": 5, "util_mean": 1.0, "util_peak": 3.0, "memory_peak_mb": 900.0}]
    records = [rec(0, "m", "single", 8.0, 0.5), rec(1, "m", "single", 10.0, 1.5),
               rec(0, "m", "agent", 2.0, 0.0, idle), rec(1, "m", "agent", 4.0, 0.0, idle)]
    folder = vue_report.write(tmp_path, aggregate(records))
    assert folder is not None
    rows = {r["mode"]: r for r in json.loads((folder / "vue.json").read_text())}
    single, agent = rows["single"], rows["agent"]
    assert single["score_mean"] == 9.0 and single["score_stdev_across_cases"] == pytest.approx(1.4142, abs=1e-4)
    assert single["score_stdev_within_case_mean"] == 1.0 and single["pass_rate"] == 1.0
    assert single["warnings"] == [] and single["gpu_util_mean"] is None
    assert agent["score_mean"] == 3.0 and agent["pass_rate"] == 0.0
    assert [w.split(":")[0] for w in agent["warnings"]] == ["low score", "GPU idle"]
    text = (folder / "vue.md").read_text()
    assert "| m | single | 2 | 9.00 | 1.41 | 1.00 | 1.00 | - |" in text
    assert "- m (agent): GPU idle" in text


def test_gpu_use_under_the_threshold_warns(tmp_path: Path) -> None:
    def gpu(util: float) -> list[dict[str, Any]]:
        return [{"index": 0, "samples": 5, "util_mean": util, "util_peak": util + 5, "memory_peak_mb": 900.0}]

    records = [rec(0, "busy", "single", 9.0, 0.0, gpu(92.0)), rec(0, "half", "single", 9.0, 0.0, gpu(55.0)),
               rec(0, "idle", "single", 9.0, 0.0, gpu(2.0)), rec(0, "cpu", "single", 9.0, 0.0)]
    rows = {r["model"]: r for r in vue_report.summarize_vue(aggregate(records))}
    assert rows["busy"]["warnings"] == [] and rows["cpu"]["warnings"] == []
    assert rows["half"]["warnings"] == ["GPU underused: mean utilization 55.0% is under 80% (--vue-gpu-threshold) "
                                        "while the model ran"]
    assert rows["idle"]["warnings"][0].startswith("GPU idle: mean utilization 2.0%")
    lower = {r["model"]: r for r in vue_report.summarize_vue(aggregate(records), gpu_threshold=50.0)}
    assert lower["half"]["warnings"] == []
    assert vue_report.GPU_THRESHOLD == 80.0
