"""A scripted test double: replies with a given sequence of messages and tool calls.

It drives strategies' control flow in tests (a cascade whose small model fails twice, a router
whose model calls a tool, an agent that writes broken code and then fixes it). It is never a
stand-in for a real model in a benchmark.

From code: `ScriptedBackend.from_steps([...])`. From a registry file:
`options = { script = "path/to/script.json" }` where the file holds the list of steps.
A step is a string (the reply text) or a mapping with `text` and/or `tool_calls`, each tool call
`{"name": ..., "arguments": {...} or "raw JSON text"}`. When the steps run out, `then` decides:
"repeat" the last step (a model that never stops calling tools) or "error".

Native crashes on demand, for the model host's tests (run it with `host = true`):
`segfault_on = "TEXT"` segfaults the process (a NULL read through ctypes, as a native library
would) on a request whose prompt holds TEXT; `sleep_s = N` makes every reply take N seconds (a
call to kill midway); `amx_crash = true` plays llama.cpp on a CPU whose AMX path crashes: it
segfaults on its first reply unless `use_extra_bufts = false`, and the host probes it as it
probes llama.cpp.

`options.stream = true` streams each reply word by word (generate_stream), `stream_delay_s = N`
apart: partial output and the model host's streaming protocol, tested without a model.

`options.loglikelihood = "digest"` also scores continuations: each one's log-likelihood is a fixed
pseudo-random number in [-4, 0] drawn from a digest of (context, continuation), so the same
question always gets the same scores, right about as often as chance and with every degree of
confidence between (the routing lab's tests compare offline and live routing on it); another
`options.salt` gives another such guesser, independent of the first.

`options.engine_rate = [PROMPT_S, DECODE_S]` plays an in-process engine whose own speed can be
measured (backends/engine_rate.py): the measurement takes those seconds (without sleeping).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.backends.base import (
    BackendBase,
    BackendError,
    Generation,
    LoglikelihoodRequest,
    Loglikelihoods,
    Request,
    TextSink,
    ToolCall,
    Unsupported,
    Usage,
)
from harness.models.registry import ModelSpec


def available(spec: ModelSpec) -> str | None:
    script = spec.options.get("script")
    if script is None or Path(script).is_file():
        return None
    return f"script file {script!r} not found"


def _tool_call(index: int, call: dict[str, Any]) -> ToolCall:
    arguments = call.get("arguments", {})
    # Tool-call arguments always cross the seam as the model's raw JSON text, as OpenAI sends
    # them, so strategies must cope with malformed arguments the same way for every backend.
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ToolCall.from_raw(call["name"], raw, call.get("id", f"call_{index}"))


def _digest_score(request: LoglikelihoodRequest, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}\0{request.context}\0{request.continuation}".encode()).digest()
    return -4.0 * int.from_bytes(digest[:4], "big") / 2**32


class ScriptedBackend(BackendBase):
    def __init__(self, spec: ModelSpec, steps: Sequence[Any] | None = None) -> None:
        self.name = spec.name
        self.spec = spec
        if steps is None:
            script = spec.options.get("script")
            steps = json.loads(Path(script).read_text()) if script else spec.options.get("steps", [])
        self.steps = list(steps)
        self.then = spec.options.get("then", "repeat")
        self.supports_loglikelihood = spec.options.get("loglikelihood") == "digest"
        self.requests: list[Request] = []  # what the model was asked, for assertions

    @classmethod
    def from_steps(cls, steps: Sequence[Any], *, name: str = "scripted", then: str = "repeat") -> ScriptedBackend:
        spec = ModelSpec(name=name, backend="scripted", model="script", options={"then": then})
        return cls(spec, steps)

    def engine_identity(self, batched: bool = False) -> dict[str, Any] | None:
        if "engine_rate" not in self.spec.options:
            return None
        return {"library": "scripted", "threads": 1}

    def measure_engine_rate(self, prompt_tokens: int, decode_tokens: int,
                            model_lock: Any = None) -> tuple[float, float]:
        if "engine_rate" not in self.spec.options:
            return super().measure_engine_rate(prompt_tokens, decode_tokens, model_lock)
        prompt_s, decode_s = self.spec.options["engine_rate"]
        return float(prompt_s), float(decode_s)

    def _native_crash(self, request: Request) -> None:
        options = self.spec.options
        text = request.prompt or json.dumps(request.messages or ())
        trigger = options.get("segfault_on")
        amx = options.get("amx_crash") and options.get("use_extra_bufts", True) is not False
        if amx or (isinstance(trigger, str) and trigger in text):
            ctypes.string_at(0)  # SIGSEGV: reads address 0

    def generate(self, request: Request) -> Generation:
        self._native_crash(request)
        if self.spec.options.get("sleep_s"):
            time.sleep(float(self.spec.options["sleep_s"]))
        index = len(self.requests)
        self.requests.append(request)
        if index >= len(self.steps):
            if self.then != "repeat" or not self.steps:
                raise BackendError(f"{self.name}: script exhausted after {len(self.steps)} steps")
            index = len(self.steps) - 1
        step = self.steps[index]
        if isinstance(step, str):
            step = {"text": step}
        calls = [_tool_call(i, c) for i, c in enumerate(step.get("tool_calls", []))]
        text = step.get("text", "")
        usage = Usage(len(str(request.prompt or request.messages).split()), len(text.split()), "estimate")
        return Generation(text=text, tool_calls=calls, usage=usage,
                          finish_reason="tool_calls" if calls else "stop")

    @property
    def abilities(self) -> frozenset[str]:
        offered = super().abilities
        return offered if self.spec.options.get("stream") else offered - {"generate_stream"}

    def generate_stream(self, request: Request, on_text: TextSink) -> Generation:
        if not self.spec.options.get("stream"):
            raise Unsupported(f"{self.name}: streams only with options.stream = true")
        generation = self.generate(request)
        delay = float(self.spec.options.get("stream_delay_s", 0))
        for piece in re.findall(r"\s*\S+|\s+$", generation.text) or [""]:  # each word with the space before it
            time.sleep(delay)
            on_text(piece)
        return generation

    token_count_source = "estimate"

    def count_tokens(self, content: str | list[dict[str, Any]]) -> int:
        """A deterministic stand-in for a tokenizer: words, plus 4 per chat message (its template)."""
        if isinstance(content, str):
            return len(content.split())
        return sum(4 + len(str(m.get("content", "")).split()) for m in content)

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> Loglikelihoods:
        if not self.supports_loglikelihood:
            raise Unsupported("the scripted backend only generates (options.loglikelihood = \"digest\" scores)")
        usage = Usage(sum(len(c.split()) for c in {r.context for r in requests}), 0, "estimate")
        salt = str(self.spec.options.get("salt", ""))
        return Loglikelihoods([_digest_score(r, salt) for r in requests], usage)

    def process(self) -> int | None:
        return os.getpid()

    def close(self) -> None:
        pass
