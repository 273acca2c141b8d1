"""The cascade ("branching"): a small model tries up to N variants, each checked against the
task's own tests; only if none passes does the large model answer.

The point is cost: every item the small model settles is an item the large model never sees.
So the result says who produced the final answer, every attempt on the way, and tokens and time
per model; the benchmark runs small-only and large-only on the same items beside it.

The large model is asked for lazily (`large` is a callable), so a run whose small model settles
everything never loads the large one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.models.call import ModelCall
from harness.sandbox import Sandbox
from harness.strategies.attempts import GREEDY, Attempt, Variant, attempt, totals
from harness.suites.code import CodeTask


@dataclass
class CascadeResult:
    final: Attempt
    attempts: list[Attempt] = field(default_factory=list)
    escalated: bool = False  # the large model was asked (and its answer is final)

    @property
    def final_model(self) -> str:
        return self.final.model

    @property
    def settled_by_small(self) -> bool:
        """One of the small model's variants passed; the large model was never asked."""
        return not self.escalated

    def per_model(self) -> dict[str, dict[str, float]]:
        return totals(self.attempts)

    def to_extra(self) -> dict[str, Any]:
        """What a case records beside its prediction and score."""
        return {"final_model": self.final_model, "settled_by_small": self.settled_by_small,
                "escalated": self.escalated, "attempts": [a.to_dict() for a in self.attempts],
                "models": self.per_model(),
                "sandbox_s": sum(a.sandbox_s for a in self.attempts),
                "sandbox_cpu_s": sum(a.sandbox_cpu_s for a in self.attempts)}


def run(small: ModelCall, large: Callable[[], ModelCall], task: CodeTask, sandbox: Sandbox,
        small_variants: Sequence[Variant], large_variant: Variant = GREEDY) -> CascadeResult:
    """Small model's variants in order until one passes; else one answer from the large model.

    The large model's answer is final whether it passes or not: there is nothing bigger to ask.
    """
    if not small_variants:
        raise ValueError("a cascade needs at least one variant for the small model")
    attempts: list[Attempt] = []
    for variant in small_variants:
        tried = attempt(small, task, sandbox, variant)
        attempts.append(tried)
        if tried.passed:
            return CascadeResult(final=tried, attempts=attempts)
    final = attempt(large(), task, sandbox, large_variant)
    attempts.append(final)
    return CascadeResult(final=final, attempts=attempts, escalated=True)
