"""Small statistics for scoreboards: pure functions, standard library only.

Benchmark samples are often small (tens of items per suite in the default run), so a bare accuracy
says little; the Wilson score interval is used because, unlike the normal approximation, it stays
inside [0, 1] and behaves sensibly at 0 and n correct answers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for k successes out of n trials (z=1.96: 95 %).

    n == 0 gives (0.0, 0.0): there is nothing to estimate, and a report should show no interval
    rather than fail.
    """
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"wilson_interval needs 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half_width = (z / denominator) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # Clamp: rounding can push the bounds a hair outside [0, 1] at k == 0 or k == n.
    return (max(0.0, centre - half_width), min(1.0, centre + half_width))


def mean(values: Iterable[float | int | None]) -> float | None:
    """The arithmetic mean of the values that are present, None when there are none.

    None entries are skipped rather than counted as zero: a case without a timing (say, an
    error raised before the model was called) must not pull a latency average down.
    """
    total = 0.0
    count = 0
    for value in values:
        if value is None:
            continue
        total += float(value)
        count += 1
    return total / count if count else None


def percentile(values: Iterable[float | int | None], q: float) -> float | None:
    """The q-th percentile (0-100) of the values present, by linear interpolation between the
    closest ranks (numpy's default), None when there are none."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile needs 0 <= q <= 100, got {q}")
    data = sorted(float(v) for v in values if v is not None)
    if not data:
        return None
    position = (len(data) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (position - low)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for the discordant pairs of a paired comparison.

    b: items only the first variant got right; c: items only the second got right. Under the null
    hypothesis (both equally good) each discordant item is a fair coin, so the p-value is twice the
    binomial tail of the smaller count, capped at 1 (the exact test; no continuity correction
    needed). No discordant items: nothing tells them apart, p = 1.
    """
    if b < 0 or c < 0:
        raise ValueError(f"mcnemar_exact needs counts >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    # In integers: 2.0**n overflows a float beyond n = 1023 discordant items (a whole MMLU run has
    # thousands), and each binomial coefficient from the one before is far cheaper than math.comb.
    term = total = 1
    for i in range(1, min(b, c) + 1):
        term = term * (n - i + 1) // i
        total += term
    tail = total / (1 << n)
    return min(1.0, 2.0 * tail)


def paired_difference(b: int, c: int, n: int, z: float = 1.96) -> tuple[float, float, float]:
    """The difference in accuracy (first minus second) on n paired items, and its 95 % interval.

    b and c are the discordant counts as in mcnemar_exact. The interval is Agresti and Min's
    (2005) adjusted Wald interval: half an item added to each cell of the 2x2 table before the
    Wald formula, which keeps it from collapsing to zero width when every item is discordant
    one way (the plain Wald interval gives [-1, -1] for 3 of 3); clamped to [-1, 1].
    """
    if n <= 0 or b < 0 or c < 0 or b + c > n:
        raise ValueError(f"paired_difference needs 0 <= b + c <= n and n > 0, got b={b}, c={c}, n={n}")
    diff = (b - c) / n
    b2, c2, n2 = b + 0.5, c + 0.5, n + 2.0
    adjusted = (b2 - c2) / n2
    variance = ((b2 + c2) / n2 - adjusted * adjusted) / n2
    half = z * math.sqrt(max(variance, 0.0))
    return diff, max(-1.0, adjusted - half), min(1.0, adjusted + half)


def near_chance(low: float | None, high: float | None, chance: float | None) -> bool:
    """An accuracy whose 95 % interval includes the chance level (a guesser's accuracy): the
    sample cannot tell the variant from guessing. No interval or no chance level: False."""
    return low is not None and high is not None and chance is not None and low <= chance <= high
