"""The simplest strategy: one model answers on its own."""

from __future__ import annotations

import math
from collections.abc import Sequence

from harness.backends.base import Generation, LoglikelihoodRequest, Request
from harness.core.confidence import MEAN_LOGPROB
from harness.models.call import ModelCall


def choose(model: ModelCall, context: str, continuations: Sequence[str], reference: str | None = None) -> int:
    """Index of the most likely continuation (one forward pass where the backend shares it)."""
    return choose_scored(model, context, continuations, reference)[0]


def choose_scored(model: ModelCall, context: str, continuations: Sequence[str],
                  reference: str | None = None) -> tuple[int, list[float]]:
    """Index of the most likely continuation and every continuation's log-likelihood (kept in the
    record, so a run can be audited item by item against another tool on the same weights)."""
    requests = [LoglikelihoodRequest(context, c, reference) for c in continuations]
    values = model.loglikelihood(requests).values
    return max(range(len(values)), key=values.__getitem__), list(values)


def chat_context(model: ModelCall, prompt: str) -> str | None:
    """A chat model's prompt as its chat template writes it (one user turn, then the start of
    the assistant's), for scoring continuations by loglikelihood the way the model reads a
    chat; None for base models and backends that cannot render their template."""
    if model.spec.prompt_style != "chat" or "chat_text" not in model.backend.abilities:
        return None
    return model.backend.chat_text(({"role": "user", "content": prompt},))


def complete(model: ModelCall, prompt: str, *, max_tokens: int = 256, stop: Sequence[str] = (),
             temperature: float = 0.0, reference: str | None = None, seed: int | None = None) -> Generation:
    """Generate from a prompt: plain text for base models, one user message for chat models."""
    if model.spec.prompt_style == "chat":
        request = Request(messages=({"role": "user", "content": prompt},), max_tokens=max_tokens,
                          temperature=temperature, stop=tuple(stop), seed=seed, reference=reference)
    else:
        request = Request(prompt=prompt, max_tokens=max_tokens, temperature=temperature,
                          stop=tuple(stop), seed=seed, reference=reference)
    return model.generate(request)


def answer_confidence(model: ModelCall, prompt: str, text: str) -> dict[str, float | str]:
    """The record's confidence in a generated answer: its mean token log-probability given the prompt
    (`mean_logprob`) and exp of it (the geometric mean of the tokens' probabilities, in [0, 1]).

    Backends stream their answers without per-token scores (llama-cpp-python keeps them only with
    logits_all, which costs every call), so the answer is scored again as a continuation: one
    forward pass over prompt and answer, counted in the case's usage (what a live router pays too).
    Empty where the backend gives no log-likelihoods or a chat model cannot render its template."""
    if not text or not model.supports_loglikelihood:
        return {}
    context = chat_context(model, prompt) if model.spec.prompt_style == "chat" else prompt
    tokens = model.count_tokens(text) if context is not None else 0
    if context is None or tokens <= 0:
        return {}
    total = model.loglikelihood([LoglikelihoodRequest(context, text, text)]).values[0]
    mean = total / tokens
    return {"confidence": math.exp(mean), "confidence_source": MEAN_LOGPROB, "mean_logprob": mean}
