"""The verdict of a suite: which variant to pick, in one sentence a person can act on.

Per suite, on the items every variant of it answered (as comparison.py compares them):

- the most accurate variant (ties: the cheaper one);
- the cheapest variant whose accuracy is not significantly lower than the best's: the exact
  McNemar test of the two on the items both scored gives p >= ALPHA (or it is at least as
  accurate), and of those the one lowest in the suite's cost measure: dollars where every variant
  was priced (API models), CPU seconds where none was and CPU was measured, else mean latency (the
  one measure that means the same for a local model and a remote one);
- the paired difference of the two with its 95 % interval and p-value (report/paired.py), and
  what the cheaper one uses of the best's cost, CPU time, memory or latency;
- the variants whose accuracy interval includes the chance level (multiple choice: 1 / number of
  choices), flagged: their differences say little.

Every figure is the aggregation's (Group.on(items).row) or paired.py's; nothing is counted here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from harness.core.record import CaseRecord
from harness.report.aggregate import Group, SummaryRow, by_suite
from harness.report.mmlu_analysis import CHANCE as MMLU_CHANCE
from harness.report.paired import PairedComparison, compare_pair
from harness.report.stats import near_chance

ALPHA = 0.05  # "significantly lower": the exact McNemar p-value below this
# Chance levels of suites whose records do not list their choices (MMLU in generate mode).
_KNOWN_CHANCE = {"mmlu": MMLU_CHANCE}


def chance_level(suite: str, records: Iterable[CaseRecord]) -> float | None:
    """A guesser's accuracy: 1 / the number of choices a record scored (extra.loglikelihoods),
    else the suite's known level; None for open answers (a guess is almost never right)."""
    for record in records:
        choices = record.extra.get("loglikelihoods")
        if isinstance(choices, dict) and len(choices) > 1:
            return 1.0 / len(choices)
    return _KNOWN_CHANCE.get(suite)


def per_item(total: float | None, items: int) -> float | None:
    return total / items if total is not None and items else None


# The measures a variant's cost is judged by, in order of preference: (name in a sentence, value).
def _measures(row: SummaryRow) -> dict[str, float | None]:
    return {"cost": per_item(row.cost, row.items) if row.cost else None,
            "CPU time": per_item(row.cpu_s, row.items),
            "memory": row.rss_peak_mb,
            "latency": row.mean_latency_s}


@dataclass
class Verdict:
    suite: str
    items: int  # items every variant answered
    best: str  # display names (the model, with its strategy where the suite has several)
    best_accuracy: float | None
    cheapest: str  # may be the best itself
    cheapest_accuracy: float | None
    measure: str | None  # what "cheapest" was judged by: cost, CPU time or latency; None: one variant
    comparison: PairedComparison | None = None  # best (A) against cheapest (B)
    ratios: dict[str, float] = field(default_factory=dict)  # cheapest / best, by measure
    chance: float | None = None
    near_chance: list[str] = field(default_factory=list)
    variants: int = 1
    cheaper_but_worse: list[str] = field(default_factory=list)  # cheaper than the pick, significantly worse

    def sentence(self) -> str:
        """The verdict in words (plain text; the page escapes it)."""
        if self.best_accuracy is None:
            return f"{self.suite}: nothing was scored."
        head = (f"{self.suite}: {self.best} is the most accurate, {_pct(self.best_accuracy)} of "
                f"{self.items:,} items")
        if self.variants == 1:
            text = f"{self.suite}: {self.best} alone, {_pct(self.best_accuracy)} of {self.items:,} items."
        elif self.measure is None:
            text = f"{head}; no cost, CPU time or latency was measured to weigh against it."
        elif self.cheapest == self.best and self.cheaper_but_worse:
            text = (f"{head}; every variant of lower {self.measure} is significantly less accurate "
                    f"({', '.join(self.cheaper_but_worse)}): pick {self.best}.")
        elif self.cheapest == self.best:
            text = f"{head}, and the cheapest by {self.measure}: pick {self.best}."
        else:
            text = f"{head}. Cheapest not significantly less accurate: {self.detail()}."
        if self.near_chance:
            text += (f" Near chance ({_pct(self.chance or 0.0)}): {', '.join(self.near_chance)}; "
                     "their intervals include a guesser's accuracy.")
        return text

    def detail(self) -> str:
        """`smollm2-135m: 3.1 points below gemma3-270m-q4 on mmlu [-15, +9], p = 0.62, 32 items,
        at 68% of the CPU time and 60% of the memory`."""
        c = self.comparison
        if c is None or c.difference is None:
            return self.cheapest
        points = 100.0 * c.difference
        where = "below" if points < 0 else "above"
        amount = (f"as accurate as {self.best}" if abs(points) < 0.05 else
                  f"{abs(points):.1f} points {where} {self.best}")
        interval = f"[{100.0 * (c.ci_low or 0.0):+.0f}, {100.0 * (c.ci_high or 0.0):+.0f}]"
        shares = [f"{100.0 * ratio:.0f}% of the {name}" for name, ratio in self.ratios.items()]
        tail = f", at {_join(shares)}" if shares else ""
        return (f"{self.cheapest}: {amount} on {self.suite} {interval}, p = {format_p(c.p_value)}, "
                f"{c.items:,} items{tail}")


