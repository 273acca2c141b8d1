"""Tables for the HTML pages: headers that are names with units, figures formatted to their
precision, wide detail folded away, and every column sortable by a click on its header.

A table is a list of Columns over rows of any type. The main table holds the columns a reader
needs to choose (it fits a 1280 px window); the detail columns go into a second table under a
<details> fold, keyed by the same text columns. Each cell carries its raw value in `data-v`, so
the script in SORT_SCRIPT sorts by the figure, not by its formatted text (`9.5 s` before `10 s`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

Format = Callable[[Any], str]

MISSING = "–"  # no figure (not measured, nothing scored); sorts last


def number(digits: int = 3) -> Format:
    """`digits` significant digits, thousands separated: 0.00123, 1.23, 123, 12,345."""
    def form(value: Any) -> str:
        v = float(value)
        if v == 0 or not math.isfinite(v):
            return "0" if v == 0 else str(v)
        if abs(v) >= 10 ** (digits - 1):
            return f"{v:,.0f}"
        decimals = digits - 1 - math.floor(math.log10(abs(v)))
        return f"{v:,.{decimals}f}"
    return form


def unit(form: Format, suffix: str) -> Format:
    return lambda value: f"{form(value)} {suffix}"


def percent(decimals: int = 1) -> Format:
    """A fraction as a percentage: 0.28125 -> 28.1%."""
    return lambda value: f"{100.0 * float(value):.{decimals}f}%"


def signed(decimals: int = 1, suffix: str = "") -> Format:
    return lambda value: f"{float(value):+.{decimals}f}{suffix}"


def integer(value: Any) -> str:
    return f"{int(value):,}"


def text(value: Any) -> str:
    return str(value)


def yes_no(value: Any) -> str:
    return "yes" if value else "no"


@dataclass(frozen=True)
class Column:
    header: str  # a name with its unit: "latency mean (s)"
    value: Callable[[Any], Any]  # the row's raw figure (None: missing)
    form: Format = text
    title: str = ""  # the header's tooltip: what the figure is
    detail: bool = False  # folded away under the main table
    is_text: bool = False  # left-aligned, sorted as text
    shown: Callable[[Any], str] | None = None  # the cell's text from the whole row (an interval, say)

    def cell(self, row: Any) -> str:
        raw = self.value(row)
        if raw is None or (isinstance(raw, float) and math.isnan(raw)):
            return f'<td class="{"t " if self.is_text else ""}na" data-v="">{MISSING}</td>'
        shown = escape(self.shown(row) if self.shown else self.form(raw))
        if self.is_text:  # long names (`small+large`, `strategy:model`) may wrap after + and :
            shown = shown.replace("+", "+<wbr>").replace(":", ":<wbr>").replace("_", "_<wbr>")
        key = escape(str(raw), quote=True) if self.is_text else repr(float(raw))
        align = ' class="t"' if self.is_text else ""
        return f'<td{align} data-v="{key}">{shown}</td>'

    def head(self) -> str:
        kind = "text" if self.is_text else "num"
        tip = f' title="{escape(self.title, quote=True)}"' if self.title else ""
        return (f'<th class="sortable{" t" if self.is_text else ""}" data-type="{kind}" aria-sort="none"'
                f'{tip}>{escape(self.header)}</th>')


def measured(columns: Sequence[Column], rows: Sequence[Any]) -> list[Column]:
    """The columns some row has a figure for: a resource nobody measured is left out, not zeros."""
    return [c for c in columns if c.is_text or any(c.value(r) is not None for r in rows)]


def _one(table_id: str, columns: Sequence[Column], rows: Sequence[Any], css: str = "") -> str:
    head = "".join(c.head() for c in columns)
    body = "".join("<tr>" + "".join(c.cell(r) for c in columns) + "</tr>" for r in rows)
    return (f'<div class="scroll"><table id="{escape(table_id)}" class="sortable-table{css}">'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")


def table(table_id: str, columns: Sequence[Column], rows: Sequence[Any]) -> str:
    """The main table, and the detail columns in a fold below it (keyed by the text columns)."""
    kept = measured(columns, rows)
    main = [c for c in kept if not c.detail]
    detail = [c for c in kept if c.detail and not c.is_text]
    out = _one(table_id, main, rows)
    if detail and rows:
        keys = [c for c in main if c.is_text]
        names = ", ".join(c.header for c in detail)
        out += (f'<details class="more"><summary>{len(detail)} more columns: {escape(names)}</summary>'
                f"{_one(table_id + '-detail', keys + detail, rows, ' detail')}</details>")
    return out


# Sorting: a click on a header sorts its table's rows by the cells' data-v (numbers as numbers,
# missing figures last either way); a second click reverses. A URL fragment `#sort=<table id>:<column
# index>[:desc]` sorts on load, so a sorted view can be linked to.
SORT_SCRIPT = """
(function(){
  function sortBy(th, descending){
    var table = th.closest('table'), body = table.tBodies[0], index = th.cellIndex;
    var numeric = th.getAttribute('data-type') === 'num';
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function(a, b){
      var x = a.cells[index].getAttribute('data-v'), y = b.cells[index].getAttribute('data-v');
      if(x === '' || y === '') return (x === '') - (y === '');
      var order = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
      return descending ? -order : order;
    });
    rows.forEach(function(r){ body.appendChild(r); });
    Array.prototype.forEach.call(th.parentNode.cells, function(c){ c.setAttribute('aria-sort', 'none'); });
    th.setAttribute('aria-sort', descending ? 'descending' : 'ascending');
  }
  document.addEventListener('click', function(event){
    var th = event.target.closest && event.target.closest('th.sortable');
    if(th) sortBy(th, th.getAttribute('aria-sort') === 'ascending');
  });
  var wanted = /sort=([^:&]+):(\\d+)(:desc)?/.exec(decodeURIComponent(location.hash));
  if(wanted){
    var table = document.getElementById(wanted[1]);
    var th = table && table.tHead.rows[0].cells[parseInt(wanted[2], 10)];
    if(th) sortBy(th, !!wanted[3]);
  }
})();
"""

TABLE_STYLE = """
table{border-collapse:collapse;background:#fff;margin:6px 0 4px;font-size:13px;max-width:100%}
th,td{border:1px solid #d5d9e0;padding:3px 7px;text-align:right;vertical-align:top}
td.t,th.t{text-align:left}td.na{color:#8b93a3}
th{background:#eef1f5;font-weight:600}
th.sortable{cursor:pointer;user-select:none;padding-right:16px;position:relative}
th.sortable::after{content:'\\2195';position:absolute;right:4px;color:#9aa3b2;font-size:11px}
th[aria-sort=ascending]::after{content:'\\25B2';color:#1d2330}
th[aria-sort=descending]::after{content:'\\25BC';color:#1d2330}
details.more{margin:0 0 12px}details.more summary{cursor:pointer;color:#3b5bdb;font-size:13px}
table.detail{font-size:12px}table.detail th,table.detail td{padding:2px 5px}table.detail th.sortable{padding-right:14px}
.scroll{overflow-x:auto;max-width:100%}
"""
