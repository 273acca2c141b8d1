"""The comparison folder of a run: every (model, strategy) of a suite side by side, on the items
they all answered.

reports/<run>/comparison/<suite>/
  samples.csv        the exact items (id, reference) and which variants answered each
  results-<variant>.json   that variant's records
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
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

FOLDER = "comparison"


def variant(record: Mapping[str, Any]) -> str:
    return f"{record.get('strategy', 'single')}:{record['model']}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name)


def compare(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """comparison.json's content for one suite's records."""
    by_variant: dict[str, dict[str, Mapping[str, Any]]] = defaultdict(dict)
    for r in records:
        by_variant[variant(r)][r["item_id"]] = r  # the latest record per item counts
    common = set.intersection(*(set(items) for items in by_variant.values())) if by_variant else set()
    rows = {}
    for name, items in sorted(by_variant.items()):
        chosen = [items[i] for i in sorted(common)]
        n = len(chosen)
        scored = [r for r in chosen if r.get("status") in ("ok", "wrong", "invalid_output")]
        latency = [float(r.get("timings", {}).get("wall_s") or 0.0) for r in chosen]
        tokens = sum(int(r.get("usage", {}).get("prompt_tokens", 0)) + int(r.get("usage", {}).get("completion_tokens", 0))
                     for r in chosen)
        tool_calls = [int(r.get("extra", {}).get("tool_calls", 0) or 0) for r in chosen]
        cost = sum(float(r.get("cost") or 0.0) for r in chosen)
        rows[name] = {
            "items": n,
            "accuracy": sum(bool(r.get("correct")) for r in scored) / n if n else None,
            "errors": sum(r.get("status") in ("error", "timeout") for r in chosen),
            "mean_latency_s": sum(latency) / n if n else None,
            "cost_per_100_items": 100 * cost / n if n else None,
            "total_cost": cost,
            "total_tokens": tokens,
            "tool_calls_per_item": sum(tool_calls) / n if n else None,
        }
    return {"common_items": len(common), "variants": rows}


def write(run_dir: Path, records: list[Mapping[str, Any]]) -> list[Path]:
    """Write one comparison folder per suite; returns the folders written."""
    by_suite: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        by_suite[r["suite"]].append(r)
    folders = []
    for suite, rows in sorted(by_suite.items()):
        folder = run_dir / FOLDER / suite
        folder.mkdir(parents=True, exist_ok=True)
        result = compare(rows)
        (folder / "comparison.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        variants: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        for r in rows:
            variants[variant(r)].append(r)
        for name, chosen in variants.items():
            (folder / f"results-{_safe(name)}.json").write_text(json.dumps(chosen, indent=1, sort_keys=True) + "\n")
        _samples_csv(folder / "samples.csv", rows)
        if len(result["variants"]) > 1:  # one point is no comparison, and matplotlib costs ~1 s
            _plot(folder / "comparison.png", suite, result)
        folders.append(folder)
    return folders


def _samples_csv(path: Path, rows: list[Mapping[str, Any]]) -> None:
    items: dict[str, dict[str, Any]] = {}
    for r in rows:
        entry = items.setdefault(r["item_id"], {"item_id": r["item_id"], "reference": r.get("reference"),
                                                "variants": set()})
        entry["variants"].add(variant(r))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["item_id", "reference", "variants"])
        for item_id in sorted(items):
            entry = items[item_id]
            writer.writerow([item_id, entry["reference"], ";".join(sorted(entry["variants"]))])


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
