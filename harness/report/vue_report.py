"""The Vue suite's report: mean 0-10 score and its spread per model and mode, GPU use, warnings.

Written into <run>/vue/vue.json and vue.md at the end of a run holding Vue records. Per (model,
mode): the cases, the mean score (0-10) over cases and its standard deviation across cases, the
mean within-case spread over --vue-repeats (score_stdev of each record), the pass rate (the
aggregation's accuracy), mean latency, and GPU utilization and energy from the aggregation's
resource columns. Warnings: a mean score below LOW_SCORE, and a GPU that was sampled but used
less than --vue-gpu-threshold (default 80 %, the original's success criterion) while the model's
cases ran: under IDLE_GPU_PERCENT it stayed idle (the model ran on the CPU, or another device).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.report.aggregate import Group
from harness.report.hooks import RunData, hookimpl

SUITE = "vue"
FOLDER = "vue"
LOW_SCORE = 5.0
IDLE_GPU_PERCENT = 5.0
GPU_THRESHOLD = 80.0  # --vue-gpu-threshold's default


def summarize_vue(groups: Sequence[Group], gpu_threshold: float = GPU_THRESHOLD) -> list[dict[str, Any]]:
    rows = []
    for group in groups:
        row = group.row
        scores = [r.scores["score"] for r in group.records if r.scored and "score" in r.scores]
        spreads = [r.scores["score_stdev"] for r in group.records if "score_stdev" in r.scores]
        mean = statistics.fmean(scores) if scores else None
        warnings = []
        if mean is not None and mean < LOW_SCORE:
            warnings.append(f"low score: mean {mean:.1f}/10 is below {LOW_SCORE:.0f}")
        if row.gpu_util_mean is not None and row.gpu_util_mean < IDLE_GPU_PERCENT:
            warnings.append(f"GPU idle: mean utilization {row.gpu_util_mean:.1f}% while the model ran "
                            "(did it run on the CPU?)")
        elif row.gpu_util_mean is not None and row.gpu_util_mean < gpu_threshold:
            warnings.append(f"GPU underused: mean utilization {row.gpu_util_mean:.1f}% is under "
                            f"{gpu_threshold:g}% (--vue-gpu-threshold) while the model ran")
        rows.append({
            "model": group.model, "mode": group.strategy, "cases": len(scores),
            "score_mean": mean, "score_stdev_across_cases": statistics.stdev(scores) if len(scores) > 1 else None,
            "score_stdev_within_case_mean": statistics.fmean(spreads) if spreads else None,
            "pass_rate": row.accuracy, "errors": row.errors, "mean_latency_s": row.mean_latency_s,
            "gpu_util_mean": row.gpu_util_mean, "gpu_memory_peak_mb": row.gpu_memory_peak_mb,
            "gpu_energy_j": row.gpu_energy_j, "warnings": warnings,
        })
    return rows


def _cell(value: Any, form: str) -> str:
    return "-" if value is None else form.format(value)


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    header = ("| model | mode | cases | score (0-10) | spread across cases | spread within case | pass rate "
              "| GPU % |")
    lines = ["# Vue suite", "", header, "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['mode']} | {r['cases']} | {_cell(r['score_mean'], '{:.2f}')} | "
                     f"{_cell(r['score_stdev_across_cases'], '{:.2f}')} | "
                     f"{_cell(r['score_stdev_within_case_mean'], '{:.2f}')} | {_cell(r['pass_rate'], '{:.2f}')} | "
                     f"{_cell(r['gpu_util_mean'], '{:.0f}')} |")
    warnings = [f"- {r['model']} ({r['mode']}): {w}" for r in rows for w in r["warnings"]]
    if warnings:
        lines += ["", "## Warnings", "", *warnings]
    return "\n".join(lines) + "\n"


def write(run_dir: Path, groups: Sequence[Group], gpu_threshold: float = GPU_THRESHOLD) -> Path | None:
    if not groups:
        return None
    folder = run_dir / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    rows = summarize_vue(groups, gpu_threshold)
    (folder / "vue.json").write_text(json.dumps(rows, indent=2, sort_keys=True) + "\n")
    (folder / "vue.md").write_text(markdown(rows))
    return folder


@hookimpl
def pytest_harness_report(run: RunData) -> None:
    threshold = run.settings.get("vue_gpu_threshold")
    write(run.run_dir, run.suite_groups(SUITE), GPU_THRESHOLD if threshold is None else float(threshold))
