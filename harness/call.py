"""The one wrapper around every model call.

A case gets a `ModelCall` for each model it uses. It times each call, adds up usage and cost,
and turns any failure inside a backend into BackendError, so that an error becomes a case
with status=error and is never scored as a wrong answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from harness.backends.base import (
    Backend,
    BackendError,
    Generation,
    LoglikelihoodRequest,
    Loglikelihoods,
    Request,
    Usage,
)
from harness.registry import ModelSpec

T = TypeVar("T")


@dataclass
class CallLog:
    """What the calls of one model within one case added up to."""

    calls: int = 0
    usage: Usage = field(default_factory=Usage)
    model_s: float = 0.0
    first_token_s: float | None = None
    server: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "prompt_tokens": self.usage.prompt_tokens,
                "completion_tokens": self.usage.completion_tokens, "source": self.usage.source,
                "model_s": self.model_s, "first_token_s": self.first_token_s}


class ModelCall:
    """A backend as one case sees it: every call goes through `_call`."""

    def __init__(self, spec: ModelSpec, backend: Backend) -> None:
        self.spec = spec
        self.backend = backend
        self.log = CallLog()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def cost(self) -> float:
        return self.spec.cost(self.log.usage.prompt_tokens, self.log.usage.completion_tokens)

    def _call(self, fn: Callable[[], T]) -> T:
        self.log.calls += 1
        start = time.perf_counter()
        try:
            result = fn()
        except BackendError:
            raise
        except Exception as exc:  # any backend failure is an error result, not a crash
            raise BackendError(f"{self.spec.name}: {type(exc).__name__}: {exc}") from exc
        finally:
            self.log.model_s += time.perf_counter() - start
        return result

    def generate(self, request: Request) -> Generation:
        generation = self._call(lambda: self.backend.generate(request))
        self.log.usage = self.log.usage + generation.usage
        if self.log.first_token_s is None and generation.timings.first_token_s is not None:
            self.log.first_token_s = generation.timings.first_token_s
        for key, value in generation.timings.server.items():
            self.log.server[key] = self.log.server.get(key, 0.0) + value
        return generation

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> Loglikelihoods:
        result = self._call(lambda: self.backend.loglikelihood(requests))
        self.log.usage = self.log.usage + result.usage
        return result

    @property
    def supports_loglikelihood(self) -> bool:
        return bool(getattr(self.backend, "supports_loglikelihood", False))
