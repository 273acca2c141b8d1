"""The run's speed against the engine's own: how much of its limit each model's cases used.

The engine's rates are in the run's metadata (`backends.<model>.engine_rate`, measured once per
machine by the model's host: backends/engine_rate.py). The run's rates are the summary row's:
prompt tokens over the time up to each call's first token, completion tokens after the first over
the time after it (aggregate.summary_row). Their quotient is the share. A share above 1 is
possible and means something: prompt tokens reused from a cached prefix count as submitted but
were not computed. Calls that overlap (pytest-xdist workers sharing a host) each count their own
time, so a row's rate is per stream, not the host's total throughput.

A model with no measured engine (a server, a test double) has no share: the report says why, from
the metadata, rather than showing a rate nobody measured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.report.aggregate import SummaryRow


def engine_rates(metadata: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """model -> its engine_rate entry (measured, or why not), for the models that say one."""
    rates = {}
    for name, data in (metadata.get("backends") or {}).items():
        rate = data.get("engine_rate") if isinstance(data, Mapping) else None
        if isinstance(rate, Mapping):
            rates[str(name)] = dict(rate)
    return rates


def _rate(entry: Mapping[str, Any] | None, key: str) -> float | None:
    if not entry or not entry.get("measured"):
        return None
    value = entry.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def share(run_rate: float | None, engine_rate: float | None) -> float | None:
    if run_rate is None or engine_rate is None or engine_rate <= 0:
        return None
    return run_rate / engine_rate


def with_engine(rows: Sequence[SummaryRow], metadata: Mapping[str, Any]) -> list[SummaryRow]:
    """The rows, with each single model's engine rates and the run's share of them filled in."""
    rates = engine_rates(metadata)
    for row in rows:
        entry = rates.get(row.model)
        row.engine_prompt_tokens_per_s = _rate(entry, "prompt_tokens_per_s")
        row.engine_decode_tokens_per_s = _rate(entry, "decode_tokens_per_s")
        row.prompt_engine_share = share(row.prompt_tokens_per_s, row.engine_prompt_tokens_per_s)
        row.decode_engine_share = share(row.completion_tokens_per_s, row.engine_decode_tokens_per_s)
    return list(rows)


def engine_lines(metadata: Mapping[str, Any]) -> list[str]:
    """One line per model: its engine's own rates and how they were had, or why there are none."""
    lines = []
    for name, entry in sorted(engine_rates(metadata).items()):
        prompt, decode = _rate(entry, "prompt_tokens_per_s"), _rate(entry, "decode_tokens_per_s")
        if prompt is None or decode is None:
            lines.append(f"{name}: not measured ({entry.get('why') or 'no rates recorded'})")
            continue
        threads = entry.get("engine_threads")
        lines.append(f"{name}: {prompt:.1f} prompt tokens/s, {decode:.1f} decode tokens/s "
                     f"({entry.get('prompt_tokens')}-token prompt, {entry.get('decode_tokens')} greedy steps"
                     + (f", {threads} threads" if threads is not None else "")
                     + f"; measured {entry.get('measured_at')})")
    return lines


def engine_markdown(metadata: Mapping[str, Any]) -> str:
    lines = engine_lines(metadata)
    if not lines:
        return ""
    return "\n".join(["", "## The engines' own speed on this machine", ""] + [f"- {line}" for line in lines]) + "\n"
