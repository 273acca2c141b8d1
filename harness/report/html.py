"""reports/<run>/report.html: one self-contained page a person can open for a finished run.

A verdict per suite at the top (report/verdict.py: which variant to pick, and what it costs), the
scoreboard with time and resources, each pair strategy against its large model alone, the paired
statistics, one section per suite with its frontier plots (report/frontier.py) and the PNGs the
other reports wrote inline (base64), an item browser (each item's input, reference and every
variant's answer side by side, filterable by suite, model and correct/wrong, a page at a time),
and the run's metadata with each hosted model's load time and memory. Errors count crashes (a
model's host died) and say how many. Tables sort by a click on a header and fold wide detail
away (report/html_table.py). Nothing is fetched at view time: the style, the scripts and the
images are in the file. Every figure comes from the one aggregation (report/aggregate.py,
report/paired.py), never from results.jsonl read again.

Runs last among the reports (trylast), so the plots of the others are there to inline.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from harness.report import html_columns, transcript_view
from harness.report.aggregate import Group, by_suite
from harness.report.engine_share import engine_lines, with_engine
from harness.report.frontier import FRONTIER_STYLE, suite_frontier
from harness.report.hooks import RunData, hookimpl
from harness.report.html_table import SORT_SCRIPT, TABLE_STYLE
from harness.report.paired import headlines, paired
from harness.report.routes import labs, shown_points
from harness.report.verdict import Verdict, on_common_items, suite_verdict
from harness.report.write import model_loads

REPORT_FILE = "report.html"
MAX_ITEMS = 50000  # items in the browser (the whole MMLU test split is 14,042); beyond, said on the page
_TEXT_LIMIT = 2000  # characters of one answer shown in the browser
PAGE_SIZE = 50  # items the browser shows at a time: building the DOM is what costs, not the data

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
main{max-width:1280px;margin:0 auto;padding:16px 24px;box-sizing:border-box}
h1{font-size:24px;margin:8px 0 4px}h2{font-size:19px;margin:28px 0 8px;border-bottom:1px solid #d5d9e0}
h3{font-size:15px;margin:16px 0 6px}
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
.muted{color:#5b6475}
.verdicts{list-style:none;padding:0;margin:8px 0}
.verdict{background:#fff;border:1px solid #d5d9e0;border-left:4px solid #3b5bdb;padding:8px 12px;margin:6px 0}
.verdict.chance{border-left-color:#b3261e}.verdict .flag{color:#b3261e;font-weight:600}
.pager button{margin:0 4px}
""" + TABLE_STYLE + FRONTIER_STYLE + transcript_view.STYLE

# The item browser: renders the embedded data with textContent only (item text is untrusted).
# Filtering runs over every item; only PAGE_SIZE boxes are built at a time (building the DOM of
# thousands of items is what made a big page slow), with buttons for the pages before and after.
_SCRIPT = """
(function(){
  var data = JSON.parse(document.getElementById('item-data').textContent);
  var suite = document.getElementById('f-suite'), model = document.getElementById('f-model'),
      verdict = document.getElementById('f-verdict'), search = document.getElementById('f-search'),
      list = document.getElementById('items'), count = document.getElementById('f-count'),
      prev = document.getElementById('f-prev'), next = document.getElementById('f-next');
  var pageSize = parseInt(list.getAttribute('data-page-size'), 10), page = 0, matches = [];
  function option(select, value){ var o = document.createElement('option'); o.value = value;
    o.textContent = value; select.appendChild(o); }
  data.suites.forEach(function(s){ option(suite, s); });
  data.models.forEach(function(m){ option(model, m); });
  function el(tag, cls, text){ var e = document.createElement(tag); if(cls) e.className = cls;
    if(text !== undefined && text !== null) e.textContent = text; return e; }
  // One item's box: its input, reference and the answers that passed the filters.
  function itemBox(item, answers){
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
    return box;
  }
  function filter(){
    var s = suite.value, m = model.value, v = verdict.value, q = search.value.toLowerCase();
    matches = [];
    data.items.forEach(function(item){
      if(s && item.suite !== s) return;
      var answers = item.answers.filter(function(a){ return !m || a.model === m; });
      if(v) answers = answers.filter(function(a){ return a.verdict === v; });
      if(!answers.length) return;
      if(q && (item.input + ' ' + item.id).toLowerCase().indexOf(q) < 0) return;
      matches.push([item, answers]);
    });
    page = 0;
    show();
  }
  function show(){
    var first = page * pageSize, last = Math.min(matches.length, first + pageSize);
    list.textContent = '';
    for(var i = first; i < last; i++) list.appendChild(itemBox(matches[i][0], matches[i][1]));
    count.textContent = matches.length + ' items' +
      (matches.length > pageSize ? ', showing ' + (first + 1) + '-' + last : '');
    prev.disabled = page === 0;
    next.disabled = last >= matches.length;
  }
  prev.addEventListener('click', function(){ page -= 1; show(); list.scrollIntoView(); });
  next.addEventListener('click', function(){ page += 1; show(); list.scrollIntoView(); });
  [suite, model, verdict].forEach(function(e){ e.addEventListener('change', filter); });
  var typing;
  search.addEventListener('input', function(){ clearTimeout(typing); typing = setTimeout(filter, 150); });
  filter();
  document.body.setAttribute('data-ready', '1');  // tests and timings wait for this
  if(window.performance && performance.mark) performance.mark('items-ready');
})();
"""


