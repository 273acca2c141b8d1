"""The one wrapper around every model call: timeout, retry, cache, timing, usage, cost.

A case gets a `ModelCall` for each model it uses. Backends stay small because everything that
is the same for all of them lives here:

- timeout: each call runs on its backend's own worker thread (Executors, owned by the run) and is
  abandoned after `timeout_s` (BackendTimeout -> status=timeout); HTTP backends are given the
  same timeout, so their request stops too.
- retries with exponential backoff, on RetryableError only (a wrong request is not retried).
- the response cache (harness/models/cache.py), keyed by the exact request.
- timings: wall time, time to first token, decode tokens/s excluding the first token.
- usage with its source, and cost from the registry's prices.
Any other failure inside a backend becomes BackendError: an error result, never a wrong answer.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, TypeVar

from harness.backends.base import (
    Backend,
    BackendError,
    BackendTimeout,
    Generation,
    LoglikelihoodRequest,
    Loglikelihoods,
    Request,
    RetryableError,
    TextSink,
    Timings,
    ToolCall,
    Usage,
    count_tokens,
)
from harness.core.record import ModelUsage
from harness.core.transcript import TranscriptBuilder, TranscriptCall
from harness.models.cache import ResponseCache, request_key
from harness.models.registry import ModelSpec

T = TypeVar("T")

class Executors:
    """One worker thread per backend, owned by the run and shut down at its end.

    One thread per backend, so a hung call queues the next ones behind it instead of running an
    in-process model twice at once.
    """

    def __init__(self) -> None:
        self._pools: dict[int, ThreadPoolExecutor] = {}
        self._lock = threading.Lock()

    def for_backend(self, backend: Backend) -> ThreadPoolExecutor:
        with self._lock:
            key = id(backend)
            if key not in self._pools:
                self._pools[key] = ThreadPoolExecutor(max_workers=1,
                                                       thread_name_prefix=f"model-{backend.name}")
            return self._pools[key]

    def shutdown(self) -> None:
        """Stop every worker thread; a call still running past its timeout is not waited for."""
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class CallPolicy:
    timeout_s: float | None = 600.0
    retries: int = 3
    backoff_s: float = 0.5  # first wait; doubles each retry, with jitter
    cache: ResponseCache | None = None


@dataclass
class CallLog:
    """What the calls of one model within one case added up to."""

    calls: int = 0  # model calls made (retries included; cache hits excluded)
    cache_hits: int = 0
    retries: int = 0
    usage: Usage = field(default_factory=Usage)
    model_s: float = 0.0
    first_token_s: float | None = None
    decode_s: float = 0.0  # generation time after the first token
    decode_tokens: int = 0  # tokens generated after the first one
    server: dict[str, float] = field(default_factory=dict)

    @property
    def decode_tokens_per_s(self) -> float | None:
        return self.decode_tokens / self.decode_s if self.decode_s > 0 and self.decode_tokens > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "cache_hits": self.cache_hits, "retries": self.retries,
                "prompt_tokens": self.usage.prompt_tokens, "completion_tokens": self.usage.completion_tokens,
                "source": self.usage.source, "model_s": self.model_s, "first_token_s": self.first_token_s,
                "decode_tokens_per_s": self.decode_tokens_per_s, "server": dict(self.server),
                "decode_s": self.decode_s, "decode_tokens": self.decode_tokens}


class ModelCall:
    """A backend as one case sees it: every call goes through `_call`."""

    def __init__(self, spec: ModelSpec, backend: Backend, policy: CallPolicy | None = None,
                 executors: Executors | None = None) -> None:
        self.spec = spec
        self.backend = backend
        self.policy = policy or CallPolicy()
        # A ModelCall made outside a run (a script, a test) gets executors of its own.
        self.executors = executors or Executors()
        self.log = CallLog()
        # The case's conversation, shared by every model of the case (set by the plugin); None
        # outside a case.
        self.transcript: TranscriptBuilder | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def cost(self) -> float:
        return self.spec.cost(self.log.usage.prompt_tokens, self.log.usage.completion_tokens)

    def usage(self) -> ModelUsage:
        """This model's share of the case, as the case record keeps it."""
        return ModelUsage(**self.log.to_dict(), cost=self.cost)

    @property
    def supports_loglikelihood(self) -> bool:
        return bool(self.backend.supports_loglikelihood)

    def _once(self, fn: Callable[[], T]) -> T:
        if self.backend.inline_calls:  # it keeps the timeout itself (hosted.py) or never blocks: no thread hop
            return fn()
        future = self.executors.for_backend(self.backend).submit(fn)
        try:
            return future.result(timeout=self.policy.timeout_s)
        except FutureTimeout:
            future.cancel()
            raise BackendTimeout(f"{self.spec.name}: no answer within {self.policy.timeout_s:g} s") from None

    def _call(self, fn: Callable[[], T]) -> T:
        attempt = 0
        while True:
            self.log.calls += 1
            start = time.perf_counter()
            try:
                return self._once(fn)
            except RetryableError as exc:
                if attempt >= self.policy.retries:
                    raise BackendError(f"{exc} (gave up after {attempt + 1} attempts)") from exc
                wait = self.policy.backoff_s * 2**attempt * (0.5 + random.random())
                attempt += 1
                self.log.retries += 1
                time.sleep(wait)
            except BackendError:
                raise
            except Exception as exc:  # any backend failure is an error result, not a crash
                raise BackendError(f"{self.spec.name}: {type(exc).__name__}: {exc}") from exc
            finally:
                self.log.model_s += time.perf_counter() - start

    def _cached(self, kind: str, payload: Any) -> tuple[str | None, dict[str, Any] | None]:
        if self.policy.cache is None:
            return None, None
        key = request_key(self.spec, kind, payload)
        return key, self.policy.cache.get(key)

    def generate(self, request: Request, on_text: TextSink | None = None) -> Generation:
        """One generation. With `on_text`, the answer's text goes there as it is written, in pieces
        where the backend streams (generate_stream), else whole once it is done."""
        if self.transcript is not None:
            self.transcript.request(self.name, request.messages, request.prompt)
        try:
            generation = self._generate(request, on_text)
        except BackendError as exc:
            if self.transcript is not None:
                self.transcript.note(f"{type(exc).__name__}: {exc}", self.name)
            raise
        if self.transcript is not None:
            self.transcript.answer(self.name, generation.text,
                                   [TranscriptCall(c.id, c.name, c.raw_arguments, c.error)
                                    for c in generation.tool_calls])
        return generation

    def note_tool_result(self, call_id: str, name: str, content: str, ok: bool) -> None:
        """A tool result on its way back to this model, for the case's transcript."""
        if self.transcript is not None:
            self.transcript.tool_result(self.name, call_id, name, content, ok)

    def _generate(self, request: Request, on_text: TextSink | None = None) -> Generation:
        key, hit = self._cached("generate", request)
        if hit is not None:
            self.log.cache_hits += 1
            timings = Timings(**hit.pop("timings"))
            calls = [ToolCall.from_dict(c) for c in hit.get("tool_calls", [])]
            generation = Generation(**{**hit, "usage": Usage(**hit["usage"]), "timings": timings,
                                       "tool_calls": calls})
            streamed = False
        elif on_text is not None and "generate_stream" in self.backend.abilities:
            generation = self._call(lambda: self._stream(request, on_text))
            streamed = True
        else:
            generation = self._call(lambda: self.backend.generate(request))
            streamed = False
        if hit is None and key is not None and self.policy.cache is not None:
            self.policy.cache.put(key, generation.to_dict())
        if on_text is not None and not streamed and generation.text:
            on_text(generation.text)
        self._account(generation.usage, generation.timings)
        return generation

    def _stream(self, request: Request, on_text: TextSink) -> Generation:
        """One streamed try. A failure after part of the answer was handed on is not retried: a
        second try would hand on its answer after the first one's beginning."""
        shown = False

        def sink(piece: str) -> None:
            nonlocal shown
            shown = True
            on_text(piece)

        try:
            return self.backend.generate_stream(request, sink)
        except RetryableError as exc:
            if not shown:
                raise
            raise BackendError(f"{exc} (after part of the answer was shown: not retried)") from exc

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> Loglikelihoods:
        key, hit = self._cached("loglikelihood", requests)
        if hit is not None:
            self.log.cache_hits += 1
            result = Loglikelihoods(hit["values"], Usage(**hit["usage"]), Timings(**hit["timings"]))
        else:
            result = self._call(lambda: self.backend.loglikelihood(requests))
            if key is not None and self.policy.cache is not None:
                self.policy.cache.put(key, {"values": result.values, "usage": result.usage.__dict__,
                                            "timings": result.timings.__dict__})
        self._account(result.usage, result.timings)
        return result

    def count_tokens(self, content: str | list[dict[str, Any]]) -> int:
        """The model's own token count of a prompt (Unsupported where the backend has none). On the
        backend's thread, so it never runs beside a call; not counted as a model call."""
        return self._once(lambda: count_tokens(self.backend, content))

    @property
    def supports_groups(self) -> bool:
        """True where the backend scores independent loglikelihood groups in one batched call."""
        return "loglikelihood_groups" in self.backend.abilities

    def loglikelihood_groups(self, groups: list[list[LoglikelihoodRequest]]) -> list[Loglikelihoods]:
        """Several cases' loglikelihood requests in one batched backend call, one result per group.

        Timeout and retries apply to the whole call. Its time and usage are not this call's: each
        case accounts its own group's share with take(), so records stay per item.
        """
        start_calls, start_s = self.log.calls, self.log.model_s
        try:
            return self._call(lambda: self.backend.loglikelihood_groups(groups))
        finally:
            self.log.calls, self.log.model_s = start_calls, start_s

    def take(self, share: Loglikelihoods) -> None:
        """Account one group of a batched call to this case as one call of its apportioned time."""
        self.log.calls += 1
        self.log.model_s += share.timings.total_s
        self._account(share.usage, share.timings)

    def _account(self, usage: Usage, timings: Timings) -> None:
        self.log.usage = self.log.usage + usage
        if timings.first_token_s is not None:
            if self.log.first_token_s is None:
                self.log.first_token_s = timings.first_token_s
            if usage.completion_tokens > 1 and timings.total_s > timings.first_token_s:
                self.log.decode_s += timings.total_s - timings.first_token_s
                self.log.decode_tokens += usage.completion_tokens - 1
        for name, value in timings.server.items():
            self.log.server[name] = self.log.server.get(name, 0.0) + value
