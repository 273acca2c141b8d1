"""Render summary rows: a fixed-width scoreboard for the terminal, markdown, and CSV.

Every renderer is deterministic (same rows and metadata, same bytes), so `harness report` can
re-render a finished run and a diff of two renderings shows only real changes.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from harness.report.aggregate import SummaryRow

_COLUMNS = ("model", "suite", "strategy", "items", "accuracy", "95% CI", "errors", "latency", "tok/s")
# Text columns read best left-aligned, figures right-aligned so their digits line up.
_LEFT = frozenset({"model", "suite", "strategy"})
_MISSING = "-"


def _cells(row: SummaryRow) -> list[str]:
    accuracy = _MISSING if row.accuracy is None else f"{row.accuracy:.3f}"
    if row.ci_low is None or row.ci_high is None:
        interval = _MISSING
    else:
        interval = f"[{row.ci_low:.2f}, {row.ci_high:.2f}]"
    latency = _MISSING if row.mean_latency_s is None else f"{row.mean_latency_s:.3f} s"
    rate = _MISSING if row.tokens_per_s is None else f"{row.tokens_per_s:.1f}"
    return [
        row.model,
        row.suite,
        row.strategy,
        str(row.items),
        accuracy,
        interval,
        str(row.errors),
        latency,
        rate,
    ]


def scoreboard(rows: Sequence[SummaryRow]) -> str:
    """A fixed-width text table, one line per row, for the end of a pytest run."""
    body = [_cells(row) for row in rows]
    widths = [max([len(name)] + [len(cells[i]) for cells in body]) for i, name in enumerate(_COLUMNS)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.ljust(width) if name in _LEFT else cell.rjust(width)
            for name, cell, width in zip(_COLUMNS, cells, widths)
        ]
        return "  ".join(parts).rstrip()

    lines = [line(_COLUMNS), "  ".join("-" * width for width in widths)]
    lines += [line(cells) for cells in body]
    return "\n".join(lines) + "\n"


def _md_cell(text: str) -> str:
    # A pipe would end the cell early; a newline would end the table.
    return text.replace("|", "\\|").replace("\n", " ")


def _describe(value: Any) -> str:
    """A metadata value on one line: lists joined by commas, mappings as key=value pairs."""
    if isinstance(value, Mapping):
        # Unknown entries (no GPU, say) are left out rather than printed as "None".
        return ", ".join(f"{key}={_describe(item)}" for key, item in value.items() if item is not None)
    if isinstance(value, (list, tuple)):
        return ", ".join(_describe(item) for item in value)
    return str(value)


def _model_names(models: Any) -> Any:
    """Registry entries as `name (backend, quantization)`; the full entries are in metadata.json."""
    if not isinstance(models, (list, tuple)):
        return models
    named = []
    for model in models:
        if isinstance(model, Mapping) and "name" in model:
            detail = ", ".join(str(model[k]) for k in ("backend", "quantization") if model.get(k))
            named.append(f"{model['name']} ({detail})" if detail else str(model["name"]))
        else:
            named.append(model)
    return named


def markdown(rows: Sequence[SummaryRow], metadata: Mapping[str, Any] | None = None) -> str:
    """summary.md: a title, the run's key metadata as a list, and the scoreboard as a table."""
    metadata = metadata or {}
    run_id = metadata.get("run_id")
    lines = [f"# Benchmark run {run_id}" if run_id else "# Benchmark run", ""]
    facts = [
        ("Run id", run_id),
        ("Started", metadata.get("started")),
        ("Git commit", metadata.get("git_commit")),
        ("Models", _model_names(metadata.get("models"))),
        ("Machine", metadata.get("machine")),
    ]
    listed = [f"- {label}: {_describe(value)}" for label, value in facts if value not in (None, "", [], {})]
    if listed:
        lines += listed + [""]
    if metadata.get("sandbox_unisolated"):
        lines += ["> **Generated code ran unisolated** (`--sandbox rlimits`): resource limits only, no "
                  "namespaces; the programs could read and write what this user can.", ""]
    lines.append("| " + " | ".join(_COLUMNS) + " |")
    lines.append("|" + "|".join("---" if name in _LEFT else "---:" for name in _COLUMNS) + "|")
    for row in rows:
        lines.append("| " + " | ".join(_md_cell(cell) for cell in _cells(row)) + " |")
    if not rows:
        lines += ["", "No cases were recorded."]
    return "\n".join(lines) + "\n"


def write_csv(rows: Sequence[SummaryRow], path: str | Path) -> None:
    """summary.csv: a header of the SummaryRow field names, then one line per row.

    Figures are written unrounded (missing ones as empty cells) so spreadsheets and scripts see
    the same values as summary.json.
    """
    names = [f.name for f in fields(SummaryRow)]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(names)
        for row in rows:
            data = row.to_dict()
            writer.writerow(["" if data[name] is None else data[name] for name in names])
