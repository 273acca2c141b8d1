"""--decide's sequential paired test on simulated streams: its error rate, power and items used.

    python bench/decide_validation.py [--streams 2000] [--items 1000] [--margin 5] [--alpha 0.05]
                                      [--discordance 0.3] [--seed 0]
    python bench/decide_validation.py --replay reports/RUN --a smollm2-135m --b gemma3-270m-q4 [--suite mmlu]

Each stream is a run as `--decide` makes it: a population of N items on which A and B disagree on
a share `discordance` of the items, A behind B by a true difference of 0, D/2, D (the margin's
boundary) or 2D points, taken in a fresh random order; the test (harness/report/sequential.py,
the same code the plugin runs) stops at its first conclusive look or when the items run out.
A second boundary row has few disagreements (D + 2 points), where the betting is most aggressive.

Printed per scenario: the share of streams ending non_inferior / worse / undecided with their
Monte-Carlo standard errors, the wrong decisions (non_inferior when A is behind by D or more,
worse when A is not behind at all), the power (the share of right decisions: non_inferior at 0,
either at D/2, worse at D and 2D), the mean items used with its error and as a share of N, and the
items a fixed-size test (one-sided z test at alpha, 80 % power) needs for the same scenario. The
check: the error at the boundary is at most alpha plus two Monte-Carlo standard errors.

--replay takes a recorded run where A and B answered the same items, shuffles its items `--replays`
times and runs the test on each order: the share of replays that reach a decision the full run
agrees with (non_inferior: the full run's A - B is above -D; worse: it is below 0) and the share of
items used.
"""

from __future__ import annotations

import argparse
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

from harness.report.sequential import SequentialPairedTest


@dataclass
class Outcome:
    verdicts: dict[str, int]
    items: list[int]


def population(n: int, behind: float, discordance: float) -> list[int]:
    """n paired differences A - B (+1, -1, 0) whose mean is exactly -behind (to the nearest item)."""
    b_only = round(n * (discordance + behind) / 2)
    a_only = round(n * discordance) - b_only
    if a_only < 0 or a_only + b_only > n:
        raise SystemExit(f"a difference of {behind} needs a discordance of at least {behind}")
    return [1] * a_only + [-1] * b_only + [0] * (n - a_only - b_only)


def run_streams(items: Sequence[int], streams: int, margin: float, alpha: float, rng: random.Random) -> Outcome:
    verdicts = {"non_inferior": 0, "worse": 0, "undecided": 0}
    used = []
    order = list(items)
    for _ in range(streams):
        rng.shuffle(order)
        test = SequentialPairedTest(margin, alpha, len(order), interval=False)
        for d in order:
            if test.add(d > 0, d < 0) is not None:
                break
        state = test.state()
        verdicts[state.decision] += 1
        used.append(state.items)
    return Outcome(verdicts, used)


def share(count: int, n: int) -> str:
    p = count / n
    return f"{p:6.3f} ±{math.sqrt(p * (1 - p) / n):.3f}"


def fixed_n(behind: float, discordance: float, margin: float, alpha: float) -> str:
    """Items a one-shot paired z test needs at 80 % power: for non-inferiority when A is within the
    margin, for "A is worse" when it is behind by D or more."""
    gap = margin - behind if behind < margin else behind
    if gap <= 0:
        return "-"
    variance = discordance - behind * behind
    z = NormalDist().inv_cdf(1 - alpha) + NormalDist().inv_cdf(0.8)
    return str(math.ceil(z * z * variance / (gap * gap)))


