"""Packing concurrent scoring requests in a model host: one batched call for every waiting caller.

The clients of a shared host (the xdist workers of a run) score their questions independently.
One at a time under the model lock, each call pays its own passes over the weights; packed, the
calls that wait while another scoring call runs are scored together as one `loglikelihood_groups`
call over the union of their groups, and each caller gets exactly its own results, in its order.

There is no gathering window, so a lone client is never delayed: a call that finds no scoring
call running runs at once, alone, through the operation it asked for (its results are those of
the unpacked host). Calls that arrive while one runs queue; when it ends, the first of them to
wake takes every call queued (a leader, as in a group commit) and runs them as one.

What each caller gets is what it would have got alone, within the tolerance batched scoring
already has (llamacpp_batch.py): its values, its usage (each group's is as if alone), its share
of the call's wall time (the backend apportions it by tokens) and of the host's CPU time
(`host_cpu_s`, apportioned here by prompt tokens, as generation's is by the tokens of each decode),
and `pack_size`, the callers in its call. A packed call that fails is run again caller by caller,
so one caller's bad request is its own error and nobody else's.

By default a host packs where its model runs on an accelerator (llama.cpp with GPU layers, a
transformers model off the CPU), where a batch shares each pass over the weights. On a CPU it
does not (`options.pack_scoring = true` turns it on): prompt processing there is bound by compute,
so a pack costs the CPU time of its parts (measured equal, bench/host_packing.py), while its
callers come back together and leave the model idle while they prepare their next cases, and
llama.cpp's batch context keeps no prefix from one call to the next (a prefix is shared within a
pack only), where one call at a time reuses the last prompt's. Measured under -n 4 on 64 MMLU
questions (a 2-core CPU): 0-shot 8-25% slower packed, 5-shot 52% slower (1.35x the tokens computed).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.backends.base import LoglikelihoodRequest, Loglikelihoods, cpu_since, cpu_times

# The operations packed, and the largest pack in groups (cases): a bigger one makes the callers
# in it wait for each other past what one batch context holds (llamacpp_batch.py's 64 sequences).
PACKED = ("loglikelihood", "loglikelihood_groups")
MAX_GROUPS = 64


def packs_by_default(options: dict[str, Any], described: dict[str, Any]) -> bool:
    """Whether a model packs its scoring unless `pack_scoring` says: where it runs on an
    accelerator (llama.cpp's n_gpu_layers, or the device its backend describes)."""
    if "pack_scoring" in options:
        return bool(options["pack_scoring"])
    if int(options.get("n_gpu_layers", 0) or 0) != 0:
        return True
    return str(described.get("device", "cpu")).split(":")[0] not in ("cpu", "")


@dataclass
class _Ask:
    operation: str
    groups: list[list[LoglikelihoodRequest]]
    client: int
    done: bool = False
    value: Any = None
    error: BaseException | None = None


@dataclass
class PackStats:
    """What the packer did, for describe(): calls run, and of those the packed ones."""

    calls: int = 0
    packed_calls: int = 0
    packed_requests: int = 0  # callers served by packed calls
    largest: int = 0
    packed_cpu_s: float = 0.0
    retried_alone: int = 0  # packed calls that failed and were run caller by caller
    sizes: dict[int, int] = field(default_factory=dict)  # callers per call -> calls

    def to_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "packed_calls": self.packed_calls, "packed_requests": self.packed_requests,
                "requests_per_packed_call": self.packed_requests / self.packed_calls if self.packed_calls else 0.0,
                "largest": self.largest, "packed_cpu_s": self.packed_cpu_s, "retried_alone": self.retried_alone,
                "sizes": {str(k): v for k, v in sorted(self.sizes.items())}}