_FILTERS = (
    '<div class="filters"><label>suite <select id="f-suite"><option value="">all</option></select></label>'
    '<label>model <select id="f-model"><option value="">all</option></select></label>'
    '<label>answer <select id="f-verdict"><option value="">all</option><option value="correct">correct'
    '</option><option value="wrong">wrong</option><option value="error">error</option></select></label>'
    '<label>search <input id="f-search" type="search"></label> <span id="f-count" class="muted"></span>'
    '<span class="pager"><button id="f-prev" type="button">previous</button>'
    '<button id="f-next" type="button">next</button></span></div>'
)


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


def _verdicts(found: Sequence[Verdict]) -> str:
    """The verdict of each suite, one sentence each; a suite near chance is marked."""
    lines = []
    for v in found:
        cls = "verdict chance" if v.near_chance else "verdict"
        flag = '<span class="flag">near chance </span>' if v.near_chance else ""
        lines.append(f'<li class="{cls}" data-suite="{escape(v.suite, quote=True)}">{flag}{escape(v.sentence())}</li>')
    note = ('<p class="muted">Per suite, on the items every variant answered: the most accurate variant, and '
            "the cheapest whose accuracy is not significantly lower (exact McNemar p &ge; 0.05), with the paired "
            "difference, its 95% interval and what it uses of the best's resources.</p>")
    return note + '<ul class="verdicts">' + "".join(lines) + "</ul>"


def item_browser(groups: Sequence[Group]) -> str:
    """The item browser: the filters, an empty list the script fills a page at a time, the data."""
    data = item_data(groups)
    note = (f' (the first {MAX_ITEMS} of {data["total"]})' if data["total"] > MAX_ITEMS else "")
    payload = json.dumps(data, sort_keys=True, separators=(",", ":")).replace("</", "<\\/")
    return "".join(['<h2 id="browser">Items</h2>',
                    f'<p class="muted">Every item with its input, reference and each answer{escape(note)}.</p>',
                    _FILTERS,
                    f'<div id="items" data-page-size="{PAGE_SIZE}"></div>',
                    f'<script type="application/json" id="item-data">{payload}</script>',
                    f"<script>{transcript_view.SCRIPT}{_SCRIPT}</script>"])


