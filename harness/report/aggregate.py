"""The one aggregation under every report: latest record per case, groups, and their summary rows.

Every report (the scoreboard and summaries, the comparison folder, pass@k, the extraction metrics)
takes typed records and goes through here: one rule for which record of a case counts (the last
written: a resumed run's re-run replaces its failed try), one grouping (suite, model, strategy),
and one definition of accuracy (record.py: scored statuses in the denominator, errors beside it).
Suite reports add their own columns on top of a Group's records and row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.core.record import ERROR_STATUSES, SCORED_STATUSES, CaseRecord, as_records
from harness.report.resources import ModelShare, figures, model_shares
from harness.report.stats import mean, percentile, wilson_interval

__all__ = ["ERROR_STATUSES", "SCORED_STATUSES", "Group", "SummaryRow", "aggregate", "latest", "summarize",
           "summary_row"]

Key = tuple[str, str, str]  # (suite, model, strategy)


@dataclass
class SummaryRow:
    model: str
    suite: str
    strategy: str
    items: int = 0  # every record in the group, whatever its status
    scored: int = 0  # status ok, wrong or invalid_output
    correct: int = 0
    accuracy: float | None = None  # correct / scored; None when nothing was scored
    ci_low: float | None = None  # Wilson 95 % interval on correct / scored; None when unscored
    ci_high: float | None = None
    errors: int = 0  # status error, timeout or crash
    crashes: int = 0  # status crash (also counted in errors): the model's host process died
    invalid: int = 0  # status invalid_output (also counted in scored, as not correct)
    mean_latency_s: float | None = None  # mean timings.wall_s over the records that have it
    tokens_per_s: float | None = None  # (prompt + completion tokens) / model seconds
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    # Pair strategies (cascade): share of the scored items the small model settled on its own;
    # None for rows whose records do not say (every single-model row).
    settled_by_small: float | None = None
    # Time and resources (issue 11). Latency percentiles over timings.wall_s; wall_s is their sum.
    wall_s: float | None = None
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    model_s: float | None = None  # inside model calls, summed
    # From the monitor's window of each case (report/resources.py): None where nothing measured.
    cpu_s: float | None = None
    cpu_percent_mean: float | None = None
    cpu_percent_peak: float | None = None
    cpu_user_s: float | None = None
    cpu_system_s: float | None = None
    rss_mean_mb: float | None = None
    rss_peak_mb: float | None = None
    gpu_util_mean: float | None = None
    gpu_util_peak: float | None = None
    gpu_memory_mean_mb: float | None = None
    gpu_memory_peak_mb: float | None = None
    gpu_energy_j: float | None = None
    # Issue 23: of the prompt tokens the backends said they computed or took from a prefix cache
    # (timings.server prompt_computed / prompt_reused), the share computed; None where none said.
    prompt_computed_share: float | None = None
    # The run's speed (prompt tokens over the time to each call's first token; tokens after the
    # first over the time after it) and, where the model's engine was measured, the engine's own
    # and the run's share of it (report/engine_share.py fills those from the metadata).
    prompt_tokens_per_s: float | None = None
    completion_tokens_per_s: float | None = None
    engine_prompt_tokens_per_s: float | None = None
    engine_decode_tokens_per_s: float | None = None
    prompt_engine_share: float | None = None
    decode_engine_share: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def latest(records: Iterable[CaseRecord | Mapping[str, Any]]) -> list[CaseRecord]:
    """One record per case (run_id, case_id), the last written, in first-seen order."""
    chosen: dict[tuple[str, str], CaseRecord] = {}
    for record in as_records(records):
        chosen[(record.run_id, record.case_id)] = record
    return list(chosen.values())


def summary_row(key: Key, records: Sequence[CaseRecord]) -> SummaryRow:
    """The summary of one group's records (already the latest per case)."""
    suite, model, strategy = key
    row = SummaryRow(model=model, suite=suite, strategy=strategy, items=len(records))
    rate_tokens = 0
    rate_seconds = 0.0
    prompt_tokens, prompt_s, decode_tokens, decode_s = 0, 0.0, 0, 0.0
    settled: list[bool] = []
    computed = reused = 0.0
    for record in records:
        computed += record.timings.server.get("prompt_computed", 0.0)
        reused += record.timings.server.get("prompt_reused", 0.0)
        if record.scored:
            row.scored += 1
            row.correct += record.counts_correct
            row.invalid += record.status == "invalid_output"
            if record.settled_by_small is not None:
                settled.append(record.settled_by_small)
        elif record.is_error:
            row.errors += 1
            row.crashes += record.status == "crash"
        row.prompt_tokens += record.usage.prompt_tokens
        row.completion_tokens += record.usage.completion_tokens
        row.cost += record.cost
        # Throughput only over records that timed their model calls: counting the tokens of a
        # case without model seconds would inflate tokens/s.
        model_s = record.timings.model_s
        if model_s is not None and model_s > 0:
            rate_tokens += record.usage.total
            rate_seconds += model_s
            decoding = sum(u.decode_s for u in record.per_model.values())
            if model_s > decoding:
                prompt_tokens += record.usage.prompt_tokens
                prompt_s += model_s - decoding
            decode_tokens += sum(u.decode_tokens for u in record.per_model.values())
            decode_s += decoding
    if row.scored:
        row.accuracy = row.correct / row.scored
        row.ci_low, row.ci_high = wilson_interval(row.correct, row.scored)
    row.mean_latency_s = mean(r.timings.wall_s for r in records)
    walls = [r.timings.wall_s for r in records if r.timings.wall_s is not None]
    row.wall_s = sum(walls) if walls else None
    row.latency_p50_s = percentile(walls, 50)
    row.latency_p95_s = percentile(walls, 95)
    model_times = [r.timings.model_s for r in records if r.timings.model_s is not None]
    row.model_s = sum(model_times) if model_times else None
    for name, value in asdict(figures(records)).items():
        setattr(row, name, value)
    row.tokens_per_s = rate_tokens / rate_seconds if rate_seconds > 0 else None
    row.prompt_tokens_per_s = prompt_tokens / prompt_s if prompt_s > 0 and prompt_tokens > 0 else None
    row.completion_tokens_per_s = decode_tokens / decode_s if decode_s > 0 and decode_tokens > 0 else None
    row.settled_by_small = sum(settled) / len(settled) if settled else None
    row.prompt_computed_share = computed / (computed + reused) if computed + reused > 0 else None
    return row


