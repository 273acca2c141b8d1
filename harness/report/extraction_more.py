"""More of the extraction report: every model's predictions in one CSV, BLEU/chrF++ two ways, and a
plot per field; and scoring an outside CSV that already holds `pred_*` columns.

<run>/extraction/
  predictions.csv     the input rows, the reference fields, then `pred_<field>[<model>]` for every
                      model (one file to read side by side; predictions-<model>.csv stay as they were)
  bleu_chrf.csv       per (model, field): BLEU and chrF++ over the valid answers only, and with the
                      invalid answers counted as empty predictions (each column says which)
  fields/field-<name>.png  one plot per field: each metric per model (not averaged over fields)

`harness rescore FILE.csv` scores a CSV of another tool: a `source` column, the reference field
columns, and `pred_<field>` (one model, named after the file) or `pred_<field>[<model>]` columns.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.core.extraction_format import SOURCE
from harness.core.record import CaseRecord
from harness.report.extraction_metrics import FOLDER, extraction_records, prediction_of, quality, reference_of
from harness.report.hooks import RunData, hookimpl

PREDICTIONS_CSV = "predictions.csv"
BLEU_CHRF_CSV = "bleu_chrf.csv"
_PRED = re.compile(r"^pred_(?P<field>.+?)(\[(?P<model>.+)\])?$")


def write_combined(by_model: dict[str, list[CaseRecord]], path: Path) -> Path:
    """One CSV, one line per input row (by the row's index), every model's predictions beside it."""
    models = sorted(by_model)
    first = next((g[0] for g in by_model.values() if g), None)
    names = list(reference_of(first)) if first is not None else []
    rows: dict[Any, dict[str, Any]] = {}
    for model in models:
        for record in by_model[model]:
            key = record.extra.get("index", record.item_id)
            inputs = record.extra.get("row") or {**reference_of(record), SOURCE: record.input_text or ""}
            row = rows.setdefault(key, {SOURCE: inputs.get(SOURCE, ""), **{n: inputs.get(n, "") for n in names}})
            predicted = prediction_of(record)
            for n in names:
                row[f"pred_{n}[{model}]"] = predicted.get(n, "")
    header = [SOURCE, *names, *(f"pred_{n}[{m}]" for m in models for n in names)]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for key in sorted(rows, key=lambda k: (isinstance(k, str), k)):
            writer.writerow([rows[key].get(column, "") for column in header])
    return path


def two_ways(by_model: dict[str, list[CaseRecord]]) -> list[dict[str, Any]]:
    """BLEU and chrF++ per (model, field) over valid answers only, and with invalid ones as empty."""
    out = []
    for model, group in sorted(by_model.items()):
        answered = [r for r in group if r.scored]
        valid = [r for r in answered if r.status != "invalid_output"]
        names = list(reference_of(answered[0])) if answered else []
        for name in names:
            row: dict[str, Any] = {"model": model, "field": name, "n_total": len(answered), "n_valid": len(valid)}
            for label, chosen in (("valid_only", valid), ("invalid_as_empty", answered)):
                if chosen:
                    scores = quality([str(prediction_of(r).get(name, "")) for r in chosen],
                                     [reference_of(r)[name] for r in chosen])
                    row[f"bleu_{label}"], row[f"chrf_{label}"] = scores["bleu"], scores["chrf"]
                else:
                    row[f"bleu_{label}"] = row[f"chrf_{label}"] = None
            out.append(row)
    return out


def write_two_ways(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    header = ["model", "field", "n_total", "n_valid", "bleu_valid_only", "chrf_valid_only",
              "bleu_invalid_as_empty", "chrf_invalid_as_empty"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if row.get(h) is None else row[h] for h in header])
    return path


def field_plots(rows: Sequence[dict[str, Any]], folder: Path) -> list[Path]:
    """fields/field-<name>.png: BLEU and chrF++ (both ways) per model for one field."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    metrics = ["bleu_valid_only", "bleu_invalid_as_empty", "chrf_valid_only", "chrf_invalid_as_empty"]
    for name in sorted({r["field"] for r in rows}):
        mine = [r for r in rows if r["field"] == name]
        fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(mine) + 2), 3.8))
        width = 0.8 / len(metrics)
        for j, metric in enumerate(metrics):
            ax.bar([i + j * width for i in range(len(mine))], [r[metric] or 0.0 for r in mine], width,
                   label=metric.replace("_", " "))
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(mine))], [r["model"] for r in mine], fontsize=8)
        ax.set_ylim(0, 105)
        ax.set_ylabel("score (0-100)")
        ax.set_title(f"field {name}: BLEU and chrF++ per model")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = folder / f"field-{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def write(run_dir: Path, records: Sequence[CaseRecord]) -> None:
    by_model = extraction_records(records)
    if not by_model:
        return
    folder = Path(run_dir) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    write_combined(by_model, folder / PREDICTIONS_CSV)
    rows = two_ways(by_model)
    write_two_ways(rows, folder / BLEU_CHRF_CSV)
    field_plots(rows, folder / "fields")  # beside plots/, which holds the seven plots over all fields


@hookimpl
def pytest_harness_report(run: RunData) -> None:
    records = run.suite("extraction")
    if records and run.settings.get("extraction_metrics", True) is not False:
        write(run.run_dir, records)


def score_csv(path: Path) -> list[dict[str, Any]]:
    """Per (model, field) quality of an outside CSV with `pred_*` columns; an empty prediction is
    an invalid answer there (valid-only leaves it out, invalid-as-empty counts it)."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        table = list(reader)
    columns: dict[str, dict[str, str]] = {}  # model -> field -> column
    for column in header:
        match = _PRED.match(column)
        if match:
            model = match.group("model") or path.stem
            columns.setdefault(model, {})[match.group("field")] = column
    if not columns:
        raise ValueError(f"{path}: no pred_<field> columns (header: {', '.join(header)})")
    out = []
    for model, fields in sorted(columns.items()):
        for name, column in sorted(fields.items()):
            if name not in header:
                raise ValueError(f"{path}: column {column!r} has no reference column {name!r}")
            references = [row[name] or "" for row in table]
            predictions = [row[column] or "" for row in table]
            valid = [(p, r) for p, r in zip(predictions, references) if p.strip()]
            row: dict[str, Any] = {"model": model, "field": name, "n_total": len(table), "n_valid": len(valid)}
            if table:
                row.update({f"{k}_invalid_as_empty": v for k, v in quality(predictions, references).items()})
            if valid:
                row.update({f"{k}_valid_only": v for k, v in quality([p for p, _ in valid],
                                                                      [r for _, r in valid]).items()})
            out.append(row)
    return out
