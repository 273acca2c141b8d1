"""The routing lab: every threshold of "the small model answers when it is sure enough", offline.

From a run where a small and a large model answered the same items alone (strategy single), the
policy "the small model answers when its confidence >= t, else the large one" is evaluated for
every threshold t without running a model again: each item's outcome under the policy is the
small model's record or the large model's. The small model always runs (its confidence is what
routes), the large one only on the items sent to it, so a threshold's cost, tokens, latency, CPU
seconds and energy are the small model's on every item plus the large model's on the routed ones (the large model alone
costs only its own).

The thresholds are every confidence value the small model gave (each changes the routing), 0
(the small model alone: items without a confidence still go to the large model), and every
threshold a live `threshold:T` router of the run used, plus the large model alone. For a code
suite, whose confidence is the share of programs that passed the tests, t = 1 is the cascade
(the small model's program stands when it passes) and is named so. The cheapest policy that keeps
at least `target` of the large model's accuracy is picked by cost, then the large model's tokens,
then the share sent to it (local models cost nothing). The live router equals the offline policy
case for case (tests/test_routes.py): same routing, same answers, same tokens.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.core.confidence import TESTS_PASSED
from harness.core.record import CaseRecord
from harness.report.aggregate import latest
from harness.report.hooks import RunData, hookimpl
from harness.report.stats import wilson_interval

ROUTES_DIR = "routes"


@dataclass
class RoutePoint:
    """One policy over the items both models scored."""

    policy: str  # threshold, cascade, large_alone
    threshold: float | None  # None: every item to the large model
    items: int = 0
    correct: int = 0
    accuracy: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    to_large: int = 0
    share_large: float | None = None
    cost: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    large_tokens: int = 0
    latency_s: float | None = None  # mean per item: the small model's wall time, plus the large one's if routed
    cpu_s: float | None = None
    energy_j: float | None = None
    live: bool = False  # a threshold a live threshold:T router of the run used


@dataclass
class RouteLab:
    suite: str
    small: str
    large: str
    target: float
    small_accuracy: float | None = None
    large_accuracy: float | None = None
    points: list[RoutePoint] = field(default_factory=list)
    cheapest: RoutePoint | None = None  # keeps >= target of the large model's accuracy

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sure(record: CaseRecord, threshold: float | None) -> bool:
    """The policy's routing: does the small model's answer stand?"""
    return threshold is not None and record.confidence is not None and record.confidence >= threshold


def route_items(pairs: Mapping[str, tuple[CaseRecord, CaseRecord]], threshold: float | None) -> dict[str, bool]:
    """item id -> True where the policy sends the item to the large model."""
    return {item: not _sure(small, threshold) for item, (small, _) in pairs.items()}


def _add(total: float | None, value: Any) -> float | None:
    return total if value is None else (total or 0.0) + float(value)


def evaluate(pairs: Mapping[str, tuple[CaseRecord, CaseRecord]], threshold: float | None,
             policy: str = "threshold") -> RoutePoint:
    point = RoutePoint(policy, threshold)
    wall: float | None = None
    for small, large in pairs.values():
        routed = not _sure(small, threshold)
        answered = large if routed else small
        point.items += 1
        point.correct += answered.counts_correct
        point.to_large += routed
        # The small model runs on every item (its confidence routes), except with no router at all.
        runs = (large,) if threshold is None else (small, large) if routed else (small,)
        for rec in runs:
            point.cost += rec.cost
            point.prompt_tokens += rec.usage.prompt_tokens
            point.completion_tokens += rec.usage.completion_tokens
            wall = _add(wall, rec.timings.wall_s)
            point.cpu_s = _add(point.cpu_s, rec.resources.get("cpu_s"))
            for gpu in rec.resources.get("gpu") or []:
                if isinstance(gpu, Mapping):
                    point.energy_j = _add(point.energy_j, gpu.get("energy_j"))
        if routed:
            point.large_tokens += large.usage.prompt_tokens + large.usage.completion_tokens
    if point.items:
        point.accuracy = point.correct / point.items
        point.ci_low, point.ci_high = wilson_interval(point.correct, point.items)
        point.share_large = point.to_large / point.items
        point.latency_s = wall / point.items if wall is not None else None
    return point


def paired_items(records: Iterable[CaseRecord], suite: str, small: str,
                 large: str) -> dict[str, tuple[CaseRecord, CaseRecord]]:
    """item id -> (small's single record, large's), on the items both scored."""
    alone: dict[str, dict[str, CaseRecord]] = {}
    for rec in records:
        if rec.suite == suite and rec.strategy == "single" and rec.model in (small, large) and rec.scored:
            alone.setdefault(rec.item_id, {})[rec.model] = rec
    return {item: (found[small], found[large]) for item, found in sorted(alone.items()) if len(found) == 2}


def live_thresholds(records: Iterable[CaseRecord], suite: str, small: str, large: str) -> list[float]:
    found = set()
    for rec in records:
        name, _, value = rec.strategy.partition(":")
        if rec.suite == suite and name == "threshold" and rec.model == f"{small}+{large}":
            found.add(float(value))
    return sorted(found)


def lab(records: Sequence[CaseRecord], suite: str, small: str, large: str, target: float = 0.95) -> RouteLab | None:
    """Every threshold's policy on one suite; None where the two models share no scored item or
    the small model gave no confidence."""
    pairs = paired_items(records, suite, small, large)
    values = {s.confidence for s, _ in pairs.values() if s.confidence is not None}
    if not pairs or not values:
        return None
    out = RouteLab(suite, small, large, target)
    code = any(s.confidence_source == TESTS_PASSED for s, _ in pairs.values())
    live = set(live_thresholds(records, suite, small, large))
    for threshold in sorted(values | {0.0} | live):
        point = evaluate(pairs, threshold, "cascade" if code and threshold == 1.0 else "threshold")
        point.live = threshold in live
        out.points.append(point)
    alone = evaluate(pairs, None, "large_alone")
    out.points.append(alone)
    out.large_accuracy = alone.accuracy
    out.small_accuracy = sum(s.counts_correct for s, _ in pairs.values()) / len(pairs)
    keeps = [p for p in out.points if p.accuracy is not None and alone.accuracy is not None
             and p.accuracy >= target * alone.accuracy]
    out.cheapest = min(keeps, key=lambda p: (p.cost, p.large_tokens, p.to_large), default=None)
    return out


def labs(run: RunData, small: str | None = None, large: str | None = None,
         target: float | None = None) -> list[RouteLab]:
    """The lab of every suite for the run's pair (--small-model/--large-model) or the one given."""
    pair = run.metadata.get("pair")
    if small is None or large is None:
        if not (isinstance(pair, Sequence) and len(pair) == 2):
            return []
        small, large = str(pair[0]), str(pair[1])
    if target is None:
        target = float(run.settings.get("route_target") or 0.95)
    found = (lab(run.records, suite, small, large, target) for suite in sorted({r.suite for r in run.records}))
    return [x for x in found if x is not None]