@dataclass
class Group:
    """The latest records of one (suite, model, strategy), and their summary row."""

    suite: str
    model: str
    strategy: str
    records: list[CaseRecord] = field(default_factory=list)

    @property
    def key(self) -> Key:
        return (self.suite, self.model, self.strategy)

    @property
    def variant(self) -> str:
        """`strategy:model`, the name a comparison gives this group within its suite."""
        return f"{self.strategy}:{self.model}"

    @property
    def row(self) -> SummaryRow:
        return summary_row(self.key, self.records)

    @property
    def shares(self) -> list[ModelShare]:
        """Each model's share of a pair strategy's group; empty for a single model."""
        return model_shares(self.suite, self.model, self.strategy, self.records)

    def on(self, item_ids: Iterable[str]) -> Group:
        """The same group restricted to some items (the latest record of each)."""
        wanted = set(item_ids)
        by_item = {r.item_id: r for r in self.records if r.item_id in wanted}
        return Group(self.suite, self.model, self.strategy, [by_item[i] for i in sorted(by_item)])

    @property
    def item_ids(self) -> set[str]:
        return {r.item_id for r in self.records}


def aggregate(records: Iterable[CaseRecord | Mapping[str, Any]],
              where: Callable[[CaseRecord], bool] | None = None) -> list[Group]:
    """Groups of the latest record per case, sorted by suite, then model, then strategy.

    Sorting by suite first puts the models side by side for each task, which is the comparison a
    scoreboard is read for. `where` keeps only the records a report is about (a suite, say).
    """
    groups: dict[Key, Group] = {}
    for record in latest(records):
        if where is not None and not where(record):
            continue
        key = (record.suite, record.model, record.strategy or "single")
        groups.setdefault(key, Group(*key)).records.append(record)
    return [groups[key] for key in sorted(groups)]


def summarize(records: Iterable[CaseRecord | Mapping[str, Any]]) -> list[SummaryRow]:
    """One row per (model, suite, strategy), sorted by suite, then model, then strategy."""
    return [group.row for group in aggregate(records)]


def by_suite(groups: Iterable[Group]) -> dict[str, list[Group]]:
    out: dict[str, list[Group]] = {}
    for group in groups:
        out.setdefault(group.suite, []).append(group)
    return out