def format_p(p: float | None) -> str:
    if p is None:
        return "-"
    return "< 0.001" if p < 0.001 else f"{p:.2g}" if p < 0.1 else f"{p:.2f}"


def _pct(value: float) -> str:
    return f"{100.0 * value:.1f}%"


def _join(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def names(groups: Sequence[Group]) -> dict[str, str]:
    """Display names of a suite's variants: the model alone where the suite has one strategy."""
    one_strategy = len({g.strategy for g in groups}) == 1
    return {g.variant: g.model if one_strategy else f"{g.model} ({g.strategy})" for g in groups}


def on_common_items(groups: Sequence[Group]) -> list[tuple[Group, SummaryRow]]:
    """A suite's groups on the items every one of them answered, each with its summary row."""
    common = set.intersection(*(g.item_ids for g in groups)) if groups else set()
    return [(chosen, chosen.row) for chosen in (g.on(common) for g in groups)]


def suite_verdict(suite: str, groups: Sequence[Group],
                  common: Sequence[tuple[Group, SummaryRow]] | None = None) -> Verdict:
    """The verdict of one suite's groups (the aggregation's); `common` is on_common_items(groups)
    where the caller has it already."""
    common = on_common_items(groups) if common is None else common
    chosen = [g for g, _ in common]
    rows = {g.variant: row for g, row in common}
    label = names(groups)
    scored = [g for g in chosen if rows[g.variant].accuracy is not None]
    chance = chance_level(suite, (r for g in chosen for r in g.records))
    flagged = [label[g.variant] for g in scored
               if near_chance(rows[g.variant].ci_low, rows[g.variant].ci_high, chance)]
    if not scored:
        return Verdict(suite, _items(common), "-", None, "-", None, None, chance=chance, variants=len(groups))
    priced = [_measures(rows[g.variant])["cost"] is not None for g in scored]
    candidates = ("cost",) if all(priced) else ("CPU time", "latency") if not any(priced) else ("latency",)
    measure = next((name for name in candidates
                    if all(_measures(rows[g.variant])[name] is not None for g in scored)), None)

    def spend(group: Group) -> float:
        return (_measures(rows[group.variant])[measure] or 0.0) if measure else 0.0

    def accuracy(group: Group) -> float:
        return rows[group.variant].accuracy or 0.0

    best = min(scored, key=lambda g: (-accuracy(g), spend(g), g.variant))
    comparisons = {g.variant: compare_pair(best, g) for g in scored if g is not best}

    def close_enough(group: Group) -> bool:
        if group is best or accuracy(group) >= accuracy(best):
            return True
        p = comparisons[group.variant].p_value
        return p is not None and p >= ALPHA

    cheapest = min((g for g in scored if close_enough(g)), key=lambda g: (spend(g), -accuracy(g), g.variant))
    verdict = Verdict(suite, _items(common), label[best.variant], accuracy(best), label[cheapest.variant],
                      accuracy(cheapest), measure, chance=chance, near_chance=flagged, variants=len(scored))
    verdict.cheaper_but_worse = [label[g.variant] for g in scored if spend(g) < spend(cheapest)]
    if cheapest is not best:
        verdict.comparison = comparisons[cheapest.variant]
        mine, theirs = _measures(rows[cheapest.variant]), _measures(rows[best.variant])
        # The CPU time speaks for latency where both are measured; latency only without it.
        wanted = [n for n in ("cost", "CPU time", "memory", "latency") if n != "latency" or mine["CPU time"] is None]
        for name in wanted:
            value, base = mine[name], theirs[name]
            if value is not None and base:
                verdict.ratios[name] = value / base
    return verdict


def _items(common: Sequence[tuple[Group, SummaryRow]]) -> int:
    return len(common[0][0].records) if common else 0


def verdicts(groups: Iterable[Group]) -> list[Verdict]:
    """One verdict per suite, by suite name."""
    return [suite_verdict(suite, members) for suite, members in sorted(by_suite(groups).items())]