def shown_points(result: RouteLab, rows: int = 21) -> list[RoutePoint]:
    """The points a table shows: evenly spaced over the thresholds (a run gives one per distinct
    confidence, up to one per item), plus the cheapest on target, the live thresholds and the
    large model alone; routes.json keeps them all."""
    points = result.points
    if len(points) <= rows:
        return list(points)
    step = (len(points) - 1) / (rows - 1)
    keep = {round(i * step) for i in range(rows)}
    return [p for i, p in enumerate(points) if i in keep or p is result.cheapest or p.live]


def markdown(result: RouteLab) -> str:
    lines = [f"# Routing lab: {result.suite}, {result.small} then {result.large}", "",
             f"small alone {result.small_accuracy:.3f}, large alone {result.large_accuracy or 0:.3f}; target "
             f"{100 * result.target:g}% of the large model's accuracy", "",
             "| policy | threshold | accuracy | 95% CI | to large | cost | tokens | large tokens | latency s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for p in shown_points(result):
        chosen = (" (cheapest on target)" if p is result.cheapest else "") + (" (live)" if p.live else "")
        threshold = "-" if p.threshold is None else f"{p.threshold:.4g}"
        lines.append(f"| {p.policy}{chosen} | {threshold} | {p.accuracy or 0:.3f} | [{p.ci_low or 0:.2f}, "
                     f"{p.ci_high or 0:.2f}] | {p.share_large or 0:.2f} | {p.cost:.4g} | "
                     f"{p.prompt_tokens + p.completion_tokens} | {p.large_tokens} | "
                     f"{'-' if p.latency_s is None else f'{p.latency_s:.3f}'} |")
    return "\n".join(lines) + "\n"


def _plot(folder: Path, result: RouteLab) -> None:
    """Accuracy against the share sent to the large model, one point per threshold: the frontier."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    points = [(p.share_large or 0.0, p.accuracy) for p in result.points if p.accuracy is not None]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([x for x, _ in points], [y for _, y in points], "o-", label="threshold policies")
    best = result.cheapest
    if best is not None and best.accuracy is not None:
        ax.plot([best.share_large or 0.0], [best.accuracy], "r*", markersize=14,
                label=f"cheapest keeping {100 * result.target:g}% of the large model")
    ax.set_xlabel(f"share of items sent to {result.large}")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{result.suite}: routing {result.small} -> {result.large}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / "routes.png", dpi=100)
    plt.close(fig)


def write(run_dir: Path, results: Sequence[RouteLab]) -> list[Path]:
    """routes/routes.json, routes/<suite>.md, and the frontier plot <suite>/routes.png (the page
    inlines a suite's plots)."""
    folder = run_dir / ROUTES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "routes.json"]
    written[0].write_text(json.dumps([r.to_dict() for r in results], indent=2, sort_keys=True))
    for result in results:
        path = folder / f"{result.suite}.md"
        path.write_text(markdown(result))
        written.append(path)
        _plot(run_dir / result.suite, result)
    return written


@hookimpl
def pytest_harness_report(run: RunData) -> None:
    results = labs(run)
    if results:
        write(run.run_dir, results)


def from_records(records: Iterable[CaseRecord | Mapping[str, Any]], small: str, large: str,
                 target: float = 0.95) -> list[RouteLab]:
    """The labs of every suite of a run's records (for scripts and tests)."""
    typed = latest(records)
    found = (lab(typed, suite, small, large, target) for suite in sorted({r.suite for r in typed}))
    return [x for x in found if x is not None]
