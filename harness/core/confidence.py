"""How sure a model was of its answer: the signals a threshold router decides on (pure functions).

A record carries one `confidence` in [0, 1] (higher: surer) and its `confidence_source`, where the
backend and the suite can give one:

- choice_margin: log-likelihood suites (MMLU): the probability of the best choice minus that of
  the second, the choices' likelihoods normalised over the choices (a softmax);
- mean_logprob: generation (--generation-confidence): exp of the answer's mean token log-probability,
  the geometric mean of its tokens' probabilities (harness/strategies/single.py answer_confidence);
- agreement: GSM8K with --samples-per-item k: the share of k answers (the greedy one and k - 1
  samples) that agree with the greedy answer;
- tests_passed: code suites: the share of the case's programs that passed the suite's tests (the
  cascade's own signal: the small model's program passes, so it stands).

A router compares it with a threshold t: the small model answers when confidence >= t, else the
large one (harness/report/routes.py offline, the `threshold:T` pair strategy live).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

CHOICE_MARGIN = "choice_margin"
TESTS_PASSED = "tests_passed"
MEAN_LOGPROB = "mean_logprob"
AGREEMENT = "agreement"


def choice_probabilities(loglikelihoods: Sequence[float | None]) -> list[float]:
    """The choices' probabilities normalised over the choices; None or -inf is impossible."""
    values = [-math.inf if v is None else float(v) for v in loglikelihoods]
    top = max(values, default=-math.inf)
    if top == -math.inf:
        return [1.0 / len(values)] * len(values) if values else []
    weights = [math.exp(v - top) for v in values]
    total = sum(weights)
    return [w / total for w in weights]


def choice_margin(loglikelihoods: Sequence[float | None]) -> float | None:
    """The best choice's probability minus the second's (1: certain, 0: a tie); None for < 2 choices."""
    if len(loglikelihoods) < 2:
        return None
    first, second = sorted(choice_probabilities(loglikelihoods), reverse=True)[:2]
    return first - second


def passed_share(passed: Sequence[bool]) -> float | None:
    return sum(passed) / len(passed) if passed else None


def agreement(answers: Sequence[str | None], chosen: str | None) -> float | None:
    """The share of the answers equal to the chosen one (an unreadable answer agrees with nothing)."""
    if not answers or chosen is None:
        return 0.0 if answers else None
    return sum(a == chosen for a in answers) / len(answers)
