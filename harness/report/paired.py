"""Paired statistics: two variants on the same items, and the headline of a pair strategy.

Accuracy intervals of two variants overlap long before their difference stops being noise; the
question "is B better than A on these items" is a paired one. For every two variants (strategy
and model) of a suite, on the items both scored: the items each got right alone, the difference
in accuracy with its 95 % interval, and the exact McNemar p-value (report/stats.py).

The headline of a delegation or cascade run compares the pair with its large model alone on the
same items: cost saved, large-model tokens saved, accuracy difference (points, 95 % interval)
and latency overhead. Every figure is the aggregation's (report/aggregate.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from harness.core.record import CaseRecord
from harness.report.aggregate import Group, aggregate, by_suite
from harness.report.stats import mcnemar_exact, paired_difference


@dataclass
class PairedComparison:
    suite: str
    a: str  # variant `strategy:model`, or a run's label in `harness compare`
    b: str
    items: int = 0  # items both scored (errors on either side left out)
    both_right: int = 0
    a_only: int = 0  # right in A, wrong in B
    b_only: int = 0
    neither: int = 0
    accuracy_a: float | None = None
    accuracy_b: float | None = None
    difference: float | None = None  # accuracy B - accuracy A, as a fraction
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None  # exact McNemar, two-sided

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_items(suite: str, a_name: str, a: Mapping[str, CaseRecord], b_name: str,
                  b: Mapping[str, CaseRecord]) -> PairedComparison:
    """A and B's records keyed by item (or any shared key), compared on the keys both scored."""
    out = PairedComparison(suite, a_name, b_name)
    for key in sorted(set(a) & set(b)):
        ra, rb = a[key], b[key]
        if not (ra.scored and rb.scored):
            continue
        out.items += 1
        right_a, right_b = ra.counts_correct, rb.counts_correct
        out.both_right += right_a and right_b
        out.a_only += right_a and not right_b
        out.b_only += right_b and not right_a
        out.neither += not (right_a or right_b)
    if out.items:
        out.accuracy_a = (out.both_right + out.a_only) / out.items
        out.accuracy_b = (out.both_right + out.b_only) / out.items
        out.difference, out.ci_low, out.ci_high = paired_difference(out.b_only, out.a_only, out.items)
        out.p_value = mcnemar_exact(out.a_only, out.b_only)
    return out


def _by_item(group: Group) -> dict[str, CaseRecord]:
    return {r.item_id: r for r in group.records}


def paired(groups: Iterable[Group]) -> list[PairedComparison]:
    """Every two variants of each suite, on the items both scored (none in common: left out)."""
    out = []
    for suite, members in sorted(by_suite(groups).items()):
        for first, second in itertools.combinations(sorted(members, key=lambda g: g.variant), 2):
            result = compare_items(suite, first.variant, _by_item(first), second.variant, _by_item(second))
            if result.items:
                out.append(result)
    return out


@dataclass
class Headline:
    """A pair strategy against its large model alone, on the items both answered."""

    suite: str
    strategy: str
    model: str  # `small+large`
    large: str
    items: int = 0
    accuracy: float | None = None
    large_accuracy: float | None = None
    accuracy_diff_points: float | None = None  # pair minus large alone, in percentage points
    accuracy_diff_ci_low: float | None = None
    accuracy_diff_ci_high: float | None = None
    p_value: float | None = None
    cost_saved_pct: float | None = None  # None when the large model alone cost nothing (local)
    large_tokens_saved_pct: float | None = None
    latency_overhead_pct: float | None = None
    settled_by_small: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pct_saved(alone: float, pair: float) -> float | None:
    return 100.0 * (alone - pair) / alone if alone > 0 else None


def headlines(groups: Iterable[Group]) -> list[Headline]:
    out = []
    for suite, members in sorted(by_suite(groups).items()):
        singles = {g.model: g for g in members if g.strategy == "single"}
        for pair in members:
            if pair.strategy == "single" or "+" not in pair.model:
                continue
            large = next((g for name, g in singles.items() if pair.model.endswith("+" + name)), None)
            if large is None:
                continue
            common = pair.item_ids & large.item_ids
            mine, theirs = pair.on(common), large.on(common)
            row, alone = mine.row, theirs.row
            head = Headline(suite, pair.strategy, pair.model, large.model, items=len(common),
                            settled_by_small=row.settled_by_small)
            stats = compare_items(suite, large.variant, _by_item(theirs), pair.variant, _by_item(mine))
            head.accuracy, head.large_accuracy = stats.accuracy_b, stats.accuracy_a
            if stats.difference is not None:
                head.accuracy_diff_points = 100.0 * stats.difference
                head.accuracy_diff_ci_low = 100.0 * (stats.ci_low or 0.0)
                head.accuracy_diff_ci_high = 100.0 * (stats.ci_high or 0.0)
                head.p_value = stats.p_value
            head.cost_saved_pct = _pct_saved(alone.cost, row.cost)
            large_in_pair = sum(r.per_model[large.model].prompt_tokens + r.per_model[large.model].completion_tokens
                                for r in mine.records if large.model in r.per_model)
            head.large_tokens_saved_pct = _pct_saved(alone.prompt_tokens + alone.completion_tokens, large_in_pair)
            if row.mean_latency_s is not None and alone.mean_latency_s:
                head.latency_overhead_pct = 100.0 * (row.mean_latency_s - alone.mean_latency_s) / alone.mean_latency_s
            out.append(head)
    return out


def match_runs(a: Iterable[CaseRecord], b: Iterable[CaseRecord]) -> list[tuple[Group, Group]]:
    """Two runs' groups matched by suite and strategy, not by test id (which names the model).

    Within a suite and strategy, a model both runs have is matched with itself (the same model
    under other settings or another version); where the runs share no model there, every model of
    A is matched with every model of B (two runs of different models). Each pair is (A's, B's).
    """
    groups_a = {g.key: g for g in aggregate(a)}
    groups_b = {g.key: g for g in aggregate(b)}
    out = []
    places = sorted({(s, st) for s, _, st in groups_a} & {(s, st) for s, _, st in groups_b})
    for suite, strategy in places:
        models_a = sorted(m for s, m, st in groups_a if (s, st) == (suite, strategy))
        models_b = sorted(m for s, m, st in groups_b if (s, st) == (suite, strategy))
        shared = [m for m in models_a if m in models_b]
        pairs = [(m, m) for m in shared] if shared else [(x, y) for x in models_a for y in models_b]
        out += [(groups_a[(suite, ma, strategy)], groups_b[(suite, mb, strategy)]) for ma, mb in pairs]
    return out


def compare_pair(first: Group, second: Group) -> PairedComparison:
    """Two groups of one suite on the items both scored (B minus A)."""
    return compare_items(first.suite, first.variant, _by_item(first), second.variant, _by_item(second))


def flips(first: Group, second: Group) -> list[tuple[CaseRecord, CaseRecord]]:
    """The items both scored on which A and B disagree about correctness, (A's, B's) records, by
    item id: the a_only and b_only items of compare_pair(first, second), by the same rule."""
    a, b = _by_item(first), _by_item(second)
    return [(a[key], b[key]) for key in sorted(set(a) & set(b))
            if a[key].scored and b[key].scored and a[key].counts_correct != b[key].counts_correct]


def compare_runs(a: Iterable[CaseRecord], b: Iterable[CaseRecord]) -> list[PairedComparison]:
    """Each matched pair of match_runs(a, b), compared on the items both scored. `a` and `b` in
    each result are `strategy:model`; which run each side is from is A then B."""
    return [compare_pair(first, second) for first, second in match_runs(a, b)]
