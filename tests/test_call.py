"""The call wrapper without a server: retries, timeouts, the cache, and the run's executors."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from harness.backends.base import (
    BackendError,
    BackendTimeout,
    Generation,
    LoglikelihoodRequest,
    Loglikelihoods,
    Request,
    RetryableError,
    Timings,
    Usage,
)
from harness.models.cache import ResponseCache
from harness.models.call import CallPolicy, Executors, ModelCall
from harness.models.registry import ModelSpec

SPEC = ModelSpec("flaky", "scripted", "m", price_in=2.0, price_out=10.0)


class Flaky:
    """A test double: fails `failures` times with `error`, then answers; or sleeps `delay` seconds."""

    name = "flaky"
    supports_loglikelihood = True
    inline_calls = False

    def __init__(self, failures: int = 0, error: type[Exception] = RetryableError, delay: float = 0.0) -> None:
        self.failures, self.error, self.delay = failures, error, delay
        self.calls = 0
        self.release = threading.Event()

    def generate(self, request: Request) -> Generation:
        self.calls += 1
        if self.delay:
            self.release.wait(self.delay)
        if self.calls <= self.failures:
            raise self.error(f"failure {self.calls}")
        return Generation("42", usage=Usage(1000, 100, "server"), timings=Timings(total_s=0.5, first_token_s=0.1))

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> Loglikelihoods:
        self.calls += 1
        return Loglikelihoods([-1.0] * len(requests), Usage(10, 0, "tokenizer"), Timings(total_s=0.01))

    def process(self) -> int | None:
        return None

    def close(self) -> None:
        pass


def test_retries_retryable_errors_with_backoff_then_answers() -> None:
    backend = Flaky(failures=2)
    call = ModelCall(SPEC, backend, CallPolicy(retries=3, backoff_s=0.001))
    assert call.generate(Request(prompt="q")).text == "42"
    assert (backend.calls, call.log.calls, call.log.retries) == (3, 3, 2)
    usage = call.usage()
    assert (usage.prompt_tokens, usage.completion_tokens, usage.calls) == (1000, 100, 3)
    assert usage.cost == pytest.approx((1000 * 2.0 + 100 * 10.0) / 1e6)


def test_gives_up_after_the_retries_and_never_retries_other_errors() -> None:
    call = ModelCall(SPEC, Flaky(failures=9), CallPolicy(retries=2, backoff_s=0.001))
    with pytest.raises(BackendError, match="gave up after 3 attempts"):
        call.generate(Request(prompt="q"))
    backend = Flaky(failures=1, error=KeyError)
    with pytest.raises(BackendError, match="flaky: KeyError"):
        ModelCall(SPEC, backend, CallPolicy(retries=5, backoff_s=0.001)).generate(Request(prompt="q"))
    assert backend.calls == 1


def test_a_call_past_its_timeout_is_a_timeout_and_shutdown_does_not_wait() -> None:
    backend = Flaky(delay=30)
    executors = Executors()
    call = ModelCall(SPEC, backend, CallPolicy(timeout_s=0.2, retries=0), executors)
    start = time.perf_counter()
    with pytest.raises(BackendTimeout, match="no answer within 0.2 s"):
        call.generate(Request(prompt="q"))
    executors.shutdown()
    assert time.perf_counter() - start < 5
    backend.release.set()


def test_the_cache_answers_an_identical_request_without_the_backend(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path)
    backend = Flaky()
    policy = CallPolicy(cache=cache)
    first = ModelCall(SPEC, backend, policy)
    second = ModelCall(SPEC, backend, policy)
    request = Request(prompt="q", max_tokens=5)
    assert first.generate(request).text == second.generate(request).text == "42"
    assert backend.calls == 1 and (first.log.cache_hits, second.log.cache_hits) == (0, 1)
    assert second.log.usage.prompt_tokens == 1000  # a hit still says what the answer cost
    assert second.generate(Request(prompt="other")).text == "42" and backend.calls == 2
    scored = [LoglikelihoodRequest("ctx", " A")]
    assert first.loglikelihood(scored).values == second.loglikelihood(scored).values == [-1.0]
    assert backend.calls == 3
    cache.close()


def test_a_backend_that_keeps_its_own_timeout_is_called_without_a_thread_hop() -> None:
    """The wrapper's executor thread is what enforces --call-timeout; a backend that stops a call
    itself (a model host) or never blocks (the oracle) is called in the case's thread instead."""
    seen: list[str] = []

    class Where(Flaky):
        def generate(self, request: Request) -> Generation:
            seen.append(threading.current_thread().name)
            return super().generate(request)

    hopping, inline = Where(), Where()
    inline.inline_calls = True
    ModelCall(SPEC, hopping, CallPolicy(timeout_s=5)).generate(Request(prompt="q"))
    ModelCall(SPEC, inline, CallPolicy(timeout_s=5)).generate(Request(prompt="q"))
    assert seen[0].startswith("model-flaky") and seen[1] == threading.current_thread().name
