"""The sequential paired test of --decide (harness/report/sequential.py) and its run-side state
(harness/run/decide.py): known values, error control on simulated streams, the seeded plan."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from pathlib import Path

import pytest

from harness.core.record import CaseRecord
from harness.core.settings import defaults
from harness.report.sequential import OneSidedTest, SequentialPairedTest, fixed_size_items
from harness.run.decide import DECISION_FILE, PLAN_FILE, Decider, Variant, decided_reason, order_key, plan_cases


def test_the_bet_and_the_wealth_by_hand() -> None:
    # H0: mean <= 0. Item 1: no history, the estimate is 0, no gap: no bet. From item 2 on the
    # running mean is far above 0 and the bet is capped at 1/2: each 1 multiplies the wealth by 1.5,
    # so after k ones it is 1.5^(k-1): 1.5^7 = 17.1 < 20 = 1/alpha <= 1.5^8 = 25.6.
    test = OneSidedTest(0.0, 0.05)
    for _ in range(8):
        test.update(1.0)
    assert test.log_wealth == pytest.approx(7 * math.log(1.5)) and not test.rejected
    test.update(1.0)
    assert test.log_wealth == pytest.approx(8 * math.log(1.5)) and test.rejected


def test_no_bet_against_the_data() -> None:
    test = OneSidedTest(0.0, 0.05)
    for _ in range(50):
        test.update(-1.0)  # the data say the mean is below m: the bet stays 0, the wealth 1
    assert test.log_wealth == 0.0 and not test.rejected


def test_without_replacement_a_mean_the_rest_cannot_reach_is_rejected() -> None:
    # Three items, H0: mean <= -1/2, i.e. their sum <= -1.5. After a first +1 the two left would
    # need a mean of -1.25: impossible, so the next look rejects whatever comes.
    test = OneSidedTest(-0.5, 0.05, population=3)
    test.update(1.0)
    assert test.log_wealth == pytest.approx(math.log(2.5)) and not test.rejected  # bet 1 on a gap of 1.5
    assert test.null_mean() == pytest.approx(-1.25)
    test.update(-1.0)
    assert test.rejected


def test_fixed_size_items_known_values() -> None:
    # 20 items right in A only, 10 in B only, of 100; half an item added to each discordant cell:
    # A - B = 10/102, variance 31/102 - (10/102)^2, gap from -D = 10/102 + 0.05, z = 1.6449 + 0.8416.
    z2 = (1.644854 + 0.841621) ** 2
    diff, variance = 10 / 102, 31 / 102 - (10 / 102) ** 2
    assert fixed_size_items(20, 10, 100, 0.05, 0.05) == math.ceil(z2 * variance / (diff + 0.05) ** 2) == 84
    assert fixed_size_items(10, 20, 100, 0.05, 0.05) is None  # A behind by 2D: nothing non-inferior to detect
    assert fixed_size_items(10, 20, 100, 0.05, 0.05, decision="worse") == math.ceil(z2 * variance / diff ** 2) == 190
    # Seven items, all right in B only: planned as 0.5 against 7.5 of 9, not with a variance of 0.
    assert fixed_size_items(0, 7, 7, 0.05, 0.05, decision="worse") == 3


def _stream(n: int, a_only: int, b_only: int, rng: random.Random) -> list[int]:
    items = [1] * a_only + [-1] * b_only + [0] * (n - a_only - b_only)
    rng.shuffle(items)
    return items


def _verdicts(n: int, a_only: int, b_only: int, streams: int, seed: int = 0) -> dict[str, int]:
    rng = random.Random(seed)
    found = {"non_inferior": 0, "worse": 0, "undecided": 0}
    for _ in range(streams):
        test = SequentialPairedTest(0.05, 0.05, n, interval=False)
        for d in _stream(n, a_only, b_only, rng):
            if test.add(d > 0, d < 0):
                break
        found[test.state().decision] += 1
    return found


def test_error_at_the_margins_boundary_stays_at_alpha() -> None:
    # A behind B by exactly D = 5 points (15 of 200 items right in A only, 25 in B only):
    # concluding "not worse by more than D" is the error; its rate must stay near alpha.
    streams = 400
    found = _verdicts(200, 15, 25, streams)
    se = math.sqrt(0.05 * 0.95 / streams)
    assert found["non_inferior"] / streams <= 0.05 + 2 * se
    assert found["worse"] / streams >= 0.8  # and it mostly finds that A is worse


def test_error_when_a_is_as_good_stays_at_alpha_and_items_are_saved() -> None:
    streams, n = 300, 400
    rng = random.Random(1)
    used = 0
    wrong = 0
    for _ in range(streams):
        test = SequentialPairedTest(0.05, 0.05, n, interval=False)
        for d in _stream(n, 40, 40, rng):
            if test.add(d > 0, d < 0):
                break
        wrong += test.state().decision == "worse"
        used += test.items
    assert wrong / streams <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / streams)
    assert used / streams < 0.75 * n  # stops well before the end on average


def test_the_interval_covers_the_truth_and_the_sentence_says_it() -> None:
    test = SequentialPairedTest(0.05, 0.05, 100)
    for d in _stream(100, 30, 10, random.Random(3)):  # A ahead by 20 points
        if test.add(d > 0, d < 0):
            break
    decision = test.state()
    assert decision.decision == "non_inferior"
    assert decision.low > -0.05 and decision.low <= 0.20 <= decision.high
    text = decision.sentence("small", "large")
    assert text.startswith("small is not worse than large by more than 5 points, after ")
    assert "90% confidence sequence, alpha 0.05" in text
    with pytest.raises(ValueError, match="margin"):
        SequentialPairedTest(5.0, 0.05)


def test_plan_orders_paired_items_by_a_seeded_digest() -> None:
    a, b = Variant.parse("small"), Variant.parse("cascade:small+large")
    assert (b.strategy, b.model, str(b)) == ("cascade", "small+large", "cascade:small+large")
    cases = [("mmlu", str(i), "single", m) for i in range(6) for m in ("small", "large")]
    cases += [("mmlu", str(i), "cascade", "small+large") for i in range(5)]  # item 5: A only
    kept, dropped, plan = plan_cases(cases, lambda c: c, (a, b), seed=7)
    assert plan == {"mmlu": sorted(map(str, range(5)), key=lambda i: order_key(7, "mmlu", i))}
    assert [c[1] for c in kept] == [i for i in plan["mmlu"] for _ in range(2)]
    assert [c[2] for c in kept] == ["single", "cascade"] * 5  # A's case, then B's, item after item
    assert len(dropped) == 7 and ("mmlu", "5", "single", "small") in dropped  # unpaired, and other variants
    _, _, other = plan_cases(cases, lambda c: c, (a, b), seed=8)
    assert other["mmlu"] != plan["mmlu"] and sorted(other["mmlu"]) == sorted(plan["mmlu"])


def _record(item: str, model: str, correct: bool, status: str = "ok") -> CaseRecord:
    return CaseRecord(run_id="r", case_id=f"t[{model}-{item}]", suite="mmlu", item_id=item, model=model,
                      backend="x", correct=correct, status=status if correct or status != "ok" else "wrong")


def test_the_decider_counts_in_plan_order_whatever_the_arrival(tmp_path: Path) -> None:
    settings = replace(defaults(), decide=("small", "large"), margin=5.0)
    decider = Decider(tmp_path, settings)
    order = [str(i) for i in range(40)]
    (tmp_path / PLAN_FILE).write_text(json.dumps({"suites": {"mmlu": order}}))
    # Item 0's pair arrives last: nothing counts until it does.
    for item in order[1:12]:
        decider.add(_record(item, "small", False))
        decider.add(_record(item, "large", True))
    assert decider.tests["mmlu"].items == 0 and decided_reason(tmp_path, "mmlu") is None
    decider.add(_record("0", "other", True))  # neither side: ignored
    decider.add(_record("0", "small", False, status="error"))
    decider.add(_record("0", "large", True))
    test = decider.tests["mmlu"]
    assert test.population == 39  # the error left item 0 out
    assert test.decision is not None and test.decision.decision == "worse" and test.items <= 11
    reason = decided_reason(tmp_path, "mmlu")
    assert reason is not None and reason.startswith("decided (--decide): small is worse than large, after ")
    decider.add(_record("30", "small", True))
    data = decider.summary()
    entry = data["suites"]["mmlu"]
    assert entry["ran_not_counted"] == 1 + 2 * (11 - test.items) and entry["items"] == test.items
    assert json.loads((tmp_path / DECISION_FILE).read_text())["suites"]["mmlu"]["decision"] == "worse"


def test_independent_draws_at_the_boundary_too() -> None:
    # population=None: items drawn independently (an endless pool), A behind by exactly D; a cap
    # of 400 items stands for the data running out.
    rng = random.Random(5)
    streams, wrong = 300, 0
    for _ in range(streams):
        test = SequentialPairedTest(0.05, 0.05, None, interval=False)
        for _ in range(400):
            u = rng.random()
            if test.add(u < 0.125, 0.125 <= u < 0.3):  # 12.5 % A only, 17.5 % B only
                break
        wrong += test.state().decision == "non_inferior"
    assert wrong / streams <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / streams)