def render(run: RunData, sections: Sequence[tuple[str, str]] = ()) -> str:
    """The page's HTML. `sections` are extra (title, html) blocks from suite reports."""
    groups, rows = run.groups, with_engine([g.row for g in run.groups], run.metadata)
    row_of = {g.key: row for g, row in zip(groups, rows)}
    suites = sorted(by_suite(groups).items())
    common = {suite: on_common_items(members) for suite, members in suites}  # verdicts and frontiers share them
    run_id = str(run.metadata.get("run_id") or run.run_dir.name)
    parts = [f"<h1>Benchmark run {escape(run_id)}</h1>",
             ('<nav><a href="#verdicts">Verdicts</a><a href="#scoreboard">Scoreboard</a>'
              '<a href="#statistics">Statistics</a><a href="#suites">Suites</a><a href="#browser">Items</a>'
              '<a href="#run">Run</a></nav>'),
             '<h2 id="verdicts">Verdicts</h2>', _verdicts([suite_verdict(s, m, common[s]) for s, m in suites]),
             '<h2 id="scoreboard">Scoreboard</h2>', html_columns.scoreboard("scoreboard-table", rows)]
    shares = [s for g in groups for s in g.shares]
    if shares:
        parts += ["<h3>Per model in pair strategies</h3>", html_columns.shares_table("shares-table", shares)]
    heads = headlines(groups)
    if heads:
        parts += ["<h2>Pair strategies against the large model alone</h2>",
                  html_columns.headline_table("headlines-table", heads)]
    decision = run.metadata.get("decision")
    if isinstance(decision, Mapping) and decision.get("suites"):  # --decide (harness/run/decide.py)
        parts += ["<h2>Decision</h2>",
                  html_columns.decision_table("decision-table", sorted(decision["suites"].items()))]
    for index, lab in enumerate(labs(run)):  # the routing lab of the run's pair (harness/report/routes.py)
        parts += [f"<h2>Routing lab: {escape(lab.suite)}, {escape(lab.small)} then {escape(lab.large)}</h2>",
                  html_columns.routing_table(f"routing-table-{index}", lab, shown_points(lab))]
    pairs = paired(groups)
    parts.append('<h2 id="statistics">Paired statistics</h2>')
    if pairs:
        parts += [('<p class="muted">Every two variants of a suite on the items both scored: B minus A, '
                   "its 95% interval (adjusted Wald) and the exact McNemar p-value.</p>"),
                  html_columns.paired_table("paired-table", pairs)]
    else:
        parts.append('<p class="muted">One variant per suite: nothing to pair.</p>')
    parts.append('<h2 id="suites">Suites</h2>')
    for suite, members in suites:
        parts.append(f'<h2 id="suite-{escape(suite)}">Suite: {escape(suite)}</h2>')
        parts.append(html_columns.scoreboard(f"suite-{suite}-table", [row_of[g.key] for g in members],
                                             with_suite=False))
        parts.append(suite_frontier(members, common[suite]))
        # comparison.png is the frontier's older, smaller cousin: the SVG panels above replace it
        plots = [p for p in suite_plots(run.run_dir, suite) if p.name != "comparison.png"]
        if plots:
            parts.append('<div class="plots">' + "".join(_image(p) for p in plots) + "</div>")
    for title, block in sections:
        parts += [f"<h2>{escape(title)}</h2>", block]
    parts.append(item_browser(groups))
    parts += ['<h2 id="run">Run</h2>', _metadata(run.metadata)]
    loads = model_loads(run.metadata)
    if loads:  # models that ran in host processes of their own (backends/hosted.py)
        parts += ["<h3>Model hosts</h3>", html_columns.hosts_table("hosts-table", loads)]
    engines = engine_lines(run.metadata)
    if engines:  # what the scoreboard's shares of the engine are of
        parts += ["<h3>The engines' own speed on this machine</h3><ul>",
                  "".join(f"<li>{escape(line)}</li>" for line in engines), "</ul>"]
    return page(f"Benchmark run {run_id}", "".join(parts))


def page(title: str, body: str, style: str = "") -> str:
    """A self-contained HTML document with the pages' style (and `style`) and the table sorting
    script inline: nothing is fetched at view time."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width\"><title>{escape(title)}</title>"
            f"<style>{_STYLE}{style}</style></head><body><main>{body}</main><script>{SORT_SCRIPT}</script>"
            "</body></html>\n")


def write(run: RunData) -> Path:
    path = run.run_dir / REPORT_FILE
    path.write_text(render(run), encoding="utf-8")
    return path


# trylast: called after every other report (pluggy's order), so their plots exist to inline.
@hookimpl(trylast=True)
def pytest_harness_report(run: RunData) -> None:
    if run.records:
        write(run)
