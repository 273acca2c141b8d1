"""Aggregate case records into one summary row per (model, suite, strategy).

Records are the plain dicts of CaseRecord.to_dict(), read back from results.jsonl or a store, so
every field is read defensively: an older record, or one from a case that failed before the model
was called, may lack usage or timings, and must still count as an item (and an error).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from harness.report.stats import mean, wilson_interval

# Statuses that produced an answer worth scoring. Errors and timeouts are kept out of accuracy on
# purpose: a backend that fell over says nothing about what the model knows (see DESIGN.md).
# invalid_output (an answer the suite could not read) is a model's failure: scored, and wrong.
SCORED_STATUSES = frozenset({"ok", "wrong", "invalid_output"})
ERROR_STATUSES = frozenset({"error", "timeout"})


@dataclass
class SummaryRow:
    model: str
    suite: str
    strategy: str
    items: int = 0  # every record in the group, whatever its status
    scored: int = 0  # status ok or wrong
    correct: int = 0
    accuracy: float | None = None  # correct / scored; None when nothing was scored
    ci_low: float | None = None  # Wilson 95 % interval on correct / scored; None when unscored
    ci_high: float | None = None
    errors: int = 0  # status error or timeout
    invalid: int = 0  # status invalid_output (also counted in scored, as not correct)
    mean_latency_s: float | None = None  # mean timings.wall_s over the records that have it
    tokens_per_s: float | None = None  # (prompt + completion tokens) / model seconds
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    # Pair strategies (cascade): share of the scored items the small model settled on its own;
    # None for rows whose records do not say (every single-model row).
    settled_by_small: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _number(value: Any) -> float | None:
    """A float from a JSON value, None for anything missing or not numeric (bools included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _tokens(usage: Mapping[str, Any], key: str) -> int:
    value = _number(usage.get(key))
    return int(value) if value is not None else 0


def _is_correct(record: Mapping[str, Any]) -> bool:
    # `correct` is the suite's verdict; when a record carries none (a suite that only reports
    # scores), the status ok/wrong is the verdict that the case itself reported.
    correct = record.get("correct")
    if correct is None:
        return record.get("status", "ok") == "ok"
    return bool(correct)


def _summarize_group(key: tuple[str, str, str], records: list[Mapping[str, Any]]) -> SummaryRow:
    model, suite, strategy = key
    row = SummaryRow(model=model, suite=suite, strategy=strategy, items=len(records))
    latencies: list[float | None] = []
    rate_tokens = 0
    rate_seconds = 0.0
    settled: list[bool] = []
    for record in records:
        status = record.get("status", "ok")
        extra = record.get("extra") or {}
        if status in SCORED_STATUSES and "settled_by_small" in extra:
            settled.append(bool(extra["settled_by_small"]))
        usage = record.get("usage") or {}
        timings = record.get("timings") or {}
        if status in SCORED_STATUSES:
            row.scored += 1
            row.correct += _is_correct(record) and status != "invalid_output"
            row.invalid += status == "invalid_output"
        elif status in ERROR_STATUSES:
            row.errors += 1
        latencies.append(_number(timings.get("wall_s")))
        prompt = _tokens(usage, "prompt_tokens")
        completion = _tokens(usage, "completion_tokens")
        row.prompt_tokens += prompt
        row.completion_tokens += completion
        row.cost += _number(record.get("cost")) or 0.0
        # Throughput only over records that timed their model calls: counting the tokens of a
        # case without model seconds would inflate tokens/s.
        model_s = _number(timings.get("model_s"))
        if model_s is not None and model_s > 0:
            rate_tokens += prompt + completion
            rate_seconds += model_s
    if row.scored:
        row.accuracy = row.correct / row.scored
        row.ci_low, row.ci_high = wilson_interval(row.correct, row.scored)
    row.mean_latency_s = mean(latencies)
    row.tokens_per_s = rate_tokens / rate_seconds if rate_seconds > 0 else None
    row.settled_by_small = sum(settled) / len(settled) if settled else None
    return row


def summarize(records: Iterable[Mapping[str, Any]]) -> list[SummaryRow]:
    """One row per (model, suite, strategy), sorted by suite, then model, then strategy.

    Sorting by suite first puts the models side by side for each task, which is the comparison a
    scoreboard is read for.
    """
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for record in records:
        key = (
            str(record.get("model", "")),
            str(record.get("suite", "")),
            str(record.get("strategy") or "single"),
        )
        groups.setdefault(key, []).append(record)
    rows = [_summarize_group(key, group) for key, group in groups.items()]
    rows.sort(key=lambda row: (row.suite, row.model, row.strategy))
    return rows
