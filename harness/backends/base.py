"""The backend seam: one small protocol and the value types that cross it.

A backend turns requests into model output. It knows nothing of suites, scoring or pytest;
timing, retries and caching live in one place (harness/models/call.py), not in each backend.
"""

from __future__ import annotations

import json
import resource
from collections.abc import Callable
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
    # Greedy by default: benchmarks answer the same way every run. `top_p` and `top_k` (None: the
    # backend's own default) matter only when temperature > 0, as in `harness chat`. They were added
    # after the cache's first entries: the cache key leaves them out while they are None
    # (harness/cache.py), so every request made before keeps its key.
    temperature: float = 0.0
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    tools: tuple[dict[str, Any], ...] = ()
    # With tools: "auto" (the model decides), "required" (some tool call), "none", or the name of
    # the one tool the model must call. Backends that cannot force a call say so (Unsupported).
    tool_choice: str = "auto"
    seed: int | None = None
    reference: str | None = None


@dataclass(frozen=True)
class Sampling:
    """How a request picks its tokens: greedy (the default, as benchmarks ask) or sampled with
    a temperature and, where set, top_p and top_k (None: the backend's own default)."""

    temperature: float = 0.0
    top_p: float | None = None
    top_k: int | None = None


GREEDY = Sampling()


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


class HostCrash(BackendError):
    """The process hosting a model died during a call (a signal, an OOM kill, an abort): the case
    in flight is recorded with status=crash, the host restarts for the next case."""

    def __init__(self, message: str, *, model: str, signal: str | None = None, exit_code: int | None = None,
                 stderr_tail: str = "") -> None:
        super().__init__(message)
        self.model = model
        self.signal = signal
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail

    def __reduce__(self) -> Any:  # keyword-only fields survive pickling (a host's own errors cross a pipe)
        return (_host_crash, (str(self), self.model, self.signal, self.exit_code, self.stderr_tail))

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "signal": self.signal, "exit_code": self.exit_code,
                "stderr_tail": self.stderr_tail}


def _host_crash(message: str, model: str, signal: str | None, exit_code: int | None, stderr_tail: str) -> HostCrash:
    return HostCrash(message, model=model, signal=signal, exit_code=exit_code, stderr_tail=stderr_tail)


# The optional abilities of the protocol: a backend offers one by overriding its method on
# BackendBase (the default raises Unsupported); `abilities` names those it offers, so callers ask
# instead of probing with getattr, and a model host proxies exactly these.
OPTIONAL_ABILITIES: tuple[str, ...] = ("loglikelihood", "loglikelihood_groups", "chat_text", "count_tokens",
                                       "generate_stream", "chat_sampling")

# Receives each piece of an answer's text as the model writes it (generate_stream).
TextSink = Callable[[str], None]


@runtime_checkable
class Backend(Protocol):
    """What every backend provides (BackendBase gives the optional parts their defaults)."""

    name: str
    # The registry entry the backend was made from (None for a backend made from code alone).
    spec: Any
    # False where loglikelihood raises Unsupported (chat APIs without prompt logprobs).
    supports_loglikelihood: bool
    # Where count_tokens' figures come from: the model's own tokenizer, or an estimate.
    token_count_source: UsageSource
    # None, or why this model takes no more calls in this run (a host that kept crashing).
    retired: str | None
    # True where a call cannot outlive the run's --call-timeout without the wrapper's help: the
    # backend stops it itself (a model host ends its process) or never blocks (the oracle). The
    # wrapper (call.py) then calls it in the case's own thread, without a hop through the
    # backend's executor thread, which costs each call a thread switch.
    inline_calls: bool
    # False where process() starts no children worth sampling (a model host forks none): the
    # monitor then skips its scan of /proc for them, about 1-4 ms at each case's start and end.
    process_children: bool

    def generate(self, request: Request) -> Generation: ...

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> Loglikelihoods: ...

    def loglikelihood_groups(self, groups: list[list[LoglikelihoodRequest]]) -> list[Loglikelihoods]:
        """Independent groups (one per case) scored in one batched call, one result per group."""
        ...

    def chat_text(self, messages: tuple[dict[str, Any], ...]) -> str:
        """The prompt the model's chat template writes for `messages` (special tokens as text)."""
        ...

    def count_tokens(self, content: str | list[dict[str, Any]]) -> int:
        """The tokens of the prompt the model would see (chat messages through its template)."""
        ...

    def generate_stream(self, request: Request, on_text: TextSink) -> Generation:
        """generate(), handing each piece of the answer's text to `on_text` as it is written; the
        pieces join to the Generation's text (that of an answer without tool calls)."""
        ...

    def chat_sampling(self) -> dict[str, float]:
        """The sampling the model's own files recommend for chat (any of temperature, top_p,
        top_k); empty where they say nothing."""
        ...

    def describe(self) -> dict[str, Any]:
        """How the model runs (settings in effect, quantization really loaded), for the metadata."""
        ...

    def engine_identity(self, batched: bool = False) -> dict[str, Any] | None:
        """What the engine's own speed depends on besides the model file and the CPU (library and
        version, threads, batch settings, and the decoding path: `batched` in a model host, whose
        generation may go through a context of its own); None where the engine is not in this
        process (a server)."""
        ...

    def measure_engine_rate(self, prompt_tokens: int, decode_tokens: int,
                            model_lock: Any = None) -> tuple[float, float]:
        """Seconds to evaluate a prompt of `prompt_tokens` and to decode `decode_tokens` greedily
        after it, on the paths scoring and generation take (backends/engine_rate.py keeps the
        rates); `model_lock` is a model host's, held by the caller."""
        ...

    @property
    def abilities(self) -> frozenset[str]:
        """The optional abilities (OPTIONAL_ABILITIES) this backend offers."""
        ...

    def process(self) -> int | None:
        """PID of the OS process doing the inference (for the resource monitor)."""
        ...

    def close(self) -> None: ...


