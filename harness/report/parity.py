"""Parity of two runs: does a change of engine or setting (batching, a quantization, fp32 against
the GGUF) keep the answers, or only the score?

Per suite (and strategy and model, matched as `harness compare` matches them), on the items both
runs scored: the share with the same answer, the score difference with its paired 95 % interval
(report/paired.py), for log-likelihood suites the percentiles of |Δ log-likelihood| per choice,
and the flipped items (another answer) with both sides.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.core.record import CaseRecord
from harness.report.paired import PairedComparison, compare_items, match_runs
from harness.report.stats import percentile

PERCENTILES = (50, 90, 99, 100)


@dataclass
class Flip:
    item_id: str
    prediction_a: str | None
    prediction_b: str | None
    correct_a: bool
    correct_b: bool


@dataclass
class SuiteParity:
    suite: str
    a: str
    b: str
    items: int  # items both runs scored
    same_answer: int
    score: PairedComparison
    # |Δ log-likelihood| per choice over the items both scored by log-likelihood: p50, p90, p99, max
    loglikelihood_delta: dict[str, float] | None = None
    choices_compared: int = 0
    flips: list[Flip] = field(default_factory=list)

    @property
    def same_share(self) -> float | None:
        return self.same_answer / self.items if self.items else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "same_share": self.same_share}


def _loglikelihoods(record: CaseRecord) -> dict[str, float] | None:
    values = record.extra.get("loglikelihoods")
    if not isinstance(values, dict):
        return None
    return {str(k): float(v) for k, v in values.items() if isinstance(v, (int, float))}


def parity(a: Iterable[CaseRecord], b: Iterable[CaseRecord]) -> list[SuiteParity]:
    out = []
    for first, second in match_runs(a, b):
        by_a = {r.item_id: r for r in first.records}
        by_b = {r.item_id: r for r in second.records}
        both = [(by_a[k], by_b[k]) for k in sorted(set(by_a) & set(by_b)) if by_a[k].scored and by_b[k].scored]
        deltas: list[float] = []
        flips = []
        for ra, rb in both:
            if ra.prediction != rb.prediction:
                flips.append(Flip(ra.item_id, ra.prediction, rb.prediction, ra.counts_correct, rb.counts_correct))
            la, lb = _loglikelihoods(ra), _loglikelihoods(rb)
            if la is not None and lb is not None:
                deltas.extend(abs(la[c] - lb[c]) for c in sorted(set(la) & set(lb)))
        score = compare_items(first.suite, first.variant, by_a, second.variant, by_b)
        spread = ({f"p{q}" if q < 100 else "max": float(percentile(deltas, q) or 0.0) for q in PERCENTILES}
                  if deltas else None)
        out.append(SuiteParity(first.suite, first.variant, second.variant, len(both), len(both) - len(flips),
                               score, spread, len(deltas), flips))
    return out


def render(results: list[SuiteParity], *, flips: int = 20) -> str:
    """The parity table, then each suite's flipped items (the first `flips` of them)."""
    lines = [f"{'suite':<10} {'A':<26} {'B':<26} {'items':>5} {'same':>7} {'delta':>7} {'95% CI':>16} "
             f"{'|dLL| p50':>9} {'p90':>7} {'max':>7}"]
    for r in results:
        same = f"{r.same_share:.3f}" if r.same_share is not None else "-"
        s = r.score
        delta = f"{s.difference:+.3f}" if s.difference is not None else "-"
        interval = f"[{s.ci_low:+.2f}, {s.ci_high:+.2f}]" if s.ci_low is not None and s.ci_high is not None else "-"
        ll = r.loglikelihood_delta
        spread = (f"{ll['p50']:>9.4f} {ll['p90']:>7.4f} {ll['max']:>7.4f}" if ll else f"{'-':>9} {'-':>7} {'-':>7}")
        lines.append(f"{r.suite:<10} {r.a:<26} {r.b:<26} {r.items:>5} {same:>7} {delta:>7} {interval:>16} {spread}")
    for r in results:
        if not r.flips:
            continue
        lines.append(f"\n{r.suite} {r.a} -> {r.b}: {len(r.flips)} flipped item(s)")
        for flip in r.flips[:flips]:
            mark = {True: "right", False: "wrong"}
            lines.append(f"  {flip.item_id}: A {flip.prediction_a!r} ({mark[flip.correct_a]})  "
                         f"B {flip.prediction_b!r} ({mark[flip.correct_b]})")
        if len(r.flips) > flips:
            lines.append(f"  ... and {len(r.flips) - flips} more (--flips N)")
    return "\n".join(lines)
