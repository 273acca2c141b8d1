"""The extraction metrics table: one row per (model, field), its CSV, and the metrics' scales.

Shared by the metrics (extraction_metrics.py) and the plots (extraction_plots.py), which both
read it and neither imports the other at module level.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

# The quality metrics and their scale's top, for plots that put them on one 0-1 axis.
QUALITY = {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0, "bleu": 100.0, "chrf": 100.0,
           "bertscore_f1": 1.0, "exact_match": 1.0}


@dataclass
class MetricRow:
    model: str
    field: str
    n_total: int
    n_valid: int
    rouge1: float | None = None
    rouge2: float | None = None
    rougeL: float | None = None
    bleu: float | None = None
    chrf: float | None = None
    bertscore_f1: float | None = None
    exact_match: float | None = None
    runtime_s: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_per_sec: float | None = None


COLUMNS = tuple(f.name for f in fields(MetricRow))


def write_metrics_csv(rows: Sequence[MetricRow], path: Path) -> None:
    """The metrics CSV; figures unrounded (repr), missing ones empty, so re-scoring diffs clean."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            data = asdict(row)
            writer.writerow(["" if data[c] is None else repr(data[c]) if isinstance(data[c], float)
                             else data[c] for c in COLUMNS])


def read_metrics_csv(path: Path) -> list[MetricRow]:
    with open(path, newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    converted = []
    for cells in table:
        values: dict[str, Any] = {}
        for column in COLUMNS:
            text = cells[column]
            if column in ("model", "field"):
                values[column] = text
            elif column in ("n_total", "n_valid", "tokens_in", "tokens_out"):
                values[column] = int(text)
            else:
                values[column] = float(text) if text else None
        converted.append(MetricRow(**values))
    return converted
