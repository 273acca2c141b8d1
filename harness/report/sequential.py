"""Sequential paired testing: is A worse than B by more than a margin, looked at after every item?

The question of `--decide A,B --margin D`: both variants answer the same items, one at a time in a
seeded random order, and after every item we may stop. Each item gives a paired difference
d = correct(A) - correct(B) in {-1, 0, 1}; the quantity tested is the mean difference mu over the
items of the run (A's accuracy minus B's, on the items both scored). Two claims end the test:

- non_inferior: "A is not worse than B by more than D", i.e. mu > -D (H0: mu <= -D rejected);
- worse: "A is worse than B", i.e. mu < 0 (H0: mu >= 0 rejected).

Why the error stays at alpha across every look (the method, and its proof in three lines)
-----------------------------------------------------------------------------------------
Each claim is a test by betting (Waudby-Smith and Ramdas 2023, "Estimating means of bounded random
variables by betting", JRSS-B; Shafer and Vovk's testing by betting). To test H0: mu <= m we start
with wealth 1 and, before item t is seen, bet a fraction lambda_t >= 0 chosen from items 1..t-1
only; the wealth is multiplied by 1 + lambda_t (d_t - m_t). m_t is what H0 says the next item's
mean is at most: the items are drawn without replacement from the N items of the run, so given the
first t-1 the next one's mean is (N mu - S_{t-1}) / (N - t + 1) <= (N m - S_{t-1}) / (N - t + 1) =
m_t (Waudby-Smith and Ramdas's without-replacement construction; N = None: independent draws,
m_t = m). Under H0 each factor has conditional mean <= 1 and is >= 0 (lambda_t <= 1 / (1 + m_t)), so
the wealth is a nonnegative supermartingale starting at 1, and by Ville's inequality
P(wealth ever reaches 1/alpha) <= alpha. That holds for the supremum over all times, so looking
after every item, and stopping whenever we like, keeps the type I error at alpha: no spending
schedule or planned number of looks is needed (an alpha-spending group-sequential design fixes
the looks and the largest sample in advance; this one does not, and it never loses validity when
a run is cut short). The two claims test disjoint nulls (mu <= -D and mu >= 0 cannot both hold),
so whatever mu is, at most one claim can be wrong, and the chance of a wrong decision is <= alpha.

The bet is the "approximate GRAPA" of Waudby-Smith and Ramdas: lambda_t = (mu_hat - m_t) /
(var_hat + (mu_hat - m_t)^2), clipped to [0, c / (1 + m_t)] with c = 1/2, from the running mean and
variance of the earlier items (shrunk toward 0 and 1/4 by one pseudo-item), so it bets hard when
the items disagree rarely (most paired items are concordant) and not at all when the data point
the other way. The interval reported is the running intersection of the same tests over a grid of
m: each bound is one-sided at level alpha, so [low, high] is a (1 - 2 alpha) confidence sequence
for mu, valid at every look.

`fixed_size_items` is the size of the classical one-shot paired test (one-sided z test at alpha,
80 % power) planned with the discordance and difference observed when the sequential test stopped
(each discordant count plus half an item, so a stop after a few one-sided items plans sensibly).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any

BET_CAP = 0.5  # c: at most half the wealth a bet may lose on one item
GRID_STEP = 0.005  # resolution of the reported interval


class OneSidedTest:
    """H0: the mean of x (in [-1, 1]) is <= m, tested by betting; rejected once wealth >= 1/alpha."""

    def __init__(self, m: float, alpha: float, population: int | None = None) -> None:
        self.m = m
        self.threshold = math.log(1.0 / alpha)
        self.population = population
        self.log_wealth = 0.0
        self.rejected = False
        self.n = 0
        self.total = 0.0
        self.squares = 0.25  # the pseudo-item's variance, (x - mean)^2 summed predictably

    def null_mean(self) -> float:
        """m_t: the most the next item's mean can be under H0, given the items seen."""
        if self.population is None:
            return self.m
        remaining = self.population - self.n
        if remaining <= 0:
            return self.m
        return (self.population * self.m - self.total) / remaining

    def update(self, x: float) -> None:
        mean_hat = self.total / (self.n + 1)
        var_hat = self.squares / (self.n + 1)
        if not self.rejected:
            m_t = self.null_mean()
            if m_t <= -1.0:  # H0 needs every remaining item at -1 (or fewer): one above it refutes it
                self.rejected = m_t < -1.0 - 1e-12 or x > -1.0
            elif m_t < 1.0:
                gap = mean_hat - m_t
                bet = min(max(gap / (var_hat + gap * gap), 0.0), BET_CAP / (1.0 + m_t))
                self.log_wealth += math.log1p(bet * (x - m_t))
                self.rejected = self.log_wealth >= self.threshold
        self.squares += (x - mean_hat) ** 2
        self.n += 1
        self.total += x