def simulate(args: argparse.Namespace) -> bool:
    margin, alpha, n = args.margin / 100, args.alpha, args.items
    rng = random.Random(args.seed)
    print(f"{args.streams} streams per scenario, N = {n} items, margin D = {args.margin:g} points, "
          f"alpha = {alpha:g}, discordance {args.discordance:g}")
    print(f"{'A behind B by':>16} {'disc':>5} {'non_inferior':>14} {'worse':>14} {'undecided':>14} "
          f"{'wrong':>14} {'power':>14} {'mean items':>16} {'share':>6} {'fixed n':>8}")
    scenarios = [("0", 0.0, args.discordance), ("D/2", margin / 2, args.discordance),
                 ("D (boundary)", margin, args.discordance), ("D (boundary)", margin, margin + 0.02),
                 ("2D", 2 * margin, args.discordance)]
    passed = True
    for name, behind, discordance in scenarios:
        out = run_streams(population(n, behind, discordance), args.streams, margin, alpha, rng)
        wrong = out.verdicts["non_inferior"] if behind >= margin else out.verdicts["worse"] if behind <= 0 else 0
        mean = sum(out.items) / len(out.items)
        spread = math.sqrt(sum((x - mean) ** 2 for x in out.items) / (len(out.items) - 1) / len(out.items))
        right = args.streams - wrong - out.verdicts["undecided"]
        counts = (out.verdicts["non_inferior"], out.verdicts["worse"], out.verdicts["undecided"], wrong, right)
        shares = " ".join(f"{share(count, args.streams):>14}" for count in counts)
        print(f"{name:>16} {discordance:5.2f} {shares} {mean:9.1f} ±{spread:5.1f} {mean / n:6.3f} "
              f"{fixed_n(behind, discordance, margin, alpha):>8}")
        if behind == margin:
            error = wrong / args.streams
            mc = math.sqrt(max(error * (1 - error), alpha * (1 - alpha)) / args.streams)
            ok = error <= alpha + 2 * mc
            passed &= ok
            print(f"{'':>16} error at the boundary {error:.4f} <= alpha + 2 MC s.e. = {alpha + 2 * mc:.4f}: "
                  f"{'yes' if ok else 'NO'}")
    return passed


def replay(args: argparse.Namespace) -> bool:
    from harness.report.aggregate import latest
    from harness.report.write import RESULTS_FILE, load_records
    from harness.run.decide import Variant

    records = latest(load_records(Path(args.replay) / RESULTS_FILE))
    a, b = Variant.parse(args.a), Variant.parse(args.b)
    sides: dict[tuple[str, str], dict[str, bool]] = {}
    for r in records:
        if args.suite and r.suite != args.suite or not r.scored:
            continue
        side = "a" if a.matches(r.strategy, r.model) else "b" if b.matches(r.strategy, r.model) else None
        if side:
            sides.setdefault((r.suite, r.item_id), {})[side] = r.counts_correct
    pairs = [(s["a"], s["b"]) for s in sides.values() if len(s) == 2]
    if not pairs:
        raise SystemExit(f"{args.replay}: no item has scored records of both {a} and {b}")
    margin, n = args.margin / 100, len(pairs)
    full = sum(x - y for x, y in pairs) / n
    agree, used = 0, 0
    rng = random.Random(args.seed)
    for _ in range(args.replays):
        rng.shuffle(pairs)
        test = SequentialPairedTest(margin, args.alpha, n, interval=False)
        for x, y in pairs:
            if test.add(x, y) is not None:
                break
        state = test.state()
        agree += (state.decision == "non_inferior" and full > -margin) or (state.decision == "worse" and full < 0)
        used += state.items
    print(f"replay of {args.replay}: {n} paired items, full run A - B = {100 * full:+.2f} points "
          f"(margin {args.margin:g})")
    print(f"{args.replays} shuffled replays reach a decision the full run agrees with: "
          f"{share(agree, args.replays)}; mean share of items used {used / args.replays / n:.3f}")
    return agree / args.replays >= 0.95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--items", type=int, default=1000, help="items in each stream's population")
    parser.add_argument("--margin", type=float, default=5.0, help="D in points")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--discordance", type=float, default=0.3, help="share of items A and B disagree on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--replay", help="a run folder with results.jsonl")
    parser.add_argument("--a")
    parser.add_argument("--b")
    parser.add_argument("--suite")
    parser.add_argument("--replays", type=int, default=200)
    args = parser.parse_args()
    if args.replay:
        if not (args.a and args.b):
            parser.error("--replay needs --a and --b")
        ok = replay(args)
    else:
        ok = simulate(args)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
