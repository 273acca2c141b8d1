"""The backend seam: one small protocol and the value types that cross it.

A backend turns requests into model output. It knows nothing of suites, scoring or pytest;
timing, retries and caching live in one place (harness/call.py), not in each backend.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

UsageSource = Literal["server", "tokenizer", "estimate", "none"]


class BackendError(Exception):
    """A model call failed: the case is recorded with status=error, never as a wrong answer."""


class BackendTimeout(BackendError):
    """A model call ran past its time limit: recorded with status=timeout."""


class RetryableError(BackendError):
    """A failure worth another try: a refused connection, HTTP 429 or 5xx, a server reloading."""


class Unsupported(BackendError):
    """The backend cannot do this kind of request (e.g. loglikelihood on a chat API)."""


@dataclass(frozen=True)
class Request:
    """One generation request. `prompt` for completion-style models, `messages` for chat.

    `reference` is the item's expected answer. Only the oracle test double reads it; real
    backends ignore it and it is left out of anything that identifies the request.
    """

    prompt: str | None = None
    messages: tuple[dict[str, Any], ...] | None = None
    max_tokens: int = 256
    temperature: float = 0.0
    stop: tuple[str, ...] = ()
    tools: tuple[dict[str, Any], ...] = ()
    # With tools: "auto" (the model decides), "required" (some tool call), "none", or the name of
    # the one tool the model must call. Backends that cannot force a call say so (Unsupported).
    tool_choice: str = "auto"
    seed: int | None = None
    reference: str | None = None


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """log P(continuation | context). Requests sharing a context may share one forward pass."""

    context: str
    continuation: str
    reference: str | None = None


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    source: UsageSource = "none"

    def __add__(self, other: Usage) -> Usage:
        # Mixed sources keep the first real one; a record names one source per case.
        source = self.source if self.source != "none" else other.source
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            source,
        )


@dataclass
class Timings:
    """Seconds. `total_s` is wall time of the call as the client saw it."""

    total_s: float = 0.0
    first_token_s: float | None = None
    server: dict[str, float] = field(default_factory=dict)


def parse_arguments(raw: str) -> tuple[dict[str, Any] | None, str | None]:
    """A tool call's raw arguments text -> (the JSON object, None) or (None, why it is not one)."""
    try:
        # strict=False: a raw newline inside a string is read as one. llama-cpp-python's JSON
        # grammar lets a constrained call write it, and the call means the same.
        parsed = json.loads(raw, strict=False) if raw.strip() else {}
    except json.JSONDecodeError as exc:
        return None, f"arguments are not valid JSON ({exc.msg} at position {exc.pos})"
    if not isinstance(parsed, dict):
        return None, "arguments must be a JSON object"
    return parsed, None


@dataclass
class ToolCall:
    """One tool call as the model wrote it, in the same shape from every backend.

    `raw_arguments` is the model's text, kept whatever it is; `arguments` is that text parsed
    into a JSON object, or None with `error` saying why it could not be (malformed JSON, not an
    object, a call whose tool name could not be read). A bad call is data, never an exception.
    """

    name: str
    raw_arguments: str = ""
    id: str = ""
    arguments: dict[str, Any] | None = None
    error: str | None = None

    @classmethod
    def from_raw(cls, name: str, raw_arguments: str, id: str = "") -> ToolCall:
        arguments, error = parse_arguments(raw_arguments)
        if not name and error is None:
            error = "the tool call names no tool"
        return cls(name=name, raw_arguments=raw_arguments, id=id, arguments=arguments, error=error)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolCall:
        return cls(**data)


@dataclass
class Generation:
    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    timings: Timings = field(default_factory=Timings)
    finish_reason: str | None = None
    raw: Any = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("raw")
        return data


@dataclass
class Loglikelihoods:
    """Answers to a batch of LoglikelihoodRequest, in request order."""

    values: list[float]
    usage: Usage = field(default_factory=Usage)
    timings: Timings = field(default_factory=Timings)


@runtime_checkable
class Backend(Protocol):
    """What every backend provides. Optional abilities raise Unsupported."""

    name: str
    # False where loglikelihood raises Unsupported (chat APIs without prompt logprobs).
    supports_loglikelihood: bool

    def generate(self, request: Request) -> Generation: ...

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> Loglikelihoods: ...

    def process(self) -> int | None:
        """PID of the OS process doing the inference (for the resource monitor)."""
        ...

    def close(self) -> None: ...

    # Optional: count_tokens(text or chat messages) -> the tokens of the prompt the model would
    # see (a chat model's messages through its chat template). Backends without it: see below.


def count_tokens(backend: Backend, content: str | list[dict[str, Any]]) -> int:
    """The backend's own token count of a prompt; Unsupported where it has no tokenizer at hand."""
    method = getattr(backend, "count_tokens", None)
    if method is None:
        raise Unsupported(f"{backend.name}: this backend cannot count tokens")
    return int(method(content))