@dataclass
class Decision:
    """Where the sequential test stands (and, once decided, where it stopped)."""

    decision: str  # non_inferior | worse | undecided
    items: int  # paired items the test used
    population: int | None  # the items the run could have used
    margin: float  # D, as a fraction
    alpha: float
    difference: float | None  # observed mean of A - B over the items used
    low: float  # the (1 - 2 alpha) confidence sequence for A - B
    high: float
    a_only: int = 0  # items right in A only
    b_only: int = 0
    equivalent: bool = False  # non_inferior and also not better by more than D
    fixed_size_items: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sentence(self, a: str, b: str) -> str:
        points = f"{100 * self.margin:g} points"
        interval = f"{100 * self.low:+.1f} to {100 * self.high:+.1f} points"
        level = f"{100 * (1 - 2 * self.alpha):g}% confidence sequence"
        if self.decision == "non_inferior":
            what = f"{a} is not worse than {b} by more than {points}"
            if self.equivalent:
                what += " (and not better by more: equivalent)"
        elif self.decision == "worse":
            what = f"{a} is worse than {b}"
        else:
            what = f"undecided: {a} against {b} with margin {points}"
        of = f" of {self.population}" if self.population is not None else ""
        return f"{what}, after {self.items}{of} items; A - B {interval} ({level}, alpha {self.alpha:g})"


def fixed_size_items(a_only: int, b_only: int, items: int, margin: float, alpha: float,
                     power: float = 0.8, decision: str = "non_inferior") -> int | None:
    """Items a one-shot paired z test at one-sided level alpha needs for the given power, planned
    with the observed discordant shares: n = (z_{1-alpha} + z_power)^2 var / gap^2 where var is the
    variance of one paired difference and gap the distance of the observed difference from the
    null (from -D for non-inferiority, from 0 for "worse"). None where there is no gap to detect."""
    if items <= 0:
        return None
    # Half an item added to each discordant cell (Agresti and Min, as report/stats.py does): a
    # stop after a few items all discordant one way would otherwise plan with a variance of 0.
    a, b, n = a_only + 0.5, b_only + 0.5, items + 2.0
    diff = (a - b) / n
    variance = (a + b) / n - diff * diff
    gap = diff + margin if decision != "worse" else -diff
    if gap <= 0:
        return None
    z = NormalDist().inv_cdf(1 - alpha) + NormalDist().inv_cdf(power)
    return max(1, math.ceil(z * z * variance / (gap * gap)))


class SequentialPairedTest:
    """Feed paired outcomes one item at a time; `decision` is set at the first conclusive look."""

    def __init__(self, margin: float, alpha: float, population: int | None = None,
                 interval: bool = True) -> None:
        if not 0 < margin < 1:
            raise ValueError(f"margin must be a fraction in (0, 1), got {margin}")
        if not 0 < alpha < 0.5:
            raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
        self.margin, self.alpha, self.population = margin, alpha, population
        self.non_inferior = OneSidedTest(-margin, alpha, population)  # on d: H0 mu <= -D
        self.worse = OneSidedTest(0.0, alpha, population)  # on -d: H0 -mu <= 0, i.e. mu >= 0
        # The interval: lower tests (mu <= m) and upper tests (mu >= m) over a grid of m.
        steps = int(round(2 / GRID_STEP)) if interval else 0
        self.grid = [-1.0 + i * GRID_STEP for i in range(steps + 1)]
        self.lower = [OneSidedTest(m, alpha, population) for m in self.grid]
        self.upper = [OneSidedTest(-m, alpha, population) for m in self.grid]
        self.items = self.a_only = self.b_only = 0
        self.decision: Decision | None = None

    def add(self, a_correct: bool, b_correct: bool) -> Decision | None:
        """One more paired item; the decision once made (later items no longer count)."""
        if self.decision is not None:
            return self.decision
        d = float(a_correct) - float(b_correct)
        self.items += 1
        self.a_only += d > 0
        self.b_only += d < 0
        self.non_inferior.update(d)
        self.worse.update(-d)
        for test in self.lower:
            test.update(d)
        for test in self.upper:
            test.update(-d)
        if self.non_inferior.rejected or self.worse.rejected:
            self.decision = self.state()
        return self.decision

    def drop(self) -> None:
        """One item of the population will never be paired (an error on either side): the test
        is then about the items both variants scored."""
        if self.population is None or self.decision is not None:
            return
        self.population -= 1
        for test in (self.non_inferior, self.worse, *self.lower, *self.upper):
            test.population = self.population

    def bounds(self) -> tuple[float, float]:
        """The confidence sequence: the largest m below which every grid point is rejected from
        below, and the smallest above which every one is rejected from above."""
        low, high = -1.0, 1.0
        for m, test in zip(self.grid, self.lower, strict=True):
            if not test.rejected:
                break
            low = m
        for m, test in zip(reversed(self.grid), reversed(self.upper), strict=True):
            if not test.rejected:
                break
            high = m
        return low, high

    def state(self) -> Decision:
        """The decision so far: non_inferior, worse, or undecided."""
        if self.non_inferior.rejected:
            verdict = "non_inferior"
        elif self.worse.rejected:
            verdict = "worse"
        else:
            verdict = "undecided"
        low, high = self.bounds() if self.grid else (-1.0, 1.0)
        diff = (self.a_only - self.b_only) / self.items if self.items else None
        return Decision(verdict, self.items, self.population, self.margin, self.alpha, diff, low, high,
                        self.a_only, self.b_only,
                        equivalent=verdict == "non_inferior" and high < self.margin,
                        fixed_size_items=fixed_size_items(self.a_only, self.b_only, self.items, self.margin,
                                                          self.alpha, decision=verdict))
