"""The OpenAI backend's tool calls against a real server: llama-cpp-python's server on loopback
serving SmolLM2 with its `chatml-function-calling` handler, streamed and not, for a named tool,
"required" and "auto"; and a forced call bounded by its schema's maxLength."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.backends.base import BackendError, Request
from harness.backends.chat_format import forced_call_budget, forced_call_schema, json_char_bound
from harness.backends.openai import OpenAIBackend
from harness.models.registry import ModelSpec

TOOL = {"type": "function", "function": {
    "name": "ask_small_model", "description": "Ask a small model to solve a question; returns its answer.",
    "parameters": {"type": "object", "properties": {"task": {"type": "string", "maxLength": 40}},
                   "required": ["task"]}}}
QUESTION = ({"role": "system", "content": "Hand the question to the tool ask_small_model."},
            {"role": "user", "content": "Natalia sold 48 clips in April and half as many in May. How many in all?"})


def backend(server: dict[str, Any], **options: Any) -> OpenAIBackend:
    return OpenAIBackend(ModelSpec(name="smollm2-server", backend="openai", model=str(server["model"]),
                                   options={"base_url": server["base_url"], **options}))


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
@pytest.mark.parametrize("choice", ["ask_small_model", "required"])
def test_a_forced_call_comes_back_whole_and_within_its_bound(tool_server: dict[str, Any], stream: bool,
                                                             choice: str) -> None:
    out = backend(tool_server, stream=stream).generate(
        Request(messages=QUESTION, tools=(TOOL,), tool_choice=choice, max_tokens=96))
    [call] = out.tool_calls
    # one name, not the name repeated once per streamed delta
    assert call.name == "ask_small_model" and call.error is None, call
    assert call.arguments is not None and set(call.arguments) == {"task"}
    assert isinstance(call.arguments["task"], str) and len(call.arguments["task"]) <= 40  # the grammar's bound
    assert json.loads(call.raw_arguments) == call.arguments and call.id
    assert out.finish_reason == "tool_calls" and out.usage.completion_tokens > 0
    if stream:
        assert out.timings.first_token_s is not None and out.timings.first_token_s <= out.timings.total_s


def test_auto_answers_whole_and_a_failed_stream_is_an_error(tool_server: dict[str, Any]) -> None:
    request = Request(messages=QUESTION, tools=(TOOL,), tool_choice="auto", max_tokens=48)
    out = backend(tool_server, stream="text").generate(request)  # tools: asked whole
    assert out.finish_reason in ("tool_calls", "stop", "length")
    assert all(c.name == "ask_small_model" and c.error is None for c in out.tool_calls)
    assert out.tool_calls or out.text.strip()
    # The server cannot stream an automatic tool choice: it fails after the 200, mid-stream. That
    # is an error saying so, never an empty answer.
    with pytest.raises(BackendError, match="stream ended with no answer"):
        backend(tool_server).generate(request)
    # Without tools, "text" still streams.
    plain = backend(tool_server, stream="text").generate(
        Request(messages=({"role": "user", "content": "Say hello."},), max_tokens=8))
    assert plain.text.strip() and plain.timings.first_token_s is not None


def test_stream_option_is_checked() -> None:
    with pytest.raises(BackendError, match="options.stream takes true, false or \"text\""):
        OpenAIBackend(ModelSpec(name="m", backend="openai", model="m",
                                options={"base_url": "http://127.0.0.1:9/v1", "stream": "sometimes"}))


def test_a_schema_bounds_the_forced_call_and_its_token_budget() -> None:
    schema = forced_call_schema((TOOL,), "required")
    assert schema is not None
    bound = json_char_bound(schema)
    # {"name": "ask_small_model", "arguments": {"task": <40 characters, each up to 6 when escaped>}}
    assert bound is not None and 2 + 6 * 40 < bound < 2 + 6 * 40 + 300
    assert forced_call_budget(schema, 16, room=4000) == bound  # raised to what the call may need
    assert forced_call_budget(schema, 16, room=100) == 100  # but never past the context
    assert forced_call_budget(schema, 2000, room=4000) == 2000  # nor below what was asked
    unbounded = {"type": "object", "properties": {"task": {"type": "string"}}, "additionalProperties": False}
    assert json_char_bound(unbounded) is None and forced_call_budget(unbounded, 16, room=4000) == 16
    assert json_char_bound({"type": "object", "properties": {}}) is None  # open to more properties
    assert json_char_bound({"type": "array", "items": {"type": "boolean"}, "maxItems": 3}) is not None
