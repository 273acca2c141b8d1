"""reports/<run>/report.html: one self-contained page a person can open for a finished run.

Run metadata, the scoreboard with time and resources, each pair strategy against its large model
alone, the paired statistics, one section per suite with its plots inline (the PNGs the other
reports wrote, as base64), and an item browser: each item's input, reference and every variant's
answer side by side, filterable by suite, model and correct/wrong. Nothing is fetched at view
time: the style, the script and the images are in the file. Every figure comes from the one
aggregation (report/aggregate.py, report/paired.py), never from results.jsonl read again.

Runs last among the reports (trylast), so the plots of the others are there to inline.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import fields
from html import escape
from pathlib import Path
from typing import Any

from harness.report import transcript_view
from harness.report.aggregate import Group, SummaryRow
from harness.report.hooks import RunData, hookimpl
from harness.report.paired import headlines, paired
from harness.report.resources import ModelShare

REPORT_FILE = "report.html"
MAX_ITEMS = 5000  # items in the browser; beyond that the page gets slow to open (said on the page)
_TEXT_LIMIT = 2000  # characters of one answer shown in the browser

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
main{max-width:1400px;margin:0 auto;padding:16px 24px}
h1{font-size:24px;margin:8px 0 4px}h2{font-size:19px;margin:28px 0 8px;border-bottom:1px solid #d5d9e0}
h3{font-size:15px;margin:16px 0 6px}
table{border-collapse:collapse;background:#fff;margin:6px 0 10px;font-size:13px}
th,td{border:1px solid #d5d9e0;padding:3px 7px;text-align:right;vertical-align:top}
th{background:#eef1f5}td.t,th.t{text-align:left}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;background:#fff;padding:8px 12px;
border:1px solid #d5d9e0}
dt{font-weight:600}dd{margin:0;word-break:break-word}
img{max-width:100%;background:#fff;border:1px solid #d5d9e0;margin:4px 0}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:10px}figure{margin:0}
nav a{margin-right:12px}
.ok{color:#17772d;font-weight:600}.bad{color:#b3261e;font-weight:600}.err{color:#8a5a00;font-weight:600}
.filters{background:#fff;border:1px solid #d5d9e0;padding:8px 12px;position:sticky;top:0}
.filters label{margin-right:14px}
.item{background:#fff;border:1px solid #d5d9e0;margin:8px 0;padding:8px 12px}
.item pre{white-space:pre-wrap;margin:4px 0;background:#f6f7f9;padding:6px;max-height:240px;overflow:auto}
.answers{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:8px}
.answer{border:1px solid #e1e4ea;padding:6px}
.muted{color:#5b6475}.scroll{overflow-x:auto;max-width:100%}
"""

# The item browser: renders the embedded data with textContent only (item text is untrusted).
_SCRIPT = """
(function(){
  var data = JSON.parse(document.getElementById('item-data').textContent);
  var suite = document.getElementById('f-suite'), model = document.getElementById('f-model'),
      verdict = document.getElementById('f-verdict'), search = document.getElementById('f-search'),
      list = document.getElementById('items'), count = document.getElementById('f-count');
  function option(select, value){ var o = document.createElement('option'); o.value = value;
    o.textContent = value; select.appendChild(o); }
  data.suites.forEach(function(s){ option(suite, s); });
  data.models.forEach(function(m){ option(model, m); });
  function el(tag, cls, text){ var e = document.createElement(tag); if(cls) e.className = cls;
    if(text !== undefined && text !== null) e.textContent = text; return e; }
  function render(){
    var s = suite.value, m = model.value, v = verdict.value, q = search.value.toLowerCase(), shown = 0;
    list.textContent = '';
    data.items.forEach(function(item){
      if(s && item.suite !== s) return;
      var answers = item.answers.filter(function(a){ return !m || a.model === m; });
      if(v) answers = answers.filter(function(a){ return a.verdict === v; });
      if(!answers.length) return;
      if(q && (item.input + ' ' + item.id).toLowerCase().indexOf(q) < 0) return;
      shown += 1;
      if(shown > 500) return;
      var box = el('div', 'item');
      box.appendChild(el('h3', null, item.suite + ' / ' + item.id));
      box.appendChild(el('div', 'muted', 'input'));
      box.appendChild(el('pre', null, item.input || '(no input text recorded)'));
      box.appendChild(el('div', 'muted', 'reference'));
      box.appendChild(el('pre', null, item.reference));
      var grid = el('div', 'answers');
      answers.forEach(function(a){
        var cell = el('div', 'answer');
        cell.appendChild(el('div', null, a.variant));
        cell.appendChild(el('span', a.verdict === 'correct' ? 'ok' : (a.verdict === 'wrong' ? 'bad' : 'err'),
                             a.status));
        cell.appendChild(el('pre', null, a.answer));
        showTranscript(cell, a, el);
        grid.appendChild(cell);
      });
      box.appendChild(grid);
      list.appendChild(box);
    });
    count.textContent = shown + ' items' + (shown > 500 ? ' (first 500 shown; narrow the filters)' : '');
  }
  [suite, model, verdict].forEach(function(e){ e.addEventListener('change', render); });
  search.addEventListener('input', render);
  render();
})();
"""


