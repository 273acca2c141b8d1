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
