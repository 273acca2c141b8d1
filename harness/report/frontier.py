"""The frontier plot of a suite: accuracy against what it costs, one panel per measure.

Per suite, every variant on the items all of them answered (the verdict's rows, report/verdict.py):
accuracy against cost per item, mean latency, CPU seconds per item, peak memory and GPU energy
per item (where measured). A measure that is zero or missing for every variant (the cost of local
models) gets no panel. The Pareto front (no other variant both costs less and scores higher) is
drawn as a staircase through filled points; dominated variants are hollow. Labels are placed
beside their points where they overlap no other label or point (a greedy search over spots on
growing rings), with a leader line when pushed away.

Drawn as inline SVG: crisp at any width, no matplotlib needed, nothing fetched at view time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from harness.report.aggregate import Group, SummaryRow
from harness.report.verdict import chance_level, names, on_common_items, per_item

WIDTH, HEIGHT = 600, 340
LEFT, RIGHT, TOP, BOTTOM = 58, 18, 16, 46
# A label's box at 11 px: DejaVu Sans (Debian's sans-serif) averages 0.6 em a character and 0.64 em
# a digit; the text is anchored on the side facing its point, so a wider font grows away from it.
CHAR_W, LINE_H = 7.0, 13.0
RADIUS = 5.0

# (axis title, figure of a row), in the order the panels appear.
MEASURES: tuple[tuple[str, Callable[[SummaryRow], float | None]], ...] = (
    ("cost per item ($)", lambda r: per_item(r.cost, r.items)),
    ("mean latency (s)", lambda r: r.mean_latency_s),
    ("CPU per item (s)", lambda r: per_item(r.cpu_s, r.items)),
    ("peak memory (MB)", lambda r: r.rss_peak_mb),
    ("GPU energy per item (J)", lambda r: per_item(r.gpu_energy_j, r.items)),
)


@dataclass(frozen=True)
class Point:
    label: str  # what the plot writes beside the point: the variant, or its key in the legend
    x: float  # the measure: lower is better
    y: float  # accuracy: higher is better
    name: str = ""  # the variant's full name (the point's tooltip), where the label is a key

LONGEST_LABEL = 28  # characters; with a longer name the points are keyed (1, 2, ...) and a legend names them


def pareto_front(points: Sequence[Point]) -> list[int]:
    """Indices of the points no other point dominates (x no higher and y no lower, one of them
    strictly), by x then y."""
    front = [i for i, p in enumerate(points)
             if not any((q.x <= p.x and q.y >= p.y) and (q.x < p.x or q.y > p.y) for q in points)]
    return sorted(front, key=lambda i: (points[i].x, -points[i].y))


Box = tuple[float, float, float, float]  # x0, y0, x1, y1


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_labels(anchors: Sequence[tuple[float, float]], labels: Sequence[str], area: Box,
                 obstacles: Sequence[Box] = ()) -> list[Box]:
    """A box per label near its anchor (pixels), overlapping no other label, no point and staying
    in `area`: candidate spots on growing rings around the anchor, first free one wins; where none
    is free (a crowded plot), the spot that overlaps least."""
    points = [(x - RADIUS, y - RADIUS, x + RADIUS, y + RADIUS) for x, y in anchors] + list(obstacles)
    placed: list[Box] = []
    for (x, y), label in zip(anchors, labels):
        w, h = len(label) * CHAR_W, LINE_H
        best: tuple[int, Box] | None = None
        # a label wider than the room on either side slides along above or below its point
        slid = min(max(x - w / 2, area[0]), area[2] - w) - x
        for ring in range(8):
            gap = RADIUS + 3 + ring * (h + 2)
            for dx, dy in ((gap, -h / 2), (-gap - w, -h / 2), (-w / 2, -gap - h), (-w / 2, gap),
                           (gap * 0.7, -gap * 0.7 - h), (gap * 0.7, gap * 0.7), (-gap * 0.7 - w, -gap * 0.7 - h),
                           (-gap * 0.7 - w, gap * 0.7), (slid, -gap - h), (slid, gap)):
                box = (x + dx, y + dy, x + dx + w, y + dy + h)
                if box[0] < area[0] or box[2] > area[2] or box[1] < area[1] or box[3] > area[3]:
                    continue
                clashes = sum(_overlap(box, other) for other in placed + points)
                if best is None or clashes < best[0]:
                    best = (clashes, box)
                if clashes == 0:
                    break
            if best is not None and best[0] == 0:
                break
        box = best[1] if best else (x + RADIUS + 3, y - h / 2, x + RADIUS + 3 + w, y + h / 2)
        placed.append(box)
    return placed


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    span = high - low
    raw = span / count if span > 0 else 1.0
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if m * step >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _tick_text(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def svg(points: Sequence[Point], xlabel: str, chance: float | None = None) -> str:
    """One panel: accuracy (y, %) against a measure (x, from 0), the front marked."""
    front = set(pareto_front(points))
    x_max = max(p.x for p in points) * 1.15 or 1.0
    y_low = max(0.0, math.floor((min(p.y for p in points) - 0.08) * 10) / 10)
    y_high = min(1.0, math.ceil((max(p.y for p in points) + 0.08) * 10) / 10)
    if y_high <= y_low:
        y_low, y_high = max(0.0, y_low - 0.1), min(1.0, y_high + 0.1)
    plot = (LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM)

    def px(x: float) -> float:
        return plot[0] + (plot[2] - plot[0]) * x / x_max

    def py(y: float) -> float:
        return plot[3] - (plot[3] - plot[1]) * (y - y_low) / (y_high - y_low)

    out = [f'<svg class="frontier" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="accuracy against '
           f'{escape(xlabel)}">', f'<rect x="{plot[0]}" y="{plot[1]}" width="{plot[2] - plot[0]}" '
           f'height="{plot[3] - plot[1]}" class="area"/>']
    for t in _ticks(0.0, x_max):
        out.append(f'<line class="grid" x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{plot[1]}" y2="{plot[3]}"/>'
                   f'<text class="tick" x="{px(t):.1f}" y="{plot[3] + 14}" text-anchor="middle">{_tick_text(t)}</text>')
    for t in _ticks(y_low, y_high):
        out.append(f'<line class="grid" x1="{plot[0]}" x2="{plot[2]}" y1="{py(t):.1f}" y2="{py(t):.1f}"/>'
                   f'<text class="tick" x="{plot[0] - 5}" y="{py(t) + 4:.1f}" text-anchor="end">{100 * t:.0f}%</text>')
    taken: list[Box] = []  # the chance line's caption: labels keep off it
    if chance is not None and y_low <= chance <= y_high:
        out.append(f'<line class="chance" x1="{plot[0]}" x2="{plot[2]}" y1="{py(chance):.1f}" y2="{py(chance):.1f}"/>'
                   f'<text class="tick chance-label" x="{plot[0] + 4}" y="{py(chance) - 4:.1f}">chance</text>')
        taken.append((plot[0] + 2, py(chance) - 15, plot[0] + 8 + 6 * CHAR_W, py(chance) - 1))
    steps = [points[i] for i in sorted(front, key=lambda i: (points[i].x, points[i].y))]
    if len(steps) > 1:
        path = [f"M{px(steps[0].x):.1f},{py(steps[0].y):.1f}"]
        for prev, nxt in zip(steps, steps[1:]):
            path.append(f"H{px(nxt.x):.1f}V{py(nxt.y):.1f}")
            # the staircase's segments: labels keep off them too
            taken.append((px(prev.x), py(prev.y) - 1.5, px(nxt.x), py(prev.y) + 1.5))
            taken.append((px(nxt.x) - 1.5, py(nxt.y), px(nxt.x) + 1.5, py(prev.y)))
        out.append(f'<path class="front" d="{"".join(path)}"/>')
    anchors = [(px(p.x), py(p.y)) for p in points]
    boxes = place_labels(anchors, [p.label for p in points], (plot[0] + 2, plot[1] + 2, plot[2] - 2, plot[3] - 2),
                         taken)
    for i, (p, (x, y), box) in enumerate(zip(points, anchors, boxes)):
        cls = "on-front" if i in front else "dominated"
        out.append(f'<circle class="{cls}" cx="{x:.1f}" cy="{y:.1f}" r="{RADIUS}"><title>{escape(p.name or p.label)}: '
                   f'{100 * p.y:.1f}%, {_tick_text(p.x)} {escape(xlabel)}</title></circle>')
        near_x, near_y = min(max(x, box[0]), box[2]), min(max(y, box[1]), box[3])
        if math.hypot(near_x - x, near_y - y) > RADIUS + 8:  # pushed away: a leader line to its point
            out.append(f'<line class="leader" x1="{x:.1f}" y1="{y:.1f}" x2="{near_x:.1f}" y2="{near_y:.1f}"/>')
        anchor, at = (("end", box[2]) if box[2] <= x else ("start", box[0]) if box[0] >= x
                      else ("middle", (box[0] + box[2]) / 2))
        out.append(f'<text class="label {cls}" x="{at:.1f}" y="{box[3] - 3:.1f}" text-anchor="{anchor}">'
                   f"{escape(p.label)}</text>")
    out.append(f'<text class="axis" x="{(plot[0] + plot[2]) / 2}" y="{HEIGHT - 8}" text-anchor="middle">'
               f'{escape(xlabel)}</text><text class="axis" transform="rotate(-90)" x="{-(plot[1] + plot[3]) / 2}" '
               f'y="14" text-anchor="middle">accuracy</text></svg>')
    return "".join(out)


def panels(groups: Sequence[Group], common: Sequence[tuple[Group, SummaryRow]] | None = None,
           ) -> list[tuple[str, list[Point]]]:
    """(measure, points) for each measure two variants or more have, not zero for all of them,
    on the items every variant answered (verdict.on_common_items, given or computed)."""
    label = names(groups)
    rows = [(label[g.variant], row) for g, row in (on_common_items(groups) if common is None else common)]
    keyed = any(len(name) > LONGEST_LABEL for name, _ in rows)
    keys = {name: str(index) if keyed else name for index, (name, _) in enumerate(rows, start=1)}
    out = []
    for title, figure in MEASURES:
        points = [Point(keys[name], figure(row) or 0.0, row.accuracy, name) for name, row in rows
                  if row.accuracy is not None and figure(row) is not None]
        if len(points) > 1 and any(p.x > 0 for p in points):  # one point is no comparison
            out.append((title, points))
    return out


def suite_frontier(groups: Sequence[Group], common: Sequence[tuple[Group, SummaryRow]] | None = None) -> str:
    """The suite's panels as HTML (empty with fewer than two variants: one point is no frontier)."""
    if len(groups) < 2:
        return ""
    chance = chance_level(groups[0].suite, (r for g in groups for r in g.records))
    found = panels(groups, common)
    figures = [f'<figure class="panel">{svg(points, title, chance)}</figure>' for title, points in found]
    if not figures:
        return ""
    keyed = {p.label: p.name for _, points in found for p in points if p.label != p.name}
    legend = ('<p class="legend">' + " ".join(f"<span><b>{escape(key)}</b> {escape(name)}</span>"
                                              for key, name in sorted(keyed.items(), key=lambda kv: int(kv[0])))
              + "</p>") if keyed else ""
    return ('<p class="muted">Accuracy against what it costs, on the items every variant answered. '
            "Filled points and the staircase: the Pareto front (no other variant is both cheaper and more "
            f'accurate); hollow points are dominated.</p>{legend}<div class="frontiers">' + "".join(figures) + "</div>")


FRONTIER_STYLE = """
.frontiers{display:grid;grid-template-columns:repeat(auto-fill,minmax(540px,1fr));gap:12px}
figure.panel{margin:0;background:#fff;border:1px solid #d5d9e0}
svg.frontier{width:100%;height:auto;display:block;font:11px system-ui,-apple-system,Segoe UI,sans-serif}
svg .area{fill:#fff}svg .grid{stroke:#e6e9ef}svg .tick{fill:#5b6475;font-size:10px}
svg .axis{fill:#1d2330;font-size:12px}svg .chance{stroke:#b3261e;stroke-dasharray:4 3}
svg .front{fill:none;stroke:#3b5bdb;stroke-width:1.5}svg .leader{stroke:#9aa3b2}
svg circle.on-front{fill:#3b5bdb}svg circle.dominated{fill:#fff;stroke:#8b93a3;stroke-width:1.5}
svg text.label{fill:#1d2330}svg text.label.dominated{fill:#5b6475}
.legend span{margin-right:18px;white-space:nowrap;display:inline-block}.legend b{color:#3b5bdb}
"""
