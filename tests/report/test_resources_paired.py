"""Resource sums, latency percentiles, McNemar on a known table, paired differences and the pair
headline, from hand-made records with known answers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import pytest

from harness.core.record import CaseRecord, ModelUsage
from harness.monitor.cases import CaseWindows, merge
from harness.monitor.sampler import Monitor
from harness.report.aggregate import aggregate, summarize
from harness.report.paired import headlines, paired
from harness.report.stats import mcnemar_exact, paired_difference, percentile
from harness.report.tables import resources_table


def rec(item: str, model: str = "m", *, strategy: str = "single", correct: bool = True, wall: float = 1.0,
        resources: dict[str, Any] | None = None, cost: float = 0.0,
        per_model: dict[str, ModelUsage] | None = None, status: str | None = None) -> CaseRecord:
    per_model = per_model or {}
    return CaseRecord(run_id="r", case_id=f"{strategy}-{model}-{item}", suite="s", item_id=item, model=model,
                      backend="fake", strategy=strategy, correct=correct,
                      status=status or ("ok" if correct else "wrong"),  # type: ignore[arg-type]
                      timings={"wall_s": wall}, resources=resources or {}, cost=cost, per_model=per_model,
                      usage={"prompt_tokens": sum(u.prompt_tokens for u in per_model.values()),
                             "completion_tokens": sum(u.completion_tokens for u in per_model.values())})


def test_percentile_interpolates_like_numpy() -> None:
    values = [1.0, 2.0, 3.0, 4.0, None]
    assert percentile(values, 50) == 2.5
    assert percentile(values, 95) == pytest.approx(3.85)
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) is None


def test_mcnemar_exact_on_known_tables() -> None:
    # b=1, c=9: 2 * P(X <= 1), X ~ Bin(10, 1/2) = 2 * 11 / 1024
    assert mcnemar_exact(1, 9) == pytest.approx(22 / 1024)
    assert mcnemar_exact(9, 1) == pytest.approx(22 / 1024)
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact(3, 3) == 1.0
    assert mcnemar_exact(0, 0) == 1.0
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_paired_difference_and_interval() -> None:
    diff, low, high = paired_difference(6, 2, 20)
    assert diff == pytest.approx(0.2)
    assert low < 0.2 < high and -1 <= low and high <= 1
    # every item discordant one way: the interval keeps a width (adjusted Wald)
    diff, low, high = paired_difference(3, 0, 3)
    assert diff == 1.0 and low < 0.6 and high == 1.0


def test_resources_sum_and_peak_and_gpu_left_out_when_failed() -> None:
    gpu_ok = [{"index": 0, "samples": 4, "util_mean": 50.0, "util_peak": 90.0, "memory_mean_mb": 1000.0,
               "memory_peak_mb": 1500.0, "energy_j": 10.0}]
    failed = [{"index": 0, "samples": 0}]  # every reading failed: no GPU figures from this case
    records = [
        rec("1", wall=1.0, resources={"cpu_s": 2.0, "duration_s": 1.0, "rss_peak_mb": 300.0, "gpu": gpu_ok}),
        rec("2", wall=3.0, resources={"cpu_s": 1.0, "duration_s": 3.0, "rss_peak_mb": 500.0, "gpu": failed}),
        rec("3", wall=2.0),  # not monitored
    ]
    (row,) = summarize(records)
    assert row.wall_s == 6.0 and row.latency_p50_s == 2.0 and row.latency_p95_s == pytest.approx(2.9)
    assert row.cpu_s == 3.0 and row.cpu_percent_mean == pytest.approx(75.0)  # 3 CPU s over 4 s
    assert row.rss_peak_mb == 500.0
    assert row.cpu_user_s is None and row.cpu_percent_peak is None  # records without those figures
    assert (row.gpu_util_mean, row.gpu_util_peak) == (50.0, 90.0)
    assert (row.gpu_memory_mean_mb, row.gpu_memory_peak_mb, row.gpu_energy_j) == (1000.0, 1500.0, 10.0)
    (none,) = summarize([rec("1")])
    assert none.cpu_s is None and none.gpu_util_mean is None and none.gpu_energy_j is None
    text = resources_table([none])
    assert "GPU" not in text and "CPU" not in text and "cost" not in text and "p95" in text


def test_pair_headline_against_the_large_model_alone() -> None:
    def usage(prompt: int, completion: int, cost: float) -> ModelUsage:
        return ModelUsage(calls=1, prompt_tokens=prompt, completion_tokens=completion, cost=cost)

    large = [rec(str(i), "big", correct=i < 8, wall=2.0, cost=0.01, per_model={"big": usage(100, 100, 0.01)})
             for i in range(10)]
    # the pair: the small model settles items 0-5 alone (no large tokens), the large answers 6-9
    pair = []
    for i in range(10):
        parts = {"small": usage(50, 50, 0.0)}
        if i >= 6:
            parts["big"] = usage(100, 100, 0.01)
        pair.append(rec(str(i), "small+big", strategy="cascade", correct=i < 7, wall=3.0,
                        cost=sum(p.cost for p in parts.values()), per_model=parts))
    (head,) = headlines(aggregate(large + pair))
    assert (head.model, head.large, head.items) == ("small+big", "big", 10)
    assert head.accuracy == 0.7 and head.large_accuracy == 0.8
    assert head.accuracy_diff_points == pytest.approx(-10.0)
    assert head.accuracy_diff_ci_low < -10.0 < head.accuracy_diff_ci_high
    assert head.cost_saved_pct == pytest.approx(60.0)  # 0.04 against 0.10
    assert head.large_tokens_saved_pct == pytest.approx(60.0)  # 800 of 2000 large tokens
    assert head.latency_overhead_pct == pytest.approx(50.0)
    assert head.p_value == 1.0  # one discordant item (7)

    shares = {s.part: s for g in aggregate(pair) for s in g.shares}
    assert shares["big"].cases == 4 and shares["big"].prompt_tokens == 400
    assert shares["small"].calls == 10 and shares["small"].completion_tokens == 500


def test_paired_counts_on_common_items_without_errors() -> None:
    a = [rec(str(i), "a", correct=i < 5) for i in range(10)]
    b = [rec(str(i), "b", correct=i >= 3) for i in range(10)]
    b[9] = rec("9", "b", status="error", correct=False)  # left out of both sides
    (result,) = paired(aggregate(a + b))
    assert (result.a, result.b, result.items) == ("single:a", "single:b", 9)
    assert (result.both_right, result.a_only, result.b_only, result.neither) == (2, 3, 4, 0)
    assert result.difference == pytest.approx(1 / 9)
    assert result.p_value == pytest.approx(mcnemar_exact(3, 4))


def test_a_model_loaded_during_the_case_is_sampled_in_its_own_window() -> None:
    monitors: dict[frozenset[int], Monitor] = {}

    def monitor_of(pids: set[int], children: bool) -> Monitor:
        key = frozenset(pids)
        if key not in monitors:
            monitors[key] = Monitor(sorted(pids), interval=0.05, gpus=False, children=children).start()
        return monitors[key]

    windows = CaseWindows(monitor_of)
    windows.add("small", os.getpid())
    # the large model's process appears mid-case (a lazily started server, say)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        windows.add("large", child.pid)
        deadline = time.process_time() + 0.3
        x = 0
        while time.process_time() < deadline:  # CPU time of our own, the small model's process
            x += 1
        summary = windows.stop()
    finally:
        child.kill()
        child.wait()
        for monitor in monitors.values():
            monitor.close()
    own = summary["per_model"]
    assert set(own) == {"small", "large"}
    assert own["small"]["shared_with"] == [] and own["large"]["shared_with"] == []
    assert own["small"]["cpu_s"] > 0.2
    assert summary["cpu_s"] == pytest.approx(own["small"]["cpu_s"] + own["large"]["cpu_s"])
    assert summary["rss_peak_mb"] == pytest.approx(own["small"]["rss_peak_mb"] + own["large"]["rss_peak_mb"])


def test_merge_of_one_window_is_that_window() -> None:
    assert merge([{"cpu_s": 1.0}]) == {"cpu_s": 1.0}
    assert merge([]) == {}


def test_user_and_system_cpu_and_the_mean_and_peak_of_cpu_and_rss() -> None:
    records = [
        rec("1", wall=1.0, resources={"cpu_s": 2.0, "cpu_user_s": 1.5, "cpu_system_s": 0.5, "duration_s": 1.0,
                                      "cpu_percent_peak": 180.0, "rss_mean_mb": 200.0, "rss_peak_mb": 300.0}),
        rec("2", wall=3.0, resources={"cpu_s": 1.0, "cpu_user_s": 0.75, "cpu_system_s": 0.25, "duration_s": 3.0,
                                      "cpu_percent_peak": 60.0, "rss_mean_mb": 400.0, "rss_peak_mb": 500.0}),
    ]
    (row,) = summarize(records)
    assert (row.cpu_user_s, row.cpu_system_s, row.cpu_s) == (2.25, 0.75, 3.0)
    assert row.cpu_percent_mean == pytest.approx(75.0) and row.cpu_percent_peak == 180.0
    assert row.rss_mean_mb == pytest.approx((200.0 * 1 + 400.0 * 3) / 4) and row.rss_peak_mb == 500.0
    text = resources_table([row])
    header = text.splitlines()[0].split()
    for column in ("user", "sys", "CPU", "%", "peak", "RSS"):
        assert column in header
    assert "2.2 s" in text and "0.8 s" in text and "180" in text and "350 MB" in text and "500 MB" in text


def test_a_model_host_is_sampled_without_a_scan_for_children() -> None:
    """A model host starts no process (backends/hosted.py): its window reads the host alone, not
    /proc for its children at each edge, which costs 1-4 ms a scan on a busy machine."""
    from harness.backends.hosted import HostedBackend

    asked: list[bool] = []

    def monitor_of(pids: set[int], children: bool) -> Monitor:
        asked.append(children)
        return Monitor(sorted(pids), interval=0, gpus=False, children=children)

    windows = CaseWindows(monitor_of)
    windows.add("hosted", os.getpid(), HostedBackend.process_children)
    windows.add("server", os.getppid())
    assert asked == [False, True]
    assert [m.children for m in (w.monitor for w in windows.windows.values())] == [False, True]
