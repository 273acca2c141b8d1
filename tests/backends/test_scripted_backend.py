"""The scripted test double: replays steps and tool calls, then repeats or fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.backends.base import BackendError, Request, ToolCall, Unsupported
from harness.backends.scripted import ScriptedBackend
from harness.models.registry import ModelSpec


def test_replays_text_and_tool_calls_in_order() -> None:
    backend = ScriptedBackend.from_steps(
        [{"tool_calls": [{"name": "ask_small_model", "arguments": {"question": "2+2?"}}]}, "The answer is 4."])
    first = backend.generate(Request(prompt="q"))
    assert first.text == "" and first.finish_reason == "tool_calls"
    assert first.tool_calls == [ToolCall(name="ask_small_model", raw_arguments=json.dumps({"question": "2+2?"}),
                                         id="call_0", arguments={"question": "2+2?"})]
    second = backend.generate(Request(prompt="q2"))
    assert (second.text, second.tool_calls, second.finish_reason) == ("The answer is 4.", [], "stop")
    assert [r.prompt for r in backend.requests] == ["q", "q2"]


def test_raw_malformed_arguments_pass_through() -> None:
    backend = ScriptedBackend.from_steps([{"tool_calls": [{"name": "f", "arguments": "{not json"}]}])
    call = backend.generate(Request(prompt="q")).tool_calls[0]
    assert (call.raw_arguments, call.arguments) == ("{not json", None)
    assert call.error is not None and call.error.startswith("arguments are not valid JSON")


def test_repeat_or_error_when_exhausted() -> None:
    looping = ScriptedBackend.from_steps(["a", "b"])
    assert [looping.generate(Request(prompt="x")).text for _ in range(4)] == ["a", "b", "b", "b"]
    strict = ScriptedBackend.from_steps(["a"], then="error")
    strict.generate(Request(prompt="x"))
    with pytest.raises(BackendError, match="exhausted after 1 steps"):
        strict.generate(Request(prompt="x"))
    with pytest.raises(Unsupported):
        strict.loglikelihood([])


def test_script_file_from_registry_options(tmp_path: Path) -> None:
    script = tmp_path / "s.json"
    script.write_text(json.dumps(["hello"]))
    spec = ModelSpec(name="s", backend="scripted", model="script", options={"script": str(script)})
    assert ScriptedBackend(spec).generate(Request(prompt="x")).text == "hello"
