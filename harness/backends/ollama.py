"""Ollama on its native API, through the official `ollama` client.

The native API (not Ollama's /v1) is used because it reports the server's own timings: the
model load (a cold start shows as such), prompt evaluation and generation, with token counts.
They are recorded beside the client's own timings. `keep_alive` (registry option, default
"5m") decides how long Ollama keeps the model loaded after a call.

Registry options: `host` (default $OLLAMA_HOST or http://127.0.0.1:11434), `keep_alive`,
`num_ctx`, any other Ollama `options` under `model_options`.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from typing import Any
from urllib.parse import urlparse

from harness.backends.base import (
    BackendBase,
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
    Unsupported,
    Usage,
)
from harness.models.registry import ModelSpec

try:
    import httpx
    import ollama
except ModuleNotFoundError:  # pragma: no cover - available() reports it
    ollama = None

DEFAULT_HOST = "http://127.0.0.1:11434"
NS = 1e-9  # Ollama reports durations in nanoseconds


def host_of(spec: ModelSpec) -> str:
    host = spec.options.get("host") or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST
    return host if "://" in host else f"http://{host}"


def installed_models(host: str, timeout: float = 1.0) -> list[str]:
    with urllib.request.urlopen(host.rstrip("/") + "/api/tags", timeout=timeout) as response:
        return [m["name"] for m in json.loads(response.read()).get("models", [])]


def available(spec: ModelSpec) -> str | None:
    if ollama is None:
        return "the ollama package is not installed (pip install -e '.[ollama]')"
    host = host_of(spec)
    try:
        names = installed_models(host)
    except (OSError, ValueError) as exc:
        return f"no Ollama server answers at {host} ({exc}); start `ollama serve` or set OLLAMA_HOST"
    wanted = spec.model if ":" in spec.model else f"{spec.model}:latest"
    if wanted not in names and spec.model not in names:
        return f"model {spec.model!r} is not pulled on {host}: run `ollama pull {spec.model}`"
    return None


def server_timings(final: Any) -> dict[str, float]:
    """The server's durations in seconds and its token counts, from the last streamed chunk."""
    data: dict[str, float] = {}
    for name in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        value = getattr(final, name, None)
        if value is not None:
            data[name.replace("_duration", "_s")] = value * NS
    for name in ("prompt_eval_count", "eval_count"):
        value = getattr(final, name, None)
        if value is not None:
            data[name] = float(value)
    return data


def to_ollama_messages(messages: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """OpenAI-style history to Ollama's: tool-call arguments as objects, not JSON text."""
    converted = []
    names: dict[str, str] = {}
    for message in messages:
        out = {"role": message["role"], "content": message.get("content") or ""}
        if message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                function = call.get("function", call)
                names[call.get("id", "")] = function["name"]
                try:
                    arguments = json.loads(function.get("arguments") or "{}")
                except json.JSONDecodeError:
                    arguments = {}
                calls.append({"function": {"name": function["name"], "arguments": arguments}})
            out["tool_calls"] = calls
        if message["role"] == "tool" and message.get("tool_call_id") in names:
            out["tool_name"] = names[message["tool_call_id"]]
        converted.append(out)
    return converted


class OllamaBackend(BackendBase):
    supports_loglikelihood = False

    def __init__(self, spec: ModelSpec, timeout_s: float = 600.0) -> None:
        if ollama is None:
            raise BackendError("the ollama package is not installed")
        self.name = spec.name
        self.spec = spec
        self.host = host_of(spec)
        self.client = ollama.Client(host=self.host, timeout=spec.options.get("timeout_s", timeout_s))
        self.keep_alive = spec.options.get("keep_alive", "5m")
        self._pid: int | None = None

    def _options(self, request: Request) -> dict[str, Any]:
        options: dict[str, Any] = {"temperature": request.temperature, "num_predict": request.max_tokens}
        options.update({name: value for name, value in (("top_p", request.top_p), ("top_k", request.top_k))
                        if value is not None})
        if request.stop:
            options["stop"] = list(request.stop)
        if request.seed is not None:
            options["seed"] = request.seed
        if "num_ctx" in self.spec.options:
            options["num_ctx"] = self.spec.options["num_ctx"]
        options.update(self.spec.options.get("model_options", {}))
        return options

    def generate(self, request: Request) -> Generation:
        return self._generate(request, None)

    def generate_stream(self, request: Request, on_text: TextSink) -> Generation:
        return self._generate(request, on_text)

    def _generate(self, request: Request, on_text: TextSink | None) -> Generation:
        start = time.perf_counter()
        first: float | None = None
        parts: list[str] = []
        calls: list[ToolCall] = []
        final: Any = None
        if request.tools and request.tool_choice not in ("auto", "none"):
            # Ollama's API has no tool_choice: a forced call cannot be asked for, so say so.
            raise Unsupported(f"{self.name}: Ollama cannot force a tool call "
                              f"(tool_choice {request.tool_choice!r})")
        tools = list(request.tools) if request.tool_choice != "none" else []
        try:
            if request.messages is not None:
                stream = self.client.chat(model=self.spec.model, messages=to_ollama_messages(request.messages),
                                          tools=tools or None, stream=True,
                                          options=self._options(request), keep_alive=self.keep_alive)
            else:
                stream = self.client.generate(model=self.spec.model, prompt=request.prompt or "", stream=True,
                                              options=self._options(request), keep_alive=self.keep_alive)
            for chunk in stream:
                message = getattr(chunk, "message", None)
                piece = message.content if message is not None else chunk.response
                for call in (message.tool_calls or []) if message is not None else []:
                    calls.append(ToolCall.from_raw(call.function.name,
                                                   json.dumps(dict(call.function.arguments)),
                                                   f"call_{len(calls)}"))
                if (piece or calls) and first is None:
                    first = time.perf_counter() - start
                if piece:
                    parts.append(piece)
                    if on_text is not None:
                        on_text(piece)
                if chunk.done:
                    final = chunk
        except ollama.ResponseError as exc:
            detail = f"{self.name}: Ollama HTTP {exc.status_code}: {exc.error}"
            raise (RetryableError(detail) if exc.status_code >= 500 or exc.status_code == 429
                   else BackendError(detail)) from exc
        except httpx.TimeoutException as exc:
            raise BackendTimeout(f"{self.name}: Ollama did not answer in time: {exc}") from exc
        except (ConnectionError, httpx.TransportError) as exc:
            raise RetryableError(f"{self.name}: cannot connect to Ollama at {self.host}: {exc}") from exc
        total = time.perf_counter() - start
        server = server_timings(final) if final is not None else {}
        usage = Usage(int(server.get("prompt_eval_count", 0)), int(server.get("eval_count", 0)),
                      "server" if final is not None else "none")
        return Generation(text="".join(parts), tool_calls=calls, usage=usage,
                          finish_reason=getattr(final, "done_reason", None),
                          timings=Timings(total_s=total, first_token_s=first, server=server))

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> Loglikelihoods:
        raise Unsupported(f"{self.name}: Ollama gives no prompt logprobs; use generation mode")

    def process(self) -> int | None:
        """The Ollama server's PID (its model runners are its children, which the monitor
        follows), found from the port it listens on, else by process name."""
        if self._pid is None:
            from harness.backends.servers import pid_listening_on

            self._pid = pid_listening_on(urlparse(self.host).port or 11434)
            if self._pid is None:
                import psutil

                self._pid = next((p.pid for p in psutil.process_iter(["name"])
                                  if p.info["name"] == "ollama"), None)
        return self._pid

    def close(self) -> None:
        pass
