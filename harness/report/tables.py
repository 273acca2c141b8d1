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

from harness.report.aggregate import SummaryRow, aggregate
from harness.report.paired import headlines

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


# The resources table: (header, SummaryRow field, format). A column no row has a figure for is
# left out (a machine without a GPU shows no GPU columns, not zeros); cost likewise when nothing
# was priced.
_RESOURCE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("wall", "wall_s", "{:.1f} s"),
    ("p50", "latency_p50_s", "{:.3f} s"),
    ("p95", "latency_p95_s", "{:.3f} s"),
    ("tok in", "prompt_tokens", "{:d}"),
    ("tok out", "completion_tokens", "{:d}"),
    ("cost", "cost", "${:.4f}"),
    ("CPU", "cpu_s", "{:.1f} s"),
    ("user", "cpu_user_s", "{:.1f} s"),
    ("sys", "cpu_system_s", "{:.1f} s"),
    ("CPU %", "cpu_percent_mean", "{:.0f}"),
    ("CPU % peak", "cpu_percent_peak", "{:.0f}"),
    ("RSS", "rss_mean_mb", "{:.0f} MB"),
    ("RSS peak", "rss_peak_mb", "{:.0f} MB"),
    ("GPU %", "gpu_util_mean", "{:.0f}"),
    ("GPU % peak", "gpu_util_peak", "{:.0f}"),
    ("GPU mem", "gpu_memory_mean_mb", "{:.0f} MB"),
    ("GPU mem peak", "gpu_memory_peak_mb", "{:.0f} MB"),
    ("GPU energy", "gpu_energy_j", "{:.1f} J"),
    # The run's speed beside the engine's own (report/engine_share.py): the share is of its limit.
    ("in tok/s", "prompt_tokens_per_s", "{:.1f}"),
    ("engine in", "engine_prompt_tokens_per_s", "{:.1f}"),
    ("% engine in", "prompt_engine_share", "{:.0%}"),
    ("out tok/s", "completion_tokens_per_s", "{:.1f}"),
    ("engine out", "engine_decode_tokens_per_s", "{:.1f}"),
    ("% engine out", "decode_engine_share", "{:.0%}"),
)


def _has_data(rows: Sequence[SummaryRow], name: str) -> bool:
    values = [getattr(row, name) for row in rows]
    if name == "cost":
        return any(v for v in values)
    return any(v is not None for v in values)


def resource_columns(rows: Sequence[SummaryRow]) -> list[tuple[str, str, str]]:
    return [column for column in _RESOURCE_COLUMNS if _has_data(rows, column[1])]


def resource_cells(row: SummaryRow, columns: Sequence[tuple[str, str, str]]) -> list[str]:
    cells = [row.model, row.suite, row.strategy]
    for _, name, form in columns:
        value = getattr(row, name)
        cells.append(_MISSING if value is None else form.format(value))
    return cells


def resources_table(rows: Sequence[SummaryRow]) -> str:
    """Time, tokens, cost and machine resources per row, fixed width; only measured columns."""
    columns = resource_columns(rows)
    if not rows or not columns:
        return ""
    names = ["model", "suite", "strategy"] + [header for header, _, _ in columns]
    body = [resource_cells(row, columns) for row in rows]
    widths = [max([len(name)] + [len(cells[i]) for cells in body]) for i, name in enumerate(names)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(w) if i < 3 else cell.rjust(w)
                         for i, (cell, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(names), "  ".join("-" * w for w in widths)] + [line(c) for c in body]) + "\n"


def _fmt(value: float | None, form: str) -> str:
    return _MISSING if value is None else form.format(value)


def headline_lines(heads: Sequence[Any]) -> list[str]:
    """One sentence per pair strategy against its large model alone (paired.Headline)."""
    lines = []
    for h in heads:
        interval = (f" [{h.accuracy_diff_ci_low:+.1f}, {h.accuracy_diff_ci_high:+.1f}]"
                    if h.accuracy_diff_ci_low is not None else "")
        lines.append(
            f"{h.suite} {h.strategy} {h.model} vs {h.large} alone on {h.items} items: "
            f"accuracy {_fmt(h.accuracy_diff_points, '{:+.1f}')} points{interval}, "
            f"cost saved {_fmt(h.cost_saved_pct, '{:.0f}%')}, "
            f"large-model tokens saved {_fmt(h.large_tokens_saved_pct, '{:.0f}%')}, "
            f"latency overhead {_fmt(h.latency_overhead_pct, '{:+.0f}%')}")
    return lines


def markdown_sections(rows: Sequence[SummaryRow], shares: Sequence[Any], heads: Sequence[Any],
                      paired: Sequence[Any]) -> str:
    """summary.md's sections after the scoreboard: resources, per-model shares of pair
    strategies, the pair headline, and paired differences."""
    out: list[str] = []
    columns = resource_columns(rows)
    if rows and columns:
        names = ["model", "suite", "strategy"] + [header for header, _, _ in columns]
        out += ["", "## Time and resources", "", "| " + " | ".join(names) + " |",
                "|" + "|".join("---" if i < 3 else "---:" for i in range(len(names))) + "|"]
        out += ["| " + " | ".join(_md_cell(c) for c in resource_cells(row, columns)) + " |" for row in rows]
    if shares:
        out += ["", "## Per model in pair strategies", "",
                "| suite | strategy | pair | model | cases | calls | tok in | tok out | model time | cost | CPU |",
                "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        out += [f"| {s.suite} | {s.strategy} | {_md_cell(s.model)} | {_md_cell(s.part)} | {s.cases} | {s.calls} | "
                f"{s.prompt_tokens} | {s.completion_tokens} | {s.model_s:.2f} s | ${s.cost:.4f} | "
                f"{_fmt(s.cpu_s, '{:.1f} s')} |" for s in shares]
    if heads:
        out += ["", "## Pair strategies against the large model alone", ""]
        out += [f"- {_md_cell(line)}" for line in headline_lines(heads)]
    if paired:
        out += ["", "## Paired differences (same items; exact McNemar)", "",
                "| suite | A | B | items | A only | B only | B - A | 95% CI | p |",
                "|---|---|---|---:|---:|---:|---:|---:|---:|"]
        out += [f"| {p.suite} | {_md_cell(p.a)} | {_md_cell(p.b)} | {p.items} | {p.a_only} | {p.b_only} | "
                f"{_fmt(p.difference, '{:+.3f}')} | "
                f"[{_fmt(p.ci_low, '{:+.2f}')}, {_fmt(p.ci_high, '{:+.2f}')}] | {_fmt(p.p_value, '{:.3g}')} |"
                for p in paired]
    return "\n".join(out) + ("\n" if out else "")


def terminal_extras(rows: Sequence[SummaryRow], records: Sequence[Any]) -> str:
    """What the terminal shows after the scoreboard: the resources table and each pair
    strategy's headline against its large model alone."""
    parts = [resources_table(rows)]
    parts += [line + "\n" for line in headline_lines(headlines(aggregate(records)))]
    return "".join(parts)
