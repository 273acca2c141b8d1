"""The seven extraction plots, drawn from the metrics rows (so re-scoring redraws them).

Quality bars, a models x metrics heatmap, validation rate, a radar of the quality metrics,
runtime, tokens (input and output stacked) and throughput. The quality bars, heatmap and radar
are drawn once averaged over fields and once per field (quality_<field>.png, heatmap_<field>.png,
radar_<field>.png): an average hides a field every model gets wrong. Quality figures are shown on one 0-1
axis: BLEU and chrF++ (0-100 in the CSV) are divided by 100, and a metric no model has (BERTScore
without a model) is left out. Figures are drawn on matplotlib's Agg canvas directly: no pyplot
state, no display needed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.report.extraction_table import QUALITY, MetricRow

PLOTS = ("quality_bars", "heatmap", "validation_rate", "radar", "runtime", "tokens", "throughput")
LABELS = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "bleu": "BLEU",
          "chrf": "chrF++", "bertscore_f1": "BERTScore F1", "exact_match": "exact match"}


def _models(rows: Sequence[MetricRow]) -> list[str]:
    return list(dict.fromkeys(row.model for row in rows))


def _per_model(rows: Sequence[MetricRow]) -> dict[str, MetricRow]:
    """The first row of each model: performance figures repeat on every field's row."""
    return {model: next(r for r in rows if r.model == model) for model in _models(rows)}


def quality_means(rows: Sequence[MetricRow]) -> tuple[list[str], dict[str, list[float]]]:
    """Metrics that have values, and per model their mean over fields on a 0-1 scale."""
    metrics = [m for m in QUALITY if any(getattr(r, m) is not None for r in rows)]
    means: dict[str, list[float]] = {}
    for model in _models(rows):
        mine = [r for r in rows if r.model == model]
        means[model] = []
        for metric in metrics:
            values = [getattr(r, metric) / QUALITY[metric] for r in mine if getattr(r, metric) is not None]
            means[model].append(sum(values) / len(values) if values else 0.0)
    return metrics, means


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def _no_quality(path: Path, title: str) -> Path:
    # Every case of every model failed: the plot still exists, and says so.
    figure = Figure(figsize=(5, 3))
    figure.text(0.5, 0.5, "no answered rows to score", ha="center", va="center")
    figure.suptitle(title)
    return _save(figure, path)


def _bars(path: Path, title: str, ylabel: str, values: dict[str, float]) -> Path:
    figure = Figure(figsize=(max(4.0, 1.2 * len(values) + 2), 4))
    axes = figure.add_subplot()
    bars = axes.bar(list(values), list(values.values()), color="tab:blue")
    axes.bar_label(bars, fmt="%.3g")
    axes.set_title(title)
    axes.set_ylabel(ylabel)
    axes.tick_params(axis="x", labelrotation=20)
    return _save(figure, path)


def _over(field: str | None) -> str:
    return "mean over fields" if field is None else f"field {field}"


def quality_bars(rows: Sequence[MetricRow], path: Path, field: str | None = None) -> Path:
    metrics, means = quality_means(rows)
    title = "Extraction quality per model" + ("" if field is None else f": {field}")
    if not metrics:
        return _no_quality(path, title)
    figure = Figure(figsize=(max(6.0, 1.1 * len(metrics) * max(1, len(means))), 4.5))
    axes = figure.add_subplot()
    width = 0.8 / max(1, len(means))
    for index, (model, values) in enumerate(means.items()):
        axes.bar([m + index * width for m in range(len(metrics))], values, width, label=model)
    axes.set_xticks([m + width * (len(means) - 1) / 2 for m in range(len(metrics))],
                    [LABELS[m] for m in metrics])
    axes.set_ylim(0, 1.05)
    axes.set_ylabel(f"{_over(field)} (BLEU, chrF++ / 100)")
    axes.set_title(title)
    axes.legend(fontsize="small")
    return _save(figure, path)


