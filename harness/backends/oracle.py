"""The oracle: a named test double that answers every request with its reference.

It proves suites, scorers, the plugin and the reports right without a model: anything short
of accuracy 1.0 under the oracle is a bug in the harness, not a model's mistake.
"""

from __future__ import annotations

import os
from typing import Any

from harness.backends.base import (
    BackendBase,
    BackendError,
    Generation,
    LoglikelihoodRequest,
    Loglikelihoods,
    Request,
    Usage,
)
from harness.models.registry import ModelSpec


def _words(text: str | None) -> int:
    # A rough count, marked as an estimate, so token figures flow through the reports.
    return len(text.split()) if text else 0


class OracleBackend(BackendBase):
    supports_loglikelihood = True
    inline_calls = True  # it answers from the reference, at once: nothing to time out

    def __init__(self, spec: ModelSpec) -> None:
        self.name = spec.name
        self.spec = spec

    def generate(self, request: Request) -> Generation:
        if request.reference is None:
            raise BackendError("the oracle needs the item's reference on the request")
        prompt = request.prompt or " ".join(str(m.get("content", "")) for m in request.messages or ())
        usage = Usage(_words(prompt), _words(request.reference), "estimate")
        return Generation(text=request.reference, usage=usage, finish_reason="stop")

    token_count_source = "estimate"

    def count_tokens(self, content: str | list[dict[str, Any]]) -> int:
        # Words, as its usage counts them, so token budgets (chat memory) work on the oracle too.
        if isinstance(content, str):
            return _words(content)
        return sum(_words(str(m.get("content", ""))) for m in content)

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> Loglikelihoods:
        values = []
        for req in requests:
            if req.reference is None:
                raise BackendError("the oracle needs the item's reference on the request")
            # The reference continuation is certain (log 1 = 0); every other one impossible.
            values.append(0.0 if req.continuation.strip() == req.reference.strip() else float("-inf"))
        contexts = {req.context for req in requests}
        usage = Usage(sum(_words(c) for c in contexts), 0, "estimate")
        return Loglikelihoods(values, usage)

    def loglikelihood_groups(self, groups: list[list[LoglikelihoodRequest]]) -> list[Loglikelihoods]:
        # Batched scoring (harness/strategies/batched.py): a mix-up of cases shows as wrong answers.
        return [self.loglikelihood(list(group)) for group in groups]

    def process(self) -> int | None:
        return os.getpid()

    def close(self) -> None:
        pass