class BackendBase:
    """The defaults of the protocol's optional parts: subclass it and override what you offer."""

    name: str = "backend"
    spec: Any = None
    supports_loglikelihood: bool = False
    token_count_source: UsageSource = "tokenizer"
    retired: str | None = None
    inline_calls: bool = False
    process_children: bool = True

    def generate(self, request: Request) -> Generation:
        raise NotImplementedError

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> Loglikelihoods:
        raise Unsupported(f"{self.name}: this backend cannot score log-likelihoods")

    def loglikelihood_groups(self, groups: list[list[LoglikelihoodRequest]]) -> list[Loglikelihoods]:
        raise Unsupported(f"{self.name}: this backend cannot score batched groups")

    def chat_text(self, messages: tuple[dict[str, Any], ...]) -> str:
        raise Unsupported(f"{self.name}: this backend does not render chat templates as text")

    def count_tokens(self, content: str | list[dict[str, Any]]) -> int:
        raise Unsupported(f"{self.name}: this backend cannot count tokens")

    def generate_stream(self, request: Request, on_text: TextSink) -> Generation:
        raise Unsupported(f"{self.name}: this backend does not stream its answers")

    def chat_sampling(self) -> dict[str, float]:
        raise Unsupported(f"{self.name}: this backend cannot read the model's recommended sampling")

    def describe(self) -> dict[str, Any]:
        return {}

    def engine_identity(self, batched: bool = False) -> dict[str, Any] | None:
        return None

    def measure_engine_rate(self, prompt_tokens: int, decode_tokens: int,
                            model_lock: Any = None) -> tuple[float, float]:
        raise Unsupported(f"{self.name}: this backend's engine is not in this process to measure")

    def generate_concurrently(self, request: Request, model_lock: Any) -> Generation | None:
        """Generate while other calls run (a model host's continuous batching: llamacpp_decode.py),
        taking `model_lock` only for the model's own steps; None where this request cannot be,
        and the host then calls generate() under that lock."""
        return None

    @property
    def abilities(self) -> frozenset[str]:
        offered = {name for name in OPTIONAL_ABILITIES
                   if getattr(type(self), name) is not getattr(BackendBase, name)}
        if not self.supports_loglikelihood:
            offered -= {"loglikelihood", "loglikelihood_groups"}
        return frozenset(offered)

    def process(self) -> int | None:
        return None

    def close(self) -> None:
        pass


def count_tokens(backend: Backend, content: str | list[dict[str, Any]]) -> int:
    """The backend's own token count of a prompt; Unsupported where it has no tokenizer at hand."""
    if "count_tokens" not in backend.abilities:
        raise Unsupported(f"{backend.name}: this backend cannot count tokens")
    return int(backend.count_tokens(content))


def cpu_times() -> tuple[float, float]:
    """This process's user and system CPU seconds, all threads (getrusage: microseconds, where
    os.times() counts clock ticks of 10 ms, too coarse for one decode step)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def cpu_since(before: tuple[float, float]) -> tuple[float, float]:
    """The user and system CPU seconds this process used since `before` (a cpu_times())."""
    user, system = cpu_times()
    return user - before[0], system - before[1]
