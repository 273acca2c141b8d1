"""OpenAI and any OpenAI-compatible server (vLLM, llama.cpp's server, LM Studio, Ollama's /v1).

Registry options: `base_url` (default: OpenAI), `api_key_env` (default OPENAI_API_KEY; the key is
read from the environment only, never from a file), `tokenize_url` (a llama.cpp-server style
endpoint used to count tokens when the server reports no usage), `loglikelihood` (true where
the server returns prompt logprobs with `echo`, as llama.cpp's server does), `stream` (default
true; false asks for whole answers; "text" streams only requests without tools, for servers that
cannot stream a tool choice, such as llama-cpp-python's with tool_choice auto).

Requests are streamed, to measure time to first token, with `stream_options.include_usage`;
usage the server reports is marked "server". Some servers send no usage on streams: then the
tokens are counted with the server's tokenizer endpoint ("tokenizer") or estimated from the
text ("estimate"), and the record says which.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
import urllib.error
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
from harness.backends.servers import pid_listening_on
from harness.backends.toolcalls import openai_tool_choice
from harness.models.registry import ModelSpec

try:
    import openai
except ModuleNotFoundError:  # pragma: no cover - available() reports it
    openai = None  # type: ignore[assignment]

PLACEHOLDER_KEY = "not-needed"  # local servers ignore the key, but the client requires one


def _is_local(url: str | None) -> bool:
    if not url:
        return False
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _api_key(spec: ModelSpec) -> str | None:
    env = spec.options.get("api_key_env", "OPENAI_API_KEY")
    if env == "":  # `api_key_env = ""`: a self-hosted server that takes no key (vLLM, llama.cpp's server)
        return PLACEHOLDER_KEY
    key = os.environ.get(env)
    if key:
        return key
    return PLACEHOLDER_KEY if _is_local(spec.options.get("base_url")) else None


def available(spec: ModelSpec) -> str | None:
    if openai is None:
        return "the openai package is not installed (pip install -e '.[openai]')"
    if _api_key(spec) is None:
        return f"no API key: set {spec.options.get('api_key_env', 'OPENAI_API_KEY')}"
    base = spec.options.get("base_url")
    if base and _is_local(base):
        try:  # a local server must answer now; a remote API is trusted to be up
            urllib.request.urlopen(base.rstrip("/") + "/models", timeout=1).close()
        except urllib.error.HTTPError:
            pass  # it answered, if not with a model list: good enough to try
        except OSError as exc:
            return f"server {base} does not answer ({exc})"
    return None


def estimate_tokens(text: str) -> int:
    # About four characters a token for English text; only used when nothing better exists.
    return max(1, round(len(text) / 4)) if text else 0


def _cut_short(calls: list[ToolCall], finish: str | None) -> list[ToolCall]:
    """Calls whose arguments do not parse because the answer hit max_tokens say so: the reason a
    user can act on (a larger token budget, a maxLength in the tool's schema)."""
    if finish == "length":
        for call in calls:
            if call.error is not None:
                call.error += " (the answer ran out of tokens: finish_reason=length)"
    return calls


class OpenAIBackend(BackendBase):
    def __init__(self, spec: ModelSpec, timeout_s: float = 600.0) -> None:
        if openai is None:
            raise BackendError("the openai package is not installed")
        key = _api_key(spec)
        if key is None:
            raise BackendError(f"{spec.name}: no API key in ${spec.options.get('api_key_env', 'OPENAI_API_KEY')}")
        self.name = spec.name
        self.spec = spec
        self.base_url = spec.options.get("base_url")
        # Retries belong to the call wrapper (harness/models/call.py), so the client makes none.
        self.client = openai.OpenAI(api_key=key, base_url=self.base_url, max_retries=0,
                                    timeout=spec.options.get("timeout_s", timeout_s))
        self.supports_loglikelihood = bool(spec.options.get("loglikelihood", False))
        self.server_pid: int | None = spec.options.get("pid")
        self.stream: bool | str = spec.options.get("stream", True)
        if self.stream not in (True, False, "text"):
            raise BackendError(f"{spec.name}: options.stream takes true, false or \"text\" (stream only "
                               f"requests without tools), not {self.stream!r}")
        self._special_tokens: int | None = None

    # -- helpers ---------------------------------------------------------------------------------
    def _translate(self, exc: Exception) -> BackendError:
        if isinstance(exc, openai.APITimeoutError):
            return BackendTimeout(f"{self.name}: {exc}")
        if isinstance(exc, openai.APIConnectionError):
            return RetryableError(f"{self.name}: cannot connect to {self.base_url or 'OpenAI'}: {exc}")
        if isinstance(exc, openai.APIStatusError):
            detail = f"{self.name}: HTTP {exc.status_code}: {exc.message}"
            if exc.status_code == 429 or exc.status_code >= 500:
                return RetryableError(detail)
            return BackendError(detail)
        return BackendError(f"{self.name}: {type(exc).__name__}: {exc}")

    def _tokenize(self, url: str, text: str) -> int:
        body = json.dumps({"input": text}).encode()
        req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as response:
            return len(json.loads(response.read())["tokens"])

    def _count(self, text: str, *, prompt: bool = False) -> tuple[int, str]:
        """Tokens in text, and where the count came from. A prompt keeps the BOS token the
        server adds to it; generated text has none."""
        url = self.spec.options.get("tokenize_url")
        if url and text:
            try:
                if self._special_tokens is None:  # the BOS the endpoint adds to every input
                    self._special_tokens = self._tokenize(url, "")
                return self._tokenize(url, text) - (0 if prompt else self._special_tokens), "tokenizer"
            except (OSError, KeyError, ValueError):
                pass
        return estimate_tokens(text), "estimate"

    # -- the protocol ------------------------------------------------------------------------------
    @property
    def abilities(self) -> frozenset[str]:
        offered = super().abilities
        return offered - {"generate_stream"} if self.stream is False else offered

    def generate(self, request: Request) -> Generation:
        return self._generate(request, None)

    def generate_stream(self, request: Request, on_text: TextSink) -> Generation:
        """The text deltas as they come; a request this server is asked whole (options.stream)
        comes in one piece."""
        return self._generate(request, on_text)

    def _generate(self, request: Request, on_text: TextSink | None) -> Generation:
        params: dict[str, Any] = {"model": self.spec.model, "max_tokens": request.max_tokens,
                                  "temperature": request.temperature}
        if request.top_p is not None:
            params["top_p"] = request.top_p
        if request.top_k is not None:  # not OpenAI's own parameter: vLLM and llama.cpp's server take it
            params["extra_body"] = {"top_k": request.top_k}
        if request.stop:
            params["stop"] = list(request.stop)
        if request.seed is not None:
            params["seed"] = request.seed
        chat = request.messages is not None
        if chat:
            # An assistant turn that only calls tools has content None (as the API returns it);
            # llama-cpp-python's server takes only text there, and "" means the same to all.
            params["messages"] = [{**m, "content": ""} if m.get("content") is None else m
                                  for m in request.messages or ()]
            if request.tools:
                params["tools"] = list(request.tools)
                params["tool_choice"] = openai_tool_choice(request.tool_choice, request.tools)
        else:
            params["prompt"] = request.prompt or ""
        if self.stream is False or (self.stream == "text" and request.tools):
            whole = self._whole(params, chat)
            if on_text is not None and whole.text:
                on_text(whole.text)
            return whole
        return self._streamed({**params, "stream": True, "stream_options": {"include_usage": True}}, chat,
                              on_text)

    def _streamed(self, params: dict[str, Any], chat: bool, on_text: TextSink | None = None) -> Generation:
        """One streamed request: the text as it comes, and the tool calls assembled from their
        deltas (an id and name, then pieces of the arguments; some servers repeat the name whole in
        every delta, as llama-cpp-python's does, which names the tool once, not many times)."""
        start = time.perf_counter()
        first: float | None = None
        parts: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        usage: Any = None
        finish = None
        try:
            stream = (self.client.chat.completions.create(**params) if chat
                      else self.client.completions.create(**params))
            for chunk in stream:
                if getattr(chunk, "usage", None):
                    usage = chunk.usage
                for choice in chunk.choices or ():
                    finish = choice.finish_reason or finish
                    piece = choice.delta.content if chat else choice.text
                    for delta in (getattr(choice.delta, "tool_calls", None) or []) if chat else []:
                        slot = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                        slot["id"] = delta.id or slot["id"]
                        if delta.function is not None:
                            name = delta.function.name or ""
                            slot["name"] += "" if name == slot["name"] else name
                            slot["arguments"] += delta.function.arguments or ""
                        if first is None:
                            first = time.perf_counter() - start
                    if piece:
                        if first is None:
                            first = time.perf_counter() - start
                        parts.append(piece)
                        if on_text is not None:
                            on_text(piece)
        except openai.OpenAIError as exc:
            raise self._translate(exc) from exc
        total = time.perf_counter() - start
        text = "".join(parts)
        if finish is None and not text and not calls:
            # The server failed after it began to answer (an HTTP error can no longer be sent):
            # an error with that said, not an empty answer.
            raise BackendError(f"{self.name}: the stream ended with no answer and no finish reason; "
                               "the server failed mid-answer (see its log; llama-cpp-python cannot "
                               "stream tool_choice auto: set options.stream = \"text\")")
        written = text + "".join(c["name"] + c["arguments"] for c in calls.values())
        if usage is not None:
            counted = Usage(usage.prompt_tokens, usage.completion_tokens, "server")
        else:
            prompt_text = params.get("prompt") or json.dumps(params.get("messages"))
            prompt_tokens, source = self._count(prompt_text, prompt=True)
            completion_tokens, _ = self._count(written)
            counted = Usage(prompt_tokens, completion_tokens, source)  # type: ignore[arg-type]
        tool_calls = [ToolCall.from_raw(c["name"], c["arguments"], c["id"] or f"call_{i}")
                      for i, c in sorted(calls.items())]
        return Generation(text=text, tool_calls=_cut_short(tool_calls, finish), usage=counted,
                          finish_reason=finish, timings=Timings(total_s=total, first_token_s=first))

    def _whole(self, params: dict[str, Any], chat: bool) -> Generation:
        """One request answered whole (options.stream = false): for servers and proxies that
        cannot stream, or stream tool calls differently; no time to first token."""
        start = time.perf_counter()
        try:
            response = (self.client.chat.completions.create(**params) if chat
                        else self.client.completions.create(**params))
        except openai.OpenAIError as exc:
            raise self._translate(exc) from exc
        total = time.perf_counter() - start
        if not response.choices:
            raise BackendError(f"{self.name}: the server answered with no choices")
        choice = response.choices[0]
        text = (choice.message.content if chat else choice.text) or ""
        calls = [ToolCall.from_raw(c.function.name or "", c.function.arguments or "", c.id or f"call_{i}")
                 for i, c in enumerate((choice.message.tool_calls if chat else None) or [])]
        if response.usage is not None:
            counted = Usage(response.usage.prompt_tokens, response.usage.completion_tokens, "server")
        else:
            prompt_tokens, source = self._count(params.get("prompt") or json.dumps(params.get("messages")),
                                                prompt=True)
            counted = Usage(prompt_tokens, self._count(text)[0], source)  # type: ignore[arg-type]
        return Generation(text=text, tool_calls=_cut_short(calls, choice.finish_reason), usage=counted,
                          finish_reason=choice.finish_reason, timings=Timings(total_s=total))

    def count_tokens(self, content: str | list[dict[str, Any]]) -> int:
        """The backend protocol's optional count (chat memory budgets): plain text through the server's
        tokenize endpoint; no estimate, and no chat messages (the server's template is not at hand)."""
        url = self.spec.options.get("tokenize_url")
        if not url or not isinstance(content, str):
            raise Unsupported(f"{self.name}: counts only plain text, and only with options.tokenize_url")
        return self._tokenize(url, content)

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> Loglikelihoods:
        """log P(continuation | context) from the server's logprobs.

        Fast path, one request per context: generate one token with the top-20 logprobs and
        read each continuation there (exact for single-token continuations such as " A").
        A continuation not among them is asked for with `echo`, which is exact but slow on
        llama.cpp's server (it scores the whole vocabulary at every prompt token).
        """
        if not self.supports_loglikelihood:
            raise Unsupported(f"{self.name}: this server gives no prompt logprobs (set options.loglikelihood)")
        start = time.perf_counter()
        prompt_tokens = 0
        top: dict[str, dict[str, float]] = {}
        values: list[float] = []
        for req in requests:
            if req.context not in top:
                response = self._complete(prompt=req.context, max_tokens=1, logprobs=20)
                prompt_tokens += response.usage.prompt_tokens if response.usage else 0
                logprobs = response.choices[0].logprobs
                top[req.context] = dict(logprobs.top_logprobs[0]) if logprobs and logprobs.top_logprobs else {}
            if req.continuation in top[req.context]:
                values.append(float(top[req.context][req.continuation]))
                continue
            value, used = self._echo_loglikelihood(req)
            values.append(value)
            prompt_tokens += used
        return Loglikelihoods(values, Usage(prompt_tokens, 0, "server"),
                              Timings(total_s=time.perf_counter() - start))

    def _complete(self, **params: Any) -> Any:
        try:
            return self.client.completions.create(model=self.spec.model, temperature=0.0, **params)
        except openai.OpenAIError as exc:
            raise self._translate(exc) from exc

    def _echo_loglikelihood(self, req: LoglikelihoodRequest) -> tuple[float, int]:
        response = self._complete(prompt=req.context + req.continuation, max_tokens=1, echo=True, logprobs=1)
        logprobs = response.choices[0].logprobs
        if logprobs is None or not logprobs.token_logprobs:
            raise Unsupported(f"{self.name}: the server returned no prompt logprobs")
        end = len(req.context + req.continuation)
        # Tokens that start inside the continuation count; the one generated token does not.
        picked = [v for offset, v in zip(logprobs.text_offset, logprobs.token_logprobs)
                  if len(req.context) <= offset < end and v is not None]
        if not picked:
            raise BackendError(f"{self.name}: continuation {req.continuation!r} has no token of its own")
        return float(sum(picked)), response.usage.prompt_tokens if response.usage else 0

    def process(self) -> int | None:
        """The server's PID when it runs here (options.pid, or found from a loopback port)."""
        if self.server_pid is None and _is_local(self.base_url):
            self.server_pid = pid_listening_on(urlparse(self.base_url).port or 80)
        return self.server_pid

    def describe(self) -> dict[str, Any]:
        """How this model is reached: the server, the client's timeout, and that sampling is the
        server's own apart from the temperature, stop and seed each request sends."""
        return {"backend": "openai", "model": self.spec.model, "base_url": self.base_url or "api.openai.com",
                "timeout_s": self.client.timeout, "quantization_asked": self.spec.quantization or "(none)",
                "loglikelihood": self.supports_loglikelihood,
                "sampling": "the server's defaults; each request sets temperature, max_tokens, stop, seed "
                            "(top_p, top_k where asked)",
                "openai": getattr(openai, "__version__", None)}

    def close(self) -> None:
        self.client.close()
