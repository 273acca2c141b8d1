"""The comparison folder of a run: every (model, strategy) of a suite side by side, on the items
they all answered.

reports/<run>/comparison/<suite>/
  samples.csv        the exact items (id, input text, reference) and which variants answered each
  results-<variant>.json   that variant's records (a JSON array, a record a line)
  comparison.json    per variant: accuracy, mean latency, cost per 100 items, tokens, tool calls
  comparison.png     accuracy against cost and against latency (two or more variants, where
                     matplotlib is installed)

A variant is `strategy:model`, e.g. `single:gpt-4o`, `delegate:qwen2.5-1.5b+gpt-4o`. Figures are
computed on the items common to every variant, so they compare like with like.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness.core.record import CaseRecord
from harness.report.aggregate import Group, aggregate, by_suite
from harness.report.hooks import RunData, hookimpl
from harness.report.paired import headlines, paired

FOLDER = "comparison"


def variant(record: CaseRecord) -> str:
    return f"{record.strategy}:{record.model}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name)


def compare(records: Iterable[CaseRecord | Mapping[str, Any]]) -> dict[str, Any]:
    """comparison.json's content for one suite's records, on the items every variant answered.

    Accuracy, errors, latency, tokens and cost are the aggregation's (harness/report/aggregate.py),
    so they agree with the scoreboard on the same records.
    """
    return compare_groups(aggregate(records))


def compare_groups(groups: list[Group]) -> dict[str, Any]:
    """compare() for one suite's groups, already aggregated."""
    common = set.intersection(*(g.item_ids for g in groups)) if groups else set()
    rows = {}
    for group in sorted(groups, key=lambda g: g.variant):
        chosen = group.on(common)
        row = chosen.row
        n = row.items
        tool_calls = [len(r.tool_calls) for r in chosen.records]
        by_tool = Counter(c.name for r in chosen.records for c in r.tool_calls)
        rows[group.variant] = {
            "items": n,
            "scored": row.scored,
            "accuracy": row.accuracy,
            "ci_low": row.ci_low,
            "ci_high": row.ci_high,
            "errors": row.errors,
            "mean_latency_s": row.mean_latency_s,
            "cost_per_100_items": 100 * row.cost / n if n else None,
            "total_cost": row.cost,
            "total_tokens": row.prompt_tokens + row.completion_tokens,
            "tool_calls_per_item": sum(tool_calls) / n if n else None,
            "tool_calls_per_item_by_tool": {name: count / n for name, count in sorted(by_tool.items())} if n else {},
        }
    # Every two variants on the items both scored, and each pair strategy against its large model
    # alone (report/paired.py): the same figures as summary.json's.
    return {"common_items": len(common), "variants": rows,
            "paired": [p.to_dict() for p in paired(groups)], "headlines": [h.to_dict() for h in headlines(groups)]}


@hookimpl
def pytest_harness_report(run: RunData) -> None:
    write_groups(run.run_dir, run.groups)


def write(run_dir: Path, records: Iterable[CaseRecord | Mapping[str, Any]]) -> list[Path]:
    """Write one comparison folder per suite; returns the folders written."""
    return write_groups(run_dir, aggregate(records))


def write_groups(run_dir: Path, all_groups: list[Group]) -> list[Path]:
    """write() for the run's groups, already aggregated (each suite's are compared once)."""
    folders = []
    for suite, groups in sorted(by_suite(all_groups).items()):
        folder = Path(run_dir) / FOLDER / suite
        folder.mkdir(parents=True, exist_ok=True)
        result = compare_groups(groups)
        (folder / "comparison.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        for group in groups:
            (folder / f"results-{_safe(group.variant)}.json").write_text(records_json(group.records))
        _samples_csv(folder / "samples.csv", [r for g in groups for r in g.records])
        if len(result["variants"]) > 1:  # one point is no comparison, and matplotlib costs ~1 s
            _plot(folder / "comparison.png", suite, result)
        folders.append(folder)
    return folders


def records_json(records: Iterable[CaseRecord]) -> str:
    """A JSON array of the records, one a line as results.jsonl writes them. Not indented: an
    indent takes json's pure-Python encoder, three times slower than its C one, and this file
    was a tenth of the harness's time per case (bench/overhead.py)."""
    lines = ",\n".join(r.to_json() for r in records)
    return f"[\n{lines}\n]\n" if lines else "[]\n"


def _samples_csv(path: Path, rows: list[CaseRecord]) -> None:
    items: dict[str, dict[str, Any]] = {}
    for r in rows:
        entry = items.setdefault(r.item_id, {"item_id": r.item_id, "reference": r.reference, "input": None,
                                             "variants": set()})
        entry["input"] = entry["input"] or r.input_text
        entry["variants"].add(variant(r))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["item_id", "input", "reference", "variants"])
        for item_id in sorted(items):
            entry = items[item_id]
            writer.writerow([item_id, entry["input"] or "", entry["reference"], ";".join(sorted(entry["variants"]))])


def _plot(path: Path, suite: str, result: Mapping[str, Any]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plots are a bonus beside the JSON; the extraction extra brings matplotlib
        return
    rows = {k: v for k, v in result["variants"].items() if v["accuracy"] is not None}
    if not rows:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for axis, key, label in ((axes[0], "cost_per_100_items", "cost per 100 items (USD)"),
                             (axes[1], "mean_latency_s", "mean latency per item (s)")):
        for name, row in rows.items():
            axis.scatter(row[key] or 0.0, row["accuracy"], s=60)
            axis.annotate(name, (row[key] or 0.0, row["accuracy"]), textcoords="offset points", xytext=(5, 5),
                          fontsize=8)
        axis.set_xlabel(label)
        axis.set_ylabel("accuracy")
        axis.set_ylim(-0.05, 1.05)
        axis.grid(alpha=0.3)
    fig.suptitle(f"{suite}: accuracy against cost and latency ({result['common_items']} common items)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