def heatmap(rows: Sequence[MetricRow], path: Path, field: str | None = None) -> Path:
    metrics, means = quality_means(rows)
    if not metrics:
        return _no_quality(path, "Models x metrics" + ("" if field is None else f": {field}"))
    models = list(means)
    figure = Figure(figsize=(1.3 * len(metrics) + 3, 0.6 * len(models) + 2))
    axes = figure.add_subplot()
    image = axes.imshow([means[m] for m in models], vmin=0, vmax=1, cmap="viridis", aspect="auto")
    axes.set_xticks(range(len(metrics)), [LABELS[m] for m in metrics], rotation=30, ha="right")
    axes.set_yticks(range(len(models)), models)
    for y, model in enumerate(models):
        for x, value in enumerate(means[model]):
            axes.text(x, y, f"{value:.2f}", ha="center", va="center",
                      color="black" if value > 0.6 else "white", fontsize="small")
    figure.colorbar(image, ax=axes)
    axes.set_title(f"Models x metrics ({_over(field)}, 0-1)")
    return _save(figure, path)


def validation_rate(rows: Sequence[MetricRow], path: Path) -> Path:
    rates = {m: (r.n_valid / r.n_total if r.n_total else 0.0) for m, r in _per_model(rows).items()}
    return _bars(path, "JSON validation rate", "valid answers / answered rows", rates)


def radar(rows: Sequence[MetricRow], path: Path, field: str | None = None) -> Path:
    metrics, means = quality_means(rows)
    if not metrics:
        return _no_quality(path, "Quality profile" + ("" if field is None else f": {field}"))
    angles = [2 * math.pi * i / len(metrics) for i in range(len(metrics))]
    figure = Figure(figsize=(6, 6))
    axes = figure.add_subplot(projection="polar")
    for model, values in means.items():
        axes.plot(angles + angles[:1], values + values[:1], label=model)
        axes.fill(angles + angles[:1], values + values[:1], alpha=0.15)
    axes.set_xticks(angles, [LABELS[m] for m in metrics])
    axes.set_ylim(0, 1)
    axes.set_title(f"Quality profile ({_over(field)}, 0-1)")
    axes.legend(loc="lower right", fontsize="small", bbox_to_anchor=(1.1, -0.1))
    return _save(figure, path)


def runtime(rows: Sequence[MetricRow], path: Path) -> Path:
    return _bars(path, "Runtime (time in model calls)", "seconds",
                 {m: r.runtime_s for m, r in _per_model(rows).items()})


def tokens(rows: Sequence[MetricRow], path: Path) -> Path:
    per_model = _per_model(rows)
    figure = Figure(figsize=(max(4.0, 1.2 * len(per_model) + 2), 4))
    axes = figure.add_subplot()
    names = list(per_model)
    inputs = [per_model[m].tokens_in for m in names]
    axes.bar(names, inputs, label="input tokens", color="tab:blue")
    axes.bar(names, [per_model[m].tokens_out for m in names], bottom=inputs, label="output tokens",
             color="tab:orange")
    axes.set_title("Tokens per model")
    axes.set_ylabel("tokens")
    axes.legend(fontsize="small")
    return _save(figure, path)


def throughput(rows: Sequence[MetricRow], path: Path) -> Path:
    return _bars(path, "Throughput", "output tokens per second",
                 {m: r.tokens_per_sec or 0.0 for m, r in _per_model(rows).items()})


PER_FIELD = ("quality", "heatmap", "radar")


def field_file(field: str) -> str:
    """A field name as part of a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", field)


def write_plots(rows: Sequence[MetricRow], folder: Path) -> list[Path]:
    """The seven PNGs in folder, named as PLOTS, then quality_, heatmap_ and radar_<field>.png for
    each field; none when there are no rows."""
    if not rows:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    drawers = {"quality_bars": quality_bars, "heatmap": heatmap, "validation_rate": validation_rate,
               "radar": radar, "runtime": runtime, "tokens": tokens, "throughput": throughput}
    written = [drawers[name](rows, folder / f"{name}.png") for name in PLOTS]
    per_field = {"quality": quality_bars, "heatmap": heatmap, "radar": radar}
    for field in dict.fromkeys(row.field for row in rows):
        mine = [row for row in rows if row.field == field]
        written += [per_field[kind](mine, folder / f"{kind}_{field_file(field)}.png", field) for kind in PER_FIELD]
    return written
