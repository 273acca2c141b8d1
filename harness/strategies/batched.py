"""Batched scoring: many cases' loglikelihood questions in one model call, one record per case.

Every item stays its own pytest case. The first case of a batch asks `upcoming()` which cases
this process will run next (same test, same model; see harness/run/upcoming.py), builds their
questions, scores up to `size` of them in one backend call (`loglikelihood_groups`) and keeps the
others' answers in a per-process memo; when their turn comes they take their answer from it.
Each case accounts only its own share: its usage is what it would be alone, and its model time is
the batch's time apportioned by its share of the tokens. `batch_info` says so for the record.

Only what this process will run is batched, so -k, --resume (skipped cases) and pytest-xdist
(each worker batches its own queue) give the same predictions as an unbatched run. A case not
in any batch, a backend without batched scoring, or a batch that fails falls back to scoring
the case alone.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.backends.base import LoglikelihoodRequest, Loglikelihoods
from harness.models.call import ModelCall

# (case id, whatever the question builder needs: the plugin's Case) of the cases to come.
Upcoming = Callable[[], Sequence[tuple[str, Any]]]
Question = Callable[[Any], list[LoglikelihoodRequest]]


@dataclass
class Batcher:
    """Per process and per (test, model): answers scored ahead for the cases still to run."""

    size: int
    ahead: dict[str, tuple[Loglikelihoods, dict[str, Any]]] = field(default_factory=dict)
    failed: str | None = None  # the error that turned batching off for the rest of the process

    def scores(self, llm: ModelCall, case_id: str, requests: list[LoglikelihoodRequest],
               question: Question, upcoming: Upcoming) -> tuple[list[float], dict[str, Any] | None]:
        """The loglikelihoods of `requests` (this case's question) and the batch it was part of."""
        if case_id in self.ahead:
            share, info = self.ahead.pop(case_id)
            llm.take(share)
            return share.values, info
        if self.size <= 1 or self.failed or not llm.supports_groups or llm.policy.cache is not None:
            return llm.loglikelihood(requests).values, None
        batch = [(case_id, requests)]
        for other_id, other in upcoming():
            if len(batch) >= self.size:
                break
            if other_id == case_id or other_id in self.ahead:
                continue
            try:
                batch.append((other_id, question(other)))
            except Exception:  # noqa: BLE001 - that case will meet its own error when it runs
                continue
        if len(batch) == 1:
            return llm.loglikelihood(requests).values, None
        # A throwaway wrapper makes the call: timeout and retries as usual, accounting per case.
        caller = ModelCall(llm.spec, llm.backend, llm.policy)
        try:
            shares = caller.loglikelihood_groups([reqs for _, reqs in batch])
        except Exception as exc:  # score alone from now on; this case's own error shows there
            self.failed = f"{type(exc).__name__}: {exc}"
            return llm.loglikelihood(requests).values, None
        total = sum(s.timings.total_s for s in shares)
        for index, ((other_id, _), share) in enumerate(zip(batch, shares)):
            info = {"size": len(batch), "index": index, "leader": case_id,
                    "apportioned_s": share.timings.total_s, "batch_s": total,
                    "apportioned_by": "prompt tokens"}
            self.ahead[other_id] = (share, info)
        share, info = self.ahead.pop(case_id)
        llm.take(share)
        return share.values, info


def batcher(memo: Callable[[Hashable, Callable[[], Batcher]], Batcher], key: Hashable, size: int) -> Batcher:
    """The process's Batcher for `key` (such as the test and the model), from a per-process memo."""
    return memo(("loglikelihood-batcher", key, size), lambda: Batcher(size))


def choose(llm: ModelCall, batch: Batcher, case_id: str, case: Any, question: Question,
           upcoming: Upcoming) -> tuple[int, dict[str, Any] | None]:
    """Index of the most likely continuation of the case's question, and its batch (or None)."""
    values, info = batch.scores(llm, case_id, question(case), question, upcoming)
    return max(range(len(values)), key=values.__getitem__), info


def apportioned_wall(duration_s: float, batch: dict[str, Any], case_id: str) -> float:
    """A batched case's wall time: its own time outside the batch call plus its share of the call.

    The first case of a batch measured the whole call; the others measured almost nothing. Over a
    run the apportioned times add up to the measured ones, and each stays >= its model time.
    """
    own = duration_s - (float(batch["batch_s"]) if batch.get("leader") == case_id else 0.0)
    return max(own, 0.0) + float(batch["apportioned_s"])