_FILTERS = (
    '<div class="filters"><label>suite <select id="f-suite"><option value="">all</option></select></label>'
    '<label>model <select id="f-model"><option value="">all</option></select></label>'
    '<label>answer <select id="f-verdict"><option value="">all</option><option value="correct">correct'
    '</option><option value="wrong">wrong</option><option value="error">error</option></select></label>'
    '<label>search <input id="f-search" type="search"></label> <span id="f-count" class="muted"></span></div>'
)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], text_columns: int = 3) -> str:
    head = "".join(f'<th class="t">{escape(h)}</th>' if i < text_columns else f"<th>{escape(h)}</th>"
                   for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td class="t">{escape(_fmt(c))}</td>' if i < text_columns
                                    else f"<td>{escape(_fmt(c))}</td>" for i, c in enumerate(row)) + "</tr>"
                   for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _scoreboard(rows: Sequence[SummaryRow]) -> str:
    """Every SummaryRow column that some row has a figure for (no GPU columns without a GPU)."""
    names = [f.name for f in fields(SummaryRow)]
    # A count of 0 is a figure; a resource nobody measured (None) or a cost nobody priced is not.
    kept = [n for n in names if any(getattr(r, n) is not None for r in rows)
            and (n != "cost" or any(r.cost for r in rows))]
    return _table(kept, [[getattr(r, n) for n in kept] for r in rows])


def _metadata(metadata: Mapping[str, Any]) -> str:
    facts = []
    for key in ("run_id", "started", "finished", "git_commit", "workers", "cases"):
        if metadata.get(key) not in (None, ""):
            facts.append((key, str(metadata[key])))
    models = metadata.get("models") or []
    if models:
        facts.append(("models", ", ".join(f"{m.get('name')} ({m.get('backend')})" for m in models
                                          if isinstance(m, Mapping))))
    if metadata.get("pair"):
        facts.append(("pair", " + ".join(map(str, metadata["pair"]))))
    machine = metadata.get("machine") or {}
    if isinstance(machine, Mapping) and machine:
        facts.append(("machine", ", ".join(f"{k}={v}" for k, v in machine.items() if v not in (None, ""))))
    for name, data in sorted((metadata.get("backends") or {}).items()):
        if isinstance(data, Mapping):
            facts.append((f"backend {name}", ", ".join(f"{k}={v}" for k, v in sorted(data.items())
                                                       if not isinstance(v, (Mapping, list)))))
    if metadata.get("command"):
        facts.append(("command", " ".join(map(str, metadata["command"]))))
    return "<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts) + "</dl>"


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{escape(path.name)}" src="data:image/png;base64,{data}">'
            f'<figcaption class="muted">{escape(str(path.name))}</figcaption></figure>')


def suite_plots(run_dir: Path, suite: str) -> list[Path]:
    """The PNGs other reports wrote for a suite: any under a folder named after it."""
    return sorted(p for p in run_dir.rglob("*.png") if suite in p.relative_to(run_dir).parts[:-1])


def _answer(record: Any, budget: transcript_view.PageBudget) -> dict[str, Any]:
    text = record.prediction if record.prediction is not None else (record.output or record.error or "")
    text = str(text)
    verdict = "error" if record.is_error else ("correct" if record.counts_correct else "wrong")
    return {"variant": f"{record.strategy}:{record.model}", "model": record.model, "status": record.status,
            "verdict": verdict, "answer": text if len(text) <= _TEXT_LIMIT else text[:_TEXT_LIMIT] + "…",
            **transcript_view.answer_details(record, budget)}


def item_data(groups: Sequence[Group]) -> dict[str, Any]:
    """The item browser's data: per (suite, item), its input, reference and every variant's answer."""
    items: dict[tuple[str, str], dict[str, Any]] = {}
    budget = transcript_view.PageBudget()
    for group in groups:
        for record in group.records:
            entry = items.setdefault((record.suite, record.item_id), {
                "suite": record.suite, "id": record.item_id, "input": record.input_text or "",
                "reference": record.reference or "", "answers": []})
            entry["input"] = entry["input"] or record.input_text or ""
            entry["answers"].append(_answer(record, budget))
    chosen = [items[key] for key in sorted(items)][:MAX_ITEMS]
    return {"suites": sorted({g.suite for g in groups}), "models": sorted({g.model for g in groups}),
            "items": chosen, "total": len(items)}