class ScoringPacker:
    """Scores the host's loglikelihood calls, packing those that wait behind a running one.

    `model_lock` is the host's (every model step takes it); `mark_running` names the clients whose
    call the model computes, so a crash is charged to them and the queued calls are asked again."""

    def __init__(self, backend: Any, model_lock: threading.Lock,
                 mark_running: Callable[[list[int]], None]) -> None:
        self.backend = backend
        self.model_lock = model_lock
        self.mark_running = mark_running
        self.stats = PackStats()
        self._cond = threading.Condition()
        self._pending: list[_Ask] = []
        self._busy = False  # a leader is running a call

    def score(self, operation: str, args: tuple[Any, ...], client: int) -> Any:
        groups = [list(args[0])] if operation == "loglikelihood" else [list(g) for g in args[0]]
        ask = _Ask(operation, groups, client)
        with self._cond:
            self._pending.append(ask)
            while not ask.done:
                if self._busy:
                    self._cond.wait()
                    continue
                self._busy = True
                batch = self._take()
                self._cond.release()
                try:
                    self._run(batch)
                finally:
                    self._cond.acquire()
                    self._busy = False
                    self._cond.notify_all()
        if ask.error is not None:
            raise ask.error
        return ask.value

    def _take(self) -> list[_Ask]:
        """The calls queued, oldest first, up to MAX_GROUPS groups (at least one call)."""
        batch = [self._pending.pop(0)]
        groups = len(batch[0].groups)
        while self._pending and groups + len(self._pending[0].groups) <= MAX_GROUPS:
            groups += len(self._pending[0].groups)
            batch.append(self._pending.pop(0))
        return batch

    def _run(self, batch: list[_Ask]) -> None:
        try:
            if len(batch) == 1:
                self._alone(batch[0])
                return
            try:
                self._packed(batch)
            except Exception:  # noqa: BLE001 - whose request failed is found by asking each alone
                self.stats.retried_alone += 1
                for ask in batch:
                    if not ask.done:
                        self._alone(ask)
        except BaseException as exc:  # noqa: BLE001 - every caller still waiting is told, never left hanging
            for ask in batch:
                if not ask.done:
                    ask.error, ask.done = exc, True
            raise

    def _alone(self, ask: _Ask) -> None:
        """One caller's call as it asked it: the unpacked host's results exactly."""
        try:
            with self.model_lock:
                self.mark_running([ask.client])
                before = cpu_times()
                value = getattr(self.backend, ask.operation)(ask.groups[0] if ask.operation == "loglikelihood"
                                                             else ask.groups)
                used = cpu_since(before)
        except Exception as exc:  # noqa: BLE001 - the caller's own error, raised in its own thread
            ask.error, ask.done = exc, True
            return
        results = [value] if ask.operation == "loglikelihood" else list(value)
        apportion_cpu(results, used, 1)
        self._count(1, sum(used))
        ask.value, ask.done = value, True

    def _packed(self, batch: list[_Ask]) -> None:
        union = [group for ask in batch for group in ask.groups]
        with self.model_lock:
            self.mark_running([ask.client for ask in batch])
            before = cpu_times()
            results = list(self.backend.loglikelihood_groups(union))
            used = cpu_since(before)
        if len(results) != len(union):
            raise RuntimeError(f"loglikelihood_groups gave {len(results)} results for {len(union)} groups")
        apportion_cpu(results, used, len(batch))
        self._count(len(batch), sum(used))
        start = 0
        for ask in batch:
            mine = results[start:start + len(ask.groups)]
            start += len(ask.groups)
            ask.value = mine[0] if ask.operation == "loglikelihood" else mine
            ask.done = True

    def _count(self, callers: int, cpu: float) -> None:
        self.stats.calls += 1
        self.stats.sizes[callers] = self.stats.sizes.get(callers, 0) + 1
        self.stats.largest = max(self.stats.largest, callers)
        if callers > 1:
            self.stats.packed_calls += 1
            self.stats.packed_requests += callers
            self.stats.packed_cpu_s += cpu


def apportion_cpu(results: list[Loglikelihoods], used: tuple[float, float], callers: int | None = None) -> None:
    """Each group's share of the call's CPU time (user, system) by its prompt tokens (equal shares
    where none were counted); the shares sum to the call's. `callers`: the clients it served."""
    tokens = [r.usage.prompt_tokens for r in results]
    total = sum(tokens)
    user, system = used
    for result, count in zip(results, tokens):
        part = count / total if total else 1 / len(results)
        result.timings.server["host_cpu_s"] = (user + system) * part
        result.timings.server["host_cpu_user_s"] = user * part
        result.timings.server["host_cpu_system_s"] = system * part
        if callers is not None:
            result.timings.server["pack_size"] = float(callers)
