"""The bounded tool-calling loop, driven by the scripted backend."""

from __future__ import annotations

from typing import Any

from harness.backends.scripted import ScriptedBackend
from harness.models.call import ModelCall
from harness.strategies.tool_loop import Tool, ToolError, run_tool_loop


def echo(arguments: dict[str, Any]) -> str:
    if arguments["text"] == "refuse":
        raise ToolError("refused")
    return arguments["text"].upper()


ECHO = Tool("echo", "upper-case the text", {"type": "object", "properties": {"text": {"type": "string"}},
                                            "required": ["text"]}, echo)
FINISH = Tool("finish", "done", {"type": "object", "properties": {}}, lambda a: "finished")


def loop(steps: list[Any], **kwargs: Any):
    backend = ScriptedBackend.from_steps(steps)
    model = ModelCall(backend.spec, backend)
    return run_tool_loop(model, [{"role": "user", "content": "go"}], [ECHO, FINISH], **kwargs), backend


def test_plain_answer_ends_the_loop_at_once() -> None:
    result, _ = loop(["42"])
    assert (result.text, result.turns, result.stopped, result.calls) == ("42", 1, "answer", [])


def test_tool_results_go_back_to_the_model() -> None:
    result, backend = loop([{"tool_calls": [{"name": "echo", "arguments": {"text": "hi"}}]}, "done"])
    assert result.stopped == "answer" and result.turns == 2
    assert [(c.name, c.ok, c.result) for c in result.calls] == [("echo", True, "HI")]
    second = backend.requests[1].messages
    assert second[-1] == {"role": "tool", "tool_call_id": "call_0", "content": "HI"}
    assert backend.requests[0].tools[0]["function"]["name"] == "echo"


def test_malformed_unknown_and_refused_calls_are_recorded_not_raised() -> None:
    result, _ = loop([{"tool_calls": [{"name": "echo", "arguments": "{oops"},
                                      {"name": "nope", "arguments": {}},
                                      {"name": "echo", "arguments": {}},
                                      {"name": "echo", "arguments": {"text": "refuse"}}]}, "ok"])
    assert [c.ok for c in result.calls] == [False] * 4
    assert "not valid JSON" in result.calls[0].result
    assert "unknown tool 'nope'" in result.calls[1].result
    assert "missing required argument(s): text" in result.calls[2].result
    assert result.calls[3].result == "error: refused"
    assert len(result.errors) == 4 and result.stopped == "answer"


def test_finish_tool_and_turn_limit() -> None:
    finished, _ = loop([{"tool_calls": [{"name": "finish", "arguments": {}}]}], finish_tool="finish")
    assert finished.stopped == "finish_tool" and finished.finish_arguments == {}
    endless, backend = loop([{"tool_calls": [{"name": "echo", "arguments": {"text": "again"}}]}], max_turns=3)
    assert endless.stopped == "max_turns" and endless.turns == 3
    assert len(backend.requests) == 3 and len(endless.calls) == 3
