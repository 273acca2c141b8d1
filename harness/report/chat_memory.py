"""The chat-memory report: recall per strategy and model, recall against distance, and what the
history costs per turn (prompt tokens and latency).

The report hook runs at the end of a run holding chat_memory records and writes `chat_memory/`:
report.json (everything), recall.csv, distance.csv, turns.csv, and
chat_memory.png. Recall counts questions, not conversations: each case's extra['questions'] holds
one entry per scored question (harness/suites/chat_memory.py judge()). Only scored records count
(status ok or wrong): an error says nothing about memory.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.core.record import CaseRecord
from harness.report.aggregate import Group, aggregate
from harness.report.hooks import RunData, hookimpl
from harness.report.stats import mean, wilson_interval

FOLDER = "chat_memory"
SUITE = "chat_memory"
RECALL_COLUMNS = ("model", "strategy", "conversations", "questions", "right", "recall", "ci_low", "ci_high",
                  "in_context", "miss_strategy", "miss_model", "last_turn_prompt_tokens", "mean_latency_s",
                  "errors")


def _questions(record: CaseRecord) -> list[Mapping[str, Any]]:
    return [q for q in record.extra.get("questions", []) if isinstance(q, Mapping)]


def _series(record: CaseRecord, field: str) -> list[Any]:
    value = record.extra.get(field)
    return list(value) if isinstance(value, list) else []


def _per_turn(records: Sequence[CaseRecord], field: str) -> list[float | None]:
    """Mean of extra[field][turn] over the conversations that reached that turn."""
    series = [_series(r, field) for r in records]
    longest = max((len(s) for s in series), default=0)
    return [mean(s[i] for s in series if i < len(s)) for i in range(longest)]


def _groups(records: Iterable[CaseRecord | Mapping[str, Any]]) -> list[Group]:
    """The aggregation's groups of this suite (the latest record per case); only scored records
    count (status ok or wrong): an error says nothing about memory."""
    return aggregate(records, where=lambda r: r.suite == SUITE)


def recall_rows(records: Iterable[CaseRecord | Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for group in _groups(records):
        mine = [r for r in group.records if r.scored]
        asked = [q for r in mine for q in _questions(r)]
        right = sum(bool(q.get("correct")) for q in asked)
        low, high = wilson_interval(right, len(asked))
        last = [(_series(r, "prompt_tokens_per_turn") or [None])[-1] for r in mine]
        latency = [t for r in mine for t in _series(r, "latency_s_per_turn")]
        rows.append({
            "model": group.model, "strategy": group.strategy, "conversations": len(mine), "questions": len(asked),
            "right": right, "recall": right / len(asked) if asked else None,
            "ci_low": low if asked else None, "ci_high": high if asked else None,
            "in_context": sum(bool(q.get("in_context")) for q in asked) / len(asked) if asked else None,
            "miss_strategy": sum(q.get("miss") == "strategy" for q in asked),
            "miss_model": sum(q.get("miss") == "model" for q in asked),
            "last_turn_prompt_tokens": mean(last), "mean_latency_s": mean(latency),
            "errors": group.row.errors})
    return rows


def distance_rows(records: Iterable[CaseRecord | Mapping[str, Any]]) -> list[dict[str, Any]]:
    counts: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0, 0, 0])
    for group in _groups(records):
        for record in group.records:
            if not record.scored:
                continue
            for q in _questions(record):
                cell = counts[(group.model, group.strategy, int(q.get("distance", 0)))]
                cell[0] += bool(q.get("correct"))
                cell[1] += 1
                cell[2] += bool(q.get("in_context"))
    rows = []
    for (model, strategy, distance), (right, n, inside) in sorted(counts.items()):
        low, high = wilson_interval(right, n)
        rows.append({"model": model, "strategy": strategy, "distance": distance, "questions": n, "right": right,
                     "recall": right / n, "ci_low": low, "ci_high": high, "in_context": inside / n})
    return rows


def turn_rows(records: Iterable[CaseRecord | Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for group in _groups(records):
        mine = [r for r in group.records if r.scored]
        if not mine:
            continue
        tokens = _per_turn(mine, "prompt_tokens_per_turn")
        latency = _per_turn(mine, "latency_s_per_turn")
        kept = _per_turn(mine, "kept_turns_per_turn")
        for index, (t, s, k) in enumerate(zip(tokens, latency, kept), start=1):
            reached = sum(len(_series(r, "prompt_tokens_per_turn")) >= index for r in mine)
            rows.append({"model": group.model, "strategy": group.strategy, "turn": index, "conversations": reached,
                         "mean_prompt_tokens": t, "mean_latency_s": s, "mean_kept_turns": k})
    return rows


def _csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in columns})


def plot(path: Path, recall: Sequence[Mapping[str, Any]], distance: Sequence[Mapping[str, Any]],
         turns: Sequence[Mapping[str, Any]]) -> bool:
    """Four panels: recall (with intervals), recall against distance, prompt tokens and latency per
    turn. False when matplotlib is missing (the JSON and CSVs stand on their own)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return False
    figure = Figure(figsize=(13, 9), layout="constrained")
    (bars, by_distance), (tokens, latency) = figure.subplots(2, 2)
    labels = [f"{r['model']}\n{r['strategy']}" for r in recall]
    values = [r["recall"] or 0.0 for r in recall]
    errors = [[v - (r["ci_low"] or 0.0) for v, r in zip(values, recall)],
              [(r["ci_high"] or 0.0) - v for v, r in zip(values, recall)]]
    bars.bar(range(len(recall)), values, yerr=errors, capsize=4, color="tab:blue")
    bars.set_xticks(range(len(recall)), labels, fontsize=7, rotation=45, ha="right")
    bars.set(ylim=(0, 1.05), ylabel="recall (95% Wilson interval)", title="Recall per model and strategy")
    for key in sorted({(r["model"], r["strategy"]) for r in distance}):
        mine = [r for r in distance if (r["model"], r["strategy"]) == key]
        by_distance.plot([r["distance"] for r in mine], [r["recall"] for r in mine], marker="o", label="/".join(key))
    by_distance.set(ylim=(-0.05, 1.05), xlabel="turns between fact and question", ylabel="recall",
                    title="Recall against distance")
    for axis, field, title in ((tokens, "mean_prompt_tokens", "Prompt tokens per turn"),
                               (latency, "mean_latency_s", "Latency per turn (s)")):
        for key in sorted({(r["model"], r["strategy"]) for r in turns}):
            # Scripted turns have no latency (no model call): plot the turns that have a figure.
            mine = [r for r in turns if (r["model"], r["strategy"]) == key and r[field] is not None]
            axis.plot([r["turn"] for r in mine], [r[field] for r in mine], marker=".", label="/".join(key))
        axis.set(xlabel="turn", title=title)
    for axis in (by_distance, tokens, latency):
        if axis.lines:
            axis.legend(fontsize=6)
    figure.savefig(path, dpi=110)
    return True


@hookimpl
def pytest_harness_report(run: RunData) -> None:
    if run.suite(SUITE):
        finish(run.run_dir, run.suite(SUITE), run.metadata)


def finish(run_dir: str | Path, records: Iterable[CaseRecord | Mapping[str, Any]],
           metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Write the report for a run's chat_memory records; returns what report.json holds."""
    folder = Path(run_dir) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    mine = list(records)
    recall, distance, turns = recall_rows(mine), distance_rows(mine), turn_rows(mine)
    _csv(folder / "recall.csv", recall, RECALL_COLUMNS)
    _csv(folder / "distance.csv", distance, ("model", "strategy", "distance", "questions", "right", "recall",
                                             "ci_low", "ci_high", "in_context"))
    _csv(folder / "turns.csv", turns, ("model", "strategy", "turn", "conversations", "mean_prompt_tokens",
                                       "mean_latency_s", "mean_kept_turns"))
    plotted = plot(folder / "chat_memory.png", recall, distance, turns)
    report = {"run_id": metadata.get("run_id"), "recall": recall, "distance": distance, "turns": turns,
              "plot": "chat_memory.png" if plotted else None}
    (folder / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return report
