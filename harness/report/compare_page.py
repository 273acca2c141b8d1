"""One self-contained page comparing runs: `harness compare A B --html`, `harness report --runs A,B,C`.

The first run is the baseline; every other run is compared with it, each suite and model matched
as `harness compare` matches them (report/paired.py: match_runs, by suite, strategy and item,
never by test id). Per matched pair:

- the deltas: both accuracies on the items both scored, B minus A with its 95 % interval and the
  exact McNemar p-value (paired.compare_pair, the figures `harness compare` prints);
- the flipped items on top, right -> wrong first, then wrong -> right (paired.flips, the a_only
  and b_only items of the same comparison), both answers side by side with the reference and the
  input folded;
- for log-likelihood suites (records with extra.loglikelihoods), the change in each choice's
  log-likelihood on every flipped item, and the mean change of the reference choice's over all
  items both scored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from harness.core.record import CaseRecord
from harness.report import html_columns
from harness.report.aggregate import Group
from harness.report.html import page
from harness.report.html_table import Column, integer, table
from harness.report.paired import PairedComparison, compare_pair, flips, match_runs
from harness.report.stats import mean
from harness.report.verdict import format_p

MAX_FLIPS = 200  # flipped items shown per matched pair (the count of all of them is on the page)
_ANSWER_LIMIT = 1500

STYLE = """
table.flips{width:100%;table-layout:fixed}table.flips td{text-align:left}
table.flips th:nth-child(1){width:18%}table.flips th:nth-child(2){width:9%}
table.flips pre{white-space:pre-wrap;margin:0;max-height:180px;overflow:auto;font-size:12px}
tr.flip.loss td:first-child{border-left:4px solid #b3261e}tr.flip.gain td:first-child{border-left:4px solid #17772d}
.delta{font-size:15px;margin:4px 0 8px}
"""


@dataclass
class Run:
    label: str  # the run id, or the folder's name
    records: list[CaseRecord]
    metadata: Mapping[str, Any] = field(default_factory=dict)


def label_runs(runs: Sequence[Run]) -> list[Run]:
    """The same runs, labels made unique (a run compared with itself gets `#2`)."""
    seen: dict[str, int] = {}
    out = []
    for run in runs:
        seen[run.label] = seen.get(run.label, 0) + 1
        label = run.label if seen[run.label] == 1 else f"{run.label}#{seen[run.label]}"
        out.append(Run(label, run.records, run.metadata))
    return out


def _ll(record: CaseRecord) -> dict[str, float | None] | None:
    values = record.extra.get("loglikelihoods")
    if not isinstance(values, Mapping) or not values:
        return None
    return {str(k): float(v) if isinstance(v, (int, float)) else None for k, v in values.items()}


def reference_ll_change(pairs: Sequence[tuple[CaseRecord, CaseRecord]]) -> float | None:
    """Mean change (B minus A) of the reference choice's log-likelihood over pairs that have both."""
    changes = []
    for a, b in pairs:
        la, lb = _ll(a), _ll(b)
        ref = a.reference or ""
        if la and lb and la.get(ref) is not None and lb.get(ref) is not None:
            changes.append((lb[ref] or 0.0) - (la[ref] or 0.0))
    return mean(changes)


def _answer(record: CaseRecord) -> str:
    text = str(record.prediction if record.prediction is not None else (record.output or record.error or ""))
    return text if len(text) <= _ANSWER_LIMIT else text[:_ANSWER_LIMIT] + "…"


def _ll_changes(a: CaseRecord, b: CaseRecord) -> tuple[str, float | None]:
    """Each choice's log-likelihood in A and B and the change, one line per choice (the reference
    marked), and the reference choice's change (the cell's sort key)."""
    la, lb = _ll(a), _ll(b)
    if not la or not lb:
        return "", None

    def shown(value: float | None) -> str:
        return "–" if value is None else f"{value:.2f}"

    lines, key = [], None
    for choice in sorted(set(la) | set(lb)):
        x, y = la.get(choice), lb.get(choice)
        delta = None if x is None or y is None else y - x
        if delta is not None and abs(delta) < 0.005:
            delta = 0.0  # shown as +0.00, not -0.00
        if choice == a.reference:
            key = delta
        mark = "*" if choice == a.reference else " "
        lines.append(f"{choice}{mark} {shown(x)} → {shown(y)}  ({'–' if delta is None else f'{delta:+.2f}'})")
    return "\n".join(lines), key


def _flip_row(a: CaseRecord, b: CaseRecord, with_ll: bool) -> str:
    lost = a.counts_correct and not b.counts_correct
    change = "right → wrong" if lost else "wrong → right"
    text, reference = a.input_text or b.input_text or "", a.reference or ""
    folded = f"<details><summary>input</summary><pre>{escape(text)}</pre></details>" if text else ""
    cells = [f'<td class="t" data-v="{escape(a.item_id, quote=True)}">{escape(a.item_id)}{folded}</td>',
             f'<td class="t {"bad" if lost else "ok"}" data-v="{int(lost)}">{change}</td>',
             f'<td class="t" data-v="{escape(reference, quote=True)}"><pre>{escape(reference)}</pre></td>',
             f'<td class="t" data-v="{escape(a.status)}"><pre>{escape(_answer(a))}</pre></td>',
             f'<td class="t" data-v="{escape(b.status)}"><pre>{escape(_answer(b))}</pre></td>']
    if with_ll:
        lines, key = _ll_changes(a, b)
        cells.append(f'<td class="t" data-v="{"" if key is None else repr(key)}"><pre>{escape(lines)}</pre></td>')
    kind = "loss" if lost else "gain"
    return f'<tr class="flip {kind}" data-item="{escape(a.item_id, quote=True)}">{"".join(cells)}</tr>'


def _flips_table(table_id: str, flipped: Sequence[tuple[CaseRecord, CaseRecord]]) -> str:
    with_ll = any(_ll(a) and _ll(b) for a, b in flipped)
    heads = [("item", "text"), ("change", "num"), ("reference", "text"), ("answer A", "text"), ("answer B", "text")]
    if with_ll:
        heads.append(("log-likelihood per choice: A → B (change); * the reference", "num"))
    head = "".join(f'<th class="sortable t" data-type="{kind}" aria-sort="none">{escape(name)}</th>'
                   for name, kind in heads)
    body = "".join(_flip_row(a, b, with_ll) for a, b in flipped)
    return (f'<div class="scroll"><table id="{escape(table_id, quote=True)}" class="flips sortable-table">'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")


def _pair_section(first: Group, second: Group, stats: PairedComparison) -> str:
    flipped = flips(first, second)
    # right -> wrong on top: a regression is what a comparison is usually opened for
    flipped.sort(key=lambda pair: (not pair[0].counts_correct, pair[0].item_id))
    title = (first.variant if first.variant == second.variant else f"{first.variant} → {second.variant}")
    table_key = f"{first.suite}-{first.variant}-{second.variant}"
    parts = [f'<h3 id="{escape("pair-" + table_key, quote=True)}">'
             f"{escape(first.suite)}: {escape(title)}</h3>"]
    if stats.difference is not None:
        interval = f"[{100 * (stats.ci_low or 0.0):+.1f}, {100 * (stats.ci_high or 0.0):+.1f}]"
        parts.append(f'<p class="delta">B − A: <b>{100 * stats.difference:+.1f} points</b> {interval}, '
                     f"p = {format_p(stats.p_value)}, {stats.items} items "
                     f"({100 * (stats.accuracy_a or 0.0):.1f}% → {100 * (stats.accuracy_b or 0.0):.1f}%); "
                     f"{stats.a_only} right → wrong, {stats.b_only} wrong → right</p>")
    else:
        parts.append('<p class="delta">No item scored in both runs.</p>')
    a_by, b_by = {r.item_id: r for r in first.records}, {r.item_id: r for r in second.records}
    both = [(a_by[i], b_by[i]) for i in sorted(set(a_by) & set(b_by)) if a_by[i].scored and b_by[i].scored]
    change = reference_ll_change(both)
    if change is not None:
        parts.append(f'<p class="muted">Log-likelihood of the reference choice: {change:+.3f} on average '
                     "(B minus A, nats, over the items both scored); each flipped item lists every choice's.</p>")
    if flipped:
        more = f" (the first {MAX_FLIPS} of {len(flipped)})" if len(flipped) > MAX_FLIPS else ""
        parts.append(f'<p class="muted">Flipped items{more}, right → wrong first:</p>'
                     + _flips_table(f"flips-{table_key}", flipped[:MAX_FLIPS]))
    return "".join(parts)


def _runs_table(runs: Sequence[Run]) -> str:
    sides = {id(run): "A" if index == 0 else "B" for index, run in enumerate(runs)}
    columns = [
        Column("side", lambda r: sides[id(r)], is_text=True),
        Column("run", lambda r: r.label, is_text=True),
        Column("started", lambda r: str(r.metadata.get("started") or "") or None, is_text=True),
        Column("commit", lambda r: str(r.metadata.get("git_commit") or "")[:12] or None, is_text=True),
        Column("models", lambda r: ", ".join(sorted({c.model for c in r.records})), is_text=True),
        Column("cases", lambda r: len(r.records), integer),
    ]
    return table("runs", columns, runs)


def render(runs: Sequence[Run]) -> str:
    """The page: the runs, then per later run against the first, the deltas and flips."""
    if len(runs) < 2:
        raise ValueError(f"comparing runs needs two or more, got {len(runs)}")
    runs = label_runs(runs)
    base = runs[0]
    parts = [f"<h1>Comparing runs: {escape(' · '.join(r.label for r in runs))}</h1>",
             f'<p class="muted">A is the baseline, {escape(base.label)}; each other run is B against it. Cases '
             "match by suite, strategy and item (a model against itself where both runs have it, else every "
             "model against every model).</p>", _runs_table(runs)]
    for index, other in enumerate(runs[1:], start=1):
        matched = match_runs(base.records, other.records)
        results = [compare_pair(a, b) for a, b in matched]
        parts.append(f'<h2 id="vs-{index}">{escape(base.label)} (A) → {escape(other.label)} (B)</h2>')
        if not results:
            parts.append('<p class="muted">No suite and strategy in common: nothing to compare.</p>')
            continue
        parts.append(html_columns.paired_table(f"deltas-{index}", results))
        parts += [_pair_section(a, b, stats) for (a, b), stats in zip(matched, results)]
    return page("Comparing " + ", ".join(r.label for r in runs), "".join(parts), STYLE)


def write(path: str | Path, runs: Sequence[Run]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(runs), encoding="utf-8")
    return path