def _shares(shares: Sequence[ModelShare]) -> str:
    return _table(["suite", "strategy", "pair", "model", "cases", "calls", "tokens in", "tokens out",
                   "model s", "cost", "CPU s"],
                  [[s.suite, s.strategy, s.model, s.part, s.cases, s.calls, s.prompt_tokens, s.completion_tokens,
                    s.model_s, s.cost, s.cpu_s] for s in shares], text_columns=4)


def render(run: RunData, sections: Sequence[tuple[str, str]] = ()) -> str:
    """The page's HTML. `sections` are extra (title, html) blocks from suite reports."""
    groups, rows = run.groups, [g.row for g in run.groups]
    run_id = str(run.metadata.get("run_id") or run.run_dir.name)
    parts = [f"<h1>Benchmark run {escape(run_id)}</h1>",
             ('<nav><a href="#run">Run</a><a href="#scoreboard">Scoreboard</a>'
              '<a href="#statistics">Statistics</a><a href="#suites">Suites</a><a href="#browser">Items</a></nav>'),
             '<h2 id="run">Run</h2>', _metadata(run.metadata),
             '<h2 id="scoreboard">Scoreboard</h2>', _scoreboard(rows)]
    shares = [s for g in groups for s in g.shares]
    if shares:
        parts += ["<h3>Per model in pair strategies</h3>", _shares(shares)]
    heads = headlines(groups)
    if heads:
        parts += ["<h2>Pair strategies against the large model alone</h2>",
                  _table(["suite", "strategy", "pair", "large", "items", "accuracy", "large alone",
                          "accuracy diff (points)", "95% CI low", "95% CI high", "McNemar p", "cost saved %",
                          "large tokens saved %", "latency overhead %", "settled by small"],
                         [[h.suite, h.strategy, h.model, h.large, h.items, h.accuracy, h.large_accuracy,
                           h.accuracy_diff_points, h.accuracy_diff_ci_low, h.accuracy_diff_ci_high, h.p_value,
                           h.cost_saved_pct, h.large_tokens_saved_pct, h.latency_overhead_pct,
                           h.settled_by_small] for h in heads], text_columns=4)]
    pairs = paired(groups)
    parts.append('<h2 id="statistics">Paired statistics</h2>')
    if pairs:
        parts += [('<p class="muted">Every two variants of a suite on the items both scored: B minus A, '
                   "its 95% interval (adjusted Wald) and the exact McNemar p-value.</p>"),
                  _table(["suite", "A", "B", "items", "both right", "A only", "B only", "neither", "accuracy A",
                          "accuracy B", "B - A", "95% CI low", "95% CI high", "McNemar p"],
                         [[p.suite, p.a, p.b, p.items, p.both_right, p.a_only, p.b_only, p.neither, p.accuracy_a,
                           p.accuracy_b, p.difference, p.ci_low, p.ci_high, p.p_value] for p in pairs])]
    else:
        parts.append('<p class="muted">One variant per suite: nothing to pair.</p>')
    parts.append('<h2 id="suites">Suites</h2>')
    for suite in sorted({g.suite for g in groups}):
        parts.append(f'<h2 id="suite-{escape(suite)}">Suite: {escape(suite)}</h2>')
        parts.append(_scoreboard([g.row for g in groups if g.suite == suite]))
        plots = suite_plots(run.run_dir, suite)
        if plots:
            parts.append('<div class="plots">' + "".join(_image(p) for p in plots) + "</div>")
    for title, block in sections:
        parts += [f"<h2>{escape(title)}</h2>", block]
    data = item_data(groups)
    note = (f' (the first {MAX_ITEMS} of {data["total"]})' if data["total"] > MAX_ITEMS else "")
    payload = json.dumps(data, sort_keys=True).replace("</", "<\\/")
    parts += ['<h2 id="browser">Items</h2>',
              f'<p class="muted">Every item with its input, reference and each answer{escape(note)}.</p>',
              _FILTERS,
              '<div id="items"></div>',
              f'<script type="application/json" id="item-data">{payload}</script>',
              f"<script>{transcript_view.SCRIPT}{_SCRIPT}</script>"]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Benchmark run {escape(run_id)}</title><style>{_STYLE}{transcript_view.STYLE}</style></head>"
            f"<body><main>{''.join(parts)}</main></body></html>\n")


def write(run: RunData) -> Path:
    path = run.run_dir / REPORT_FILE
    path.write_text(render(run), encoding="utf-8")
    return path


# trylast: called after every other report (pluggy's order), so their plots exist to inline.
@hookimpl(trylast=True)
def pytest_harness_report(run: RunData) -> None:
    if run.records:
        write(run)
