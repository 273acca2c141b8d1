"""The columns of the pages' tables: the aggregation's figures under names with units.

The scoreboard's main columns are what a reader picks a variant by (accuracy and its interval,
errors, latency, CPU, memory, cost where priced); token counts, percentiles, GPU figures and the
counts behind accuracy are detail, folded under the table (report/html_table.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.report.aggregate import SummaryRow
from harness.report.html_table import Column, integer, number, percent, signed, table, text, unit, yes_no
from harness.report.paired import Headline, PairedComparison
from harness.report.resources import ModelShare
from harness.report.verdict import format_p

SECONDS = unit(number(3), "s")
MB = unit(number(3), "MB")


def _interval(low: float | None, high: float | None, scale: float = 100.0, sign: bool = False) -> str:
    if low is None or high is None:
        return "–"
    form = "{:+.0f}" if sign else "{:.0f}"
    return f"[{form.format(scale * low)}, {form.format(scale * high)}]"


def _dollars(value: Any) -> str:
    return f"${number(3)(value)}"


def _key(name: str, header: str, title: str = "") -> Column:
    return Column(header, lambda r: getattr(r, name), text, title, is_text=True)


def _errors(row: SummaryRow) -> str:
    """The errors, and of them the crashes (a model's host process died) where there were any."""
    crashes = row.crashes
    return f"{row.errors:,}" + (f" ({crashes:,} crash{'es' if crashes != 1 else ''})" if crashes else "")


def _field(name: str, header: str, form: Any = text, title: str = "", detail: bool = False) -> Column:
    return Column(header, lambda r: getattr(r, name), form, title, detail)


def scoreboard_columns(with_suite: bool = True) -> list[Column]:
    keys = ([_key("suite", "suite")] if with_suite else []) + [_key("model", "model"), _key("strategy", "strategy")]
    return keys + [
        _field("items", "items", integer, "cases recorded, whatever their status"),
        _field("accuracy", "accuracy", percent(1), "correct over scored (ok, wrong, invalid output)"),
        Column("95% CI (%)", lambda r: r.ci_low, title="Wilson 95% interval of the accuracy",
               shown=lambda r: _interval(r.ci_low, r.ci_high)),
        Column("errors", lambda r: r.errors, integer, "errors, timeouts and crashes of a model's host: outside "
               "accuracy", shown=_errors),
        _field("mean_latency_s", "latency mean (s)", SECONDS, "mean wall time per case"),
        _field("latency_p95_s", "latency p95 (s)", SECONDS, "95th percentile of the wall time per case"),
        _field("cpu_s", "CPU (s)", SECONDS, "CPU time of the inference processes, all cases"),
        _field("rss_peak_mb", "peak RSS (MB)", MB, "highest resident memory of the inference processes"),
        Column("cost ($)", lambda r: r.cost or None, _dollars, "priced API cost, all cases"),
        _field("prompt_engine_share", "prompt speed (% of engine)", percent(0),
               "prompt tokens/s of the run over the engine's own, measured on this machine"),
        _field("decode_engine_share", "decode speed (% of engine)", percent(0),
               "completion tokens/s of the run over the engine's own greedy decode"),
        # detail
        _field("scored", "scored", integer, "ok, wrong or invalid output", True),
        _field("correct", "correct", integer, "", True),
        _field("invalid", "invalid", integer, "answers not in the form asked (scored as wrong)", True),
        _field("crashes", "crashes", integer, "cases whose model host died (counted in errors)", True),
        _field("latency_p50_s", "latency p50 (s)", SECONDS, "median wall time per case", True),
        _field("wall_s", "wall total (s)", SECONDS, "wall time of every case, summed", True),
        _field("model_s", "model time (s)", SECONDS, "time inside model calls, summed", True),
        _field("prompt_tokens", "tokens in", integer, "", True),
        _field("completion_tokens", "tokens out", integer, "", True),
        _field("tokens_per_s", "tokens/s", number(3), "prompt and completion tokens over model time", True),
        _field("cpu_percent_mean", "CPU mean (%)", number(3), "CPU time over monitored time (100 = one core)", True),
        _field("settled_by_small", "settled by small", percent(0), "cascade: share the small model settled", True),
        _field("gpu_util_mean", "GPU mean (%)", number(3), "", True),
        _field("gpu_util_peak", "GPU peak (%)", number(3), "", True),
        _field("gpu_memory_mean_mb", "GPU memory mean (MB)", MB, "", True),
        _field("gpu_memory_peak_mb", "GPU memory peak (MB)", MB, "", True),
        _field("gpu_energy_j", "GPU energy (J)", unit(number(3), "J"), "", True),
        _field("prompt_tokens_per_s", "prompt tokens/s", number(3), "prompt tokens over the time to first tokens",
               True),
        _field("engine_prompt_tokens_per_s", "engine prompt tokens/s", number(3),
               "the engine's own, one 256-token prompt", True),
        _field("completion_tokens_per_s", "decode tokens/s", number(3), "tokens after the first over their time",
               True),
        _field("engine_decode_tokens_per_s", "engine decode tokens/s", number(3), "the engine's own greedy decode",
               True),
    ]


def scoreboard(table_id: str, rows: Sequence[SummaryRow], with_suite: bool = True) -> str:
    return table(table_id, scoreboard_columns(with_suite), rows)


def paired_columns(a_header: str = "A", b_header: str = "B") -> list[Column]:
    return [
        _key("suite", "suite"), _key("a", a_header), _key("b", b_header),
        _field("items", "items", integer, "items both scored"),
        _field("accuracy_a", f"accuracy {a_header}", percent(1)),
        _field("accuracy_b", f"accuracy {b_header}", percent(1)),
        Column(f"{b_header} − {a_header} (points)", lambda p: None if p.difference is None else 100 * p.difference,
               signed(1), "difference in accuracy on the items both scored"),
        Column("95% CI (points)", lambda p: p.ci_low, title="adjusted Wald 95% interval of the difference",
               shown=lambda p: _interval(p.ci_low, p.ci_high, sign=True)),
        Column("p", lambda p: p.p_value, format_p, "exact McNemar p-value, two-sided"),
        _field("a_only", f"{a_header} only right", integer, f"items {a_header} got right and {b_header} wrong"),
        _field("b_only", f"{b_header} only right", integer, f"items {b_header} got right and {a_header} wrong"),
        _field("both_right", "both right", integer, "", True),
        _field("neither", "neither right", integer, "", True),
    ]


def paired_table(table_id: str, pairs: Sequence[PairedComparison], a_header: str = "A", b_header: str = "B") -> str:
    return table(table_id, paired_columns(a_header, b_header), pairs)


def headline_table(table_id: str, heads: Sequence[Headline]) -> str:
    columns = [
        _key("suite", "suite"), _key("strategy", "strategy"), _key("model", "pair"), _key("large", "large alone"),
        _field("items", "items", integer, "items both answered"),
        _field("accuracy", "accuracy pair", percent(1)),
        _field("large_accuracy", "accuracy large", percent(1)),
        _field("accuracy_diff_points", "pair − large (points)", signed(1)),
        Column("95% CI (points)", lambda h: h.accuracy_diff_ci_low, title="adjusted Wald 95% interval",
               shown=lambda h: _interval(h.accuracy_diff_ci_low, h.accuracy_diff_ci_high, 1.0, sign=True)),
        Column("p", lambda h: h.p_value, format_p, "exact McNemar p-value"),
        _field("cost_saved_pct", "cost saved (%)", signed(0), "against the large model alone; none when local"),
        _field("large_tokens_saved_pct", "large-model tokens saved (%)", signed(0),
               "negative: the pair used more of the large model's tokens", True),
        _field("latency_overhead_pct", "latency overhead (%)", signed(0), "mean latency against the large alone",
               True),
        _field("settled_by_small", "settled by small", percent(0), "", True),
    ]
    return table(table_id, columns, heads)


def shares_table(table_id: str, shares: Sequence[ModelShare]) -> str:
    columns = [
        _key("suite", "suite"), _key("strategy", "strategy"), _key("model", "pair"), _key("part", "model"),
        _field("cases", "cases", integer), _field("calls", "calls", integer),
        _field("model_s", "model time (s)", SECONDS), Column("cost ($)", lambda s: s.cost or None, _dollars),
        _field("cpu_s", "CPU (s)", SECONDS),
        _field("prompt_tokens", "tokens in", integer, detail=True),
        _field("completion_tokens", "tokens out", integer, detail=True),
        _field("rss_peak_mb", "peak RSS (MB)", MB, detail=True),
    ]
    return table(table_id, columns, shares)


def hosts_table(table_id: str, loads: Mapping[str, Mapping[str, Any]]) -> str:
    """Each hosted model's load (summary.json's `models`, report/write.py model_loads): seconds to
    load, RSS after load, its hosts' starts and crashes."""
    rows = sorted(loads.items())
    columns = [
        Column("model", lambda r: r[0], text, is_text=True),
        Column("load (s)", lambda r: r[1].get("load_s"), SECONDS, "mean seconds to load, over its hosts"),
        Column("RSS after load (MB)", lambda r: r[1].get("rss_after_load_mb"), MB,
               "mean resident memory of its host once loaded"),
        Column("hosts", lambda r: r[1].get("hosts"), integer, "host processes that loaded it"),
        Column("starts", lambda r: r[1].get("starts"), integer, "host starts, restarts after a crash included"),
        Column("crashes", lambda r: r[1].get("crashes"), integer, "times a host of it died"),
        Column("extra buffer types", lambda r: r[1].get("extra_bufts"), text, "llama.cpp: extra buffer types in use",
               is_text=True),
    ]
    return table(table_id, columns, rows)


def decision_table(table_id: str, suites: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """--decide's outcome per suite (harness/run/decide.py): rows are (suite, decision data)."""
    columns = [
        Column("suite", lambda r: r[0], is_text=True),
        Column("decision", lambda r: r[1]["decision"], is_text=True),
        Column("items used", lambda r: r[1]["items"], integer),
        Column("of", lambda r: r[1]["population"], integer, "items the suite had"),
        Column("A − B (points)", lambda r: r[1]["low"], title="the confidence sequence's interval at the stop",
               shown=lambda r: _interval(r[1]["low"], r[1]["high"], 1.0, sign=True)),
        Column("fixed-size items", lambda r: r[1]["fixed_size_items"], integer,
               "items a fixed-size test of the same error rates would need"),
        Column("ran, not counted", lambda r: r[1]["ran_not_counted"], integer,
               "cases already started when the decision came", detail=True),
        Column("in words", lambda r: r[1]["sentence"], is_text=True),
    ]
    return table(table_id, columns, suites)


def routing_table(table_id: str, lab: Any, points: Sequence[Any]) -> str:
    """The routing lab's thresholds (harness/report/routes.py): one row per policy."""
    columns = [
        Column("policy", lambda p: p.policy, is_text=True),
        Column("threshold", lambda p: p.threshold, number(2)),
        Column("accuracy", lambda p: p.accuracy, percent(1),
               shown=lambda p: f"{percent(1)(p.accuracy)} [{percent(0)(p.ci_low)}, {percent(0)(p.ci_high)}]"
               if p.ci_low is not None and p.ci_high is not None else percent(1)(p.accuracy)),
        Column("to large (%)", lambda p: p.share_large, percent(0), "share of items sent to the large model"),
        Column("cost ($)", lambda p: p.cost or None, _dollars),
        Column("large tokens", lambda p: p.large_tokens, integer, detail=True),
        Column("latency (s)", lambda p: p.latency_s, number(3)),
        Column("CPU (s)", lambda p: p.cpu_s, number(2), detail=True),
        Column("energy (J)", lambda p: p.energy_j, number(1), detail=True),
        Column("cheapest at target", lambda p: p is lab.cheapest, yes_no),
        Column("live", lambda p: p.live, yes_no, "measured by the live threshold router, not replayed"),
    ]
    return table(table_id, columns, points)
