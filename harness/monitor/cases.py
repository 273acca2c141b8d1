"""The resource windows of one case: one per process doing its inference, merged into its record.

A case's models are known at its start, except a pair strategy's large model, which is loaded
lazily (cascade asks for it only when the small model fails; the router's test requests it during
the call). So a window is opened per process when a model is first used, at the start of the case
or later, and the case's resources are the merge of its windows at the end. Where the models of a
pair run in different processes, each model's own window is kept under `per_model`, so a report
can attribute CPU time and memory to each; models that share one process share its window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from harness.monitor.sampler import Monitor, Window


class CaseWindows:
    def __init__(self, monitor_of: Callable[[set[int], bool], Monitor]) -> None:
        self._monitor_of = monitor_of  # the run's one Monitor per process tree
        self.windows: dict[int, Window] = {}
        self.models: dict[int, list[str]] = {}

    def add(self, model: str, pid: int | None, children: bool = True) -> None:
        """Sample `pid` from now on (once per process) on behalf of `model`; `children`: its
        child processes too (a server's runners), where it has any."""
        if pid is None:  # a remote backend: no process of ours to sample
            return
        if pid not in self.windows:
            self.windows[pid] = self._monitor_of({pid}, children).window()
        names = self.models.setdefault(pid, [])
        if model not in names:
            names.append(model)

    def stop(self) -> dict[str, Any]:
        """The case's resources: every window merged; each model's own under `per_model` when
        the case used more than one model."""
        summaries = {pid: window.stop().to_dict() for pid, window in self.windows.items()}
        merged = merge(list(summaries.values()))
        named = [(name, pid) for pid, names in self.models.items() for name in names]
        if len(named) > 1:
            merged["per_model"] = {name: {**summaries[pid], "shared_with": [n for n in self.models[pid] if n != name]}
                                   for name, pid in named}
        return merged


def merge(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One summary from windows over different processes during one case.

    CPU time and memory add up (the processes ran side by side); CPU % is recomputed from the
    summed CPU time over the longest window; GPU readings are machine-wide, so they come from the
    longest window (the one open from the start) rather than being counted twice.
    """
    if not summaries:
        return {}
    if len(summaries) == 1:
        return dict(summaries[0])
    longest = max(summaries, key=lambda s: s.get("duration_s") or 0.0)
    out = dict(longest)
    for key in ("cpu_s", "cpu_user_s", "cpu_system_s"):
        out[key] = sum(float(s.get(key) or 0.0) for s in summaries)
    out["samples"] = sum(int(s.get("samples") or 0) for s in summaries)
    out["monitor_cpu_s"] = sum(float(s.get("monitor_cpu_s") or 0.0) for s in summaries)
    duration = float(longest.get("duration_s") or 0.0)
    out["cpu_percent_mean"] = 100.0 * out["cpu_s"] / duration if duration > 0 else None
    for key in ("rss_mean_mb", "rss_peak_mb"):
        values = [float(s[key]) for s in summaries if s.get(key) is not None]
        out[key] = sum(values) if values else None  # the processes' memory side by side
    peaks = [float(s["cpu_percent_peak"]) for s in summaries if s.get("cpu_percent_peak") is not None]
    out["cpu_percent_peak"] = max(peaks) if peaks else None  # samples are not aligned: no sum
    return out
