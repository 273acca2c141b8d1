"""What a group of cases cost in machine resources, from each record's monitor window.

The figures of a SummaryRow beyond accuracy: CPU seconds and mean CPU %, peak RSS, GPU
utilization and memory (mean and peak), GPU energy; and, for pair strategies, each model's share
of tokens, time, cost and CPU. A figure no record measured is None (left out of the terminal
table), never 0: a machine without a GPU has no GPU figures, and a failed GPU reading was already
left out by the monitor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from harness.core.record import CaseRecord


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _gpu_of(resources: Mapping[str, Any]) -> dict[str, float] | None:
    """One case's GPU figures over every GPU that has readings: utilization averaged over the
    GPUs, memory and energy summed (a model split over two GPUs uses both)."""
    gpus = [g for g in resources.get("gpu") or [] if isinstance(g, Mapping) and (g.get("samples") or 0) > 0]
    if not gpus:
        return None
    out: dict[str, float] = {
        "util_mean": sum(float(g.get("util_mean") or 0.0) for g in gpus) / len(gpus),
        "util_peak": max(float(g.get("util_peak", g.get("util_mean")) or 0.0) for g in gpus),
        "memory_mean_mb": sum(float(g.get("memory_mean_mb", g.get("memory_peak_mb")) or 0.0) for g in gpus),
        "memory_peak_mb": sum(float(g.get("memory_peak_mb") or 0.0) for g in gpus),
    }
    energy = [_number(g.get("energy_j")) for g in resources.get("gpu") or [] if isinstance(g, Mapping)]
    known = [e for e in energy if e is not None]
    if known:
        out["energy_j"] = sum(known)
    return out


@dataclass
class ResourceFigures:
    cpu_s: float | None = None  # CPU time of the inference processes, summed over the cases
    cpu_percent_mean: float | None = None  # cpu_s over the monitored wall time (100 = one core)
    cpu_percent_peak: float | None = None  # the highest sample of any case
    cpu_user_s: float | None = None  # cpu_s apart: user and system (kernel) time
    cpu_system_s: float | None = None
    rss_mean_mb: float | None = None  # the cases' mean RSS, weighted by their monitored time
    rss_peak_mb: float | None = None
    gpu_util_mean: float | None = None  # % , weighted by each case's monitored time
    gpu_util_peak: float | None = None
    gpu_memory_mean_mb: float | None = None
    gpu_memory_peak_mb: float | None = None
    gpu_energy_j: float | None = None


def figures(records: Sequence[CaseRecord]) -> ResourceFigures:
    out = ResourceFigures()
    cpu = [(_number(r.resources.get("cpu_s")), _number(r.resources.get("duration_s"))) for r in records]
    measured = [(c, d) for c, d in cpu if c is not None]
    if measured:
        out.cpu_s = sum(c for c, _ in measured)
        seconds = sum(d or 0.0 for _, d in measured)
        out.cpu_percent_mean = 100.0 * out.cpu_s / seconds if seconds > 0 else None
    for name in ("cpu_user_s", "cpu_system_s"):
        parts = [v for v in (_number(r.resources.get(name)) for r in records) if v is not None]
        setattr(out, name, sum(parts) if parts else None)  # records before issue 25 have none
    peaks = [v for v in (_number(r.resources.get("cpu_percent_peak")) for r in records) if v is not None]
    out.cpu_percent_peak = max(peaks) if peaks else None
    rss = [v for v in (_number(r.resources.get("rss_peak_mb")) for r in records) if v is not None]
    out.rss_peak_mb = max(rss) if rss else None
    rss_means = [(v, _number(r.resources.get("duration_s")) or 0.0) for r in records
                 if (v := _number(r.resources.get("rss_mean_mb"))) is not None]
    if rss_means:
        weight = sum(d for _, d in rss_means)
        out.rss_mean_mb = (sum(v * d for v, d in rss_means) / weight if weight > 0
                           else sum(v for v, _ in rss_means) / len(rss_means))
    gpu = [(g, _number(r.resources.get("duration_s")) or 0.0) for r in records
           if (g := _gpu_of(r.resources)) is not None]
    if gpu:
        weight = sum(d for _, d in gpu)

        def weighted(key: str) -> float:
            if weight > 0:
                return sum(g[key] * d for g, d in gpu) / weight
            return sum(g[key] for g, _ in gpu) / len(gpu)

        out.gpu_util_mean = weighted("util_mean")
        out.gpu_util_peak = max(g["util_peak"] for g, _ in gpu)
        out.gpu_memory_mean_mb = weighted("memory_mean_mb")
        out.gpu_memory_peak_mb = max(g["memory_peak_mb"] for g, _ in gpu)
        energy = [g["energy_j"] for g, _ in gpu if "energy_j" in g]
        out.gpu_energy_j = sum(energy) if energy else None
    return out


@dataclass
class ModelShare:
    """One model's part of a pair strategy's group (record.per_model, resources.per_model)."""

    suite: str
    model: str  # the group's model column, `small+large`
    strategy: str
    part: str  # the model this share is of
    cases: int = 0  # cases in which this model was called
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_s: float = 0.0
    cost: float = 0.0
    cpu_s: float | None = None  # None where the model shared its process with the other
    rss_peak_mb: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_shares(suite: str, model: str, strategy: str, records: Sequence[CaseRecord]) -> list[ModelShare]:
    """Each model's share of a group whose records name more than one model (pair strategies);
    empty for a single-model group."""
    names: list[str] = []
    for record in records:
        names += [n for n in record.per_model if n not in names]
    if len(names) < 2 and not any(r.strategy != "single" and "+" in r.model for r in records):
        return []
    shares = {name: ModelShare(suite, model, strategy, name) for name in names}
    for record in records:
        for name, usage in record.per_model.items():
            share = shares[name]
            share.cases += usage.calls > 0 or usage.cache_hits > 0
            share.calls += usage.calls
            share.prompt_tokens += usage.prompt_tokens
            share.completion_tokens += usage.completion_tokens
            share.model_s += usage.model_s
            share.cost += usage.cost
        own = record.resources.get("per_model")
        if isinstance(own, Mapping):
            for name, window in own.items():
                if name not in shares or not isinstance(window, Mapping) or window.get("shared_with"):
                    continue
                share = shares[name]
                cpu = _number(window.get("cpu_s"))
                if cpu is not None:
                    share.cpu_s = (share.cpu_s or 0.0) + cpu
                rss = _number(window.get("rss_peak_mb"))
                if rss is not None:
                    share.rss_peak_mb = max(share.rss_peak_mb or 0.0, rss)
    return [shares[name] for name in names]
