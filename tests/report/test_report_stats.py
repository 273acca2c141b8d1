"""Wilson interval against published values, and the mean's handling of missing figures."""

from __future__ import annotations

import pytest

from harness.report.stats import mcnemar_exact, mean, wilson_interval


def test_wilson_known_value() -> None:
    # 8 of 10: the textbook example, 95 % Wilson interval (0.4902, 0.9433).
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)


def test_wilson_half() -> None:
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-4)
    assert high == pytest.approx(0.5962, abs=1e-4)
    assert (low + high) / 2 == pytest.approx(0.5)


def test_wilson_none_correct_starts_at_zero() -> None:
    low, high = wilson_interval(0, 10)
    assert low == 0.0
    assert high == pytest.approx(0.2775, abs=1e-4)


def test_wilson_all_correct_ends_at_one() -> None:
    low, high = wilson_interval(10, 10)
    assert low == pytest.approx(0.7225, abs=1e-4)
    assert high == 1.0


def test_wilson_wider_z_gives_wider_interval() -> None:
    narrow = wilson_interval(8, 10, z=1.0)
    wide = wilson_interval(8, 10, z=2.576)
    assert wide[0] < narrow[0] < 0.8 < narrow[1] < wide[1]


def test_wilson_empty_sample() -> None:
    assert wilson_interval(0, 0) == (0.0, 0.0)


@pytest.mark.parametrize(("k", "n"), [(-1, 10), (11, 10), (0, -1)])
def test_wilson_rejects_impossible_counts(k: int, n: int) -> None:
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson_interval(k, n)


def test_mean_values() -> None:
    assert mean([1, 2, 3, 4]) == 2.5
    assert mean(iter([0.5])) == 0.5


def test_mean_skips_missing_and_empty_is_none() -> None:
    assert mean([None, 2.0, None, 4.0]) == 3.0
    assert mean([]) is None
    assert mean([None, None]) is None


def test_mcnemar_exact_takes_the_discordant_items_of_a_whole_mmlu_run() -> None:
    # 2.0**n overflows a float past 1023 discordant items; a full MMLU run of two models has thousands
    assert mcnemar_exact(3000, 3000) == 1.0
    assert 0.3 < mcnemar_exact(2990, 3010) < 0.9
    assert 0.0 <= mcnemar_exact(2000, 4000) < 1e-100
