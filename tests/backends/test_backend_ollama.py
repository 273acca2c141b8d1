"""The Ollama backend against responses in Ollama's documented format (contract tests), and a
live test when a real Ollama server answers at OLLAMA_HOST."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from fake_servers import send_json, send_ndjson, serve

from harness.backends.base import BackendError, Request, RetryableError, ToolCall, Unsupported
from harness.backends.ollama import OllamaBackend, available, host_of, installed_models
from harness.models.call import CallPolicy, ModelCall
from harness.models.registry import ModelSpec

# From Ollama's API documentation (docs/api.md), /api/generate streaming and /api/chat.
GENERATE_STREAM = [
    {"model": "llama3.2", "created_at": "2023-08-04T08:52:19.385406455-07:00", "response": "The", "done": False},
    {"model": "llama3.2", "created_at": "2023-08-04T08:52:19.385406455-07:00", "response": " sky", "done": False},
    {"model": "llama3.2", "created_at": "2023-08-04T19:22:45.499127Z", "response": "", "done": True,
     "done_reason": "stop", "context": [1, 2, 3], "total_duration": 10706818083, "load_duration": 6338219291,
     "prompt_eval_count": 26, "prompt_eval_duration": 130079000, "eval_count": 259,
     "eval_duration": 4232710000},
]
CHAT_TOOL_CALL = [
    {"model": "llama3.2", "created_at": "2024-07-22T20:33:28.123648Z",
     "message": {"role": "assistant", "content": "",
                 "tool_calls": [{"function": {"name": "get_current_weather",
                                              "arguments": {"format": "celsius", "location": "Paris, FR"}}}]},
     "done": False},
    {"model": "llama3.2", "created_at": "2024-07-22T20:33:28.2Z", "message": {"role": "assistant", "content": ""},
     "done_reason": "stop", "done": True, "total_duration": 885095291, "load_duration": 3753500,
     "prompt_eval_count": 122, "prompt_eval_duration": 328493000, "eval_count": 33, "eval_duration": 552222000},
]
TAGS = {"models": [{"name": "llama3.2:latest", "model": "llama3.2:latest", "size": 2019393189}]}


def spec(host: str, model: str = "llama3.2") -> ModelSpec:
    return ModelSpec(name="llama", backend="ollama", model=model, options={"host": host, "keep_alive": "1m"})


def routes(**extra: Any) -> dict[str, Any]:
    table = {"/api/tags": lambda h, b: send_json(h, TAGS),
             "/api/generate": lambda h, b: send_ndjson(h, GENERATE_STREAM),
             "/api/chat": lambda h, b: send_ndjson(h, CHAT_TOOL_CALL)}
    table.update(extra)
    return table


def test_generate_records_the_servers_own_timings() -> None:
    with serve(routes()) as (url, received):
        backend = OllamaBackend(spec(url))
        out = backend.generate(Request(prompt="Why is the sky blue?", max_tokens=64, stop=("\n\n",), seed=3))
    assert out.text == "The sky"
    assert (out.usage.prompt_tokens, out.usage.completion_tokens, out.usage.source) == (26, 259, "server")
    assert out.timings.server["load_s"] == pytest.approx(6.338219291)
    assert out.timings.server["prompt_eval_s"] == pytest.approx(0.130079)
    assert out.timings.server["eval_s"] == pytest.approx(4.23271)
    assert out.timings.first_token_s is not None and out.timings.first_token_s <= out.timings.total_s
    body = received[-1]["body"]
    assert body["keep_alive"] == "1m" and body["stream"] is True
    assert body["options"] == {"temperature": 0.0, "num_predict": 64, "stop": ["\n\n"], "seed": 3}


def test_chat_tool_calls_pass_through_as_raw_json_arguments() -> None:
    history = ({"role": "user", "content": "Weather in Paris?"},
               {"role": "assistant", "content": None,
                "tool_calls": [{"id": "c1", "type": "function",
                                "function": {"name": "lookup", "arguments": "{\"q\": \"Paris\"}"}}]},
               {"role": "tool", "tool_call_id": "c1", "content": "sunny"})
    tools = ({"type": "function", "function": {"name": "get_current_weather", "parameters": {"type": "object"}}},)
    with serve(routes()) as (url, received):
        out = OllamaBackend(spec(url)).generate(Request(messages=history, tools=tools))
    arguments = {"format": "celsius", "location": "Paris, FR"}
    assert out.tool_calls == [ToolCall(name="get_current_weather", raw_arguments=json.dumps(arguments),
                                       id="call_0", arguments=arguments)]
    sent = received[-1]["body"]["messages"]
    assert sent[1]["tool_calls"] == [{"function": {"name": "lookup", "arguments": {"q": "Paris"}}}]
    assert sent[2] == {"role": "tool", "content": "sunny", "tool_name": "lookup"}
    assert received[-1]["body"]["tools"][0]["function"]["name"] == "get_current_weather"


def test_availability_reads_the_servers_model_list() -> None:
    with serve(routes()) as (url, _):
        assert installed_models(url) == ["llama3.2:latest"]
        assert available(spec(url)) is None
        assert "ollama pull qwen2.5:7b" in str(available(spec(url, "qwen2.5:7b")))
    assert "no Ollama server answers" in str(available(spec(url)))


def test_server_errors_are_retryable_and_missing_models_are_not() -> None:
    def fail(status: int, message: str) -> Any:
        return lambda h, b: send_json(h, {"error": message}, status)

    with serve(routes(**{"/api/generate": fail(503, "busy")})) as (url, received):
        backend = OllamaBackend(spec(url))
        with pytest.raises(RetryableError, match="503"):
            backend.generate(Request(prompt="x"))
        call = ModelCall(backend.spec, backend, CallPolicy(retries=2, backoff_s=0.01))
        with pytest.raises(BackendError, match="gave up after 3 attempts"):
            call.generate(Request(prompt="x"))
        assert len([r for r in received if r["path"] == "/api/generate"]) == 1 + 3
    with serve(routes(**{"/api/generate": fail(404, "model 'x' not found")})) as (url, _):
        with pytest.raises(BackendError, match="not found") as err:
            OllamaBackend(spec(url)).generate(Request(prompt="x"))
        assert not isinstance(err.value, RetryableError)


def test_no_loglikelihood() -> None:
    with serve(routes()) as (url, _):
        with pytest.raises(Unsupported):
            OllamaBackend(spec(url)).loglikelihood([])


def _live_host() -> str | None:
    host = os.environ.get("OLLAMA_HOST")
    if not host:
        return None
    try:
        installed_models(host_of(spec(host)), timeout=2)
    except (OSError, ValueError):
        return None
    return host


@pytest.mark.skipif(_live_host() is None, reason="no Ollama server answers at OLLAMA_HOST")
def test_live_ollama_server() -> None:
    host = host_of(spec(_live_host() or ""))
    model = installed_models(host)[0]
    backend = OllamaBackend(spec(host, model))
    out = backend.generate(Request(prompt="Say hello.", max_tokens=8))
    assert out.usage.source == "server" and out.usage.completion_tokens > 0
    assert out.timings.server["total_s"] > 0
    assert backend.process() is not None
