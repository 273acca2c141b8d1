"""The delegation router's control flow, with scripted large and small models."""

from __future__ import annotations

import json
from typing import Any

from harness.backends.scripted import ScriptedBackend
from harness.models.call import ModelCall
from harness.report.comparison import compare
from harness.strategies.delegate import TOOL_NAME, route


def models(large_steps: list[Any], small_steps: list[Any]
           ) -> tuple[ModelCall, ModelCall, ScriptedBackend, ScriptedBackend]:
    large = ScriptedBackend.from_steps(large_steps, name="large")
    small = ScriptedBackend.from_steps(small_steps, name="small")
    return ModelCall(large.spec, large), ModelCall(small.spec, small), large, small


def ask(task: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": TOOL_NAME, "arguments": {"task": task}}]}


def test_no_tool_call_leaves_the_small_model_idle() -> None:
    large, small, _, small_backend = models(["2 + 2 = 4. The answer is 4."], ["unused"])
    result = route(large, small, "What is 2+2?", small_prompt=lambda t: f"Q: {t}\nA:")
    assert (result.text, result.tool_calls, result.loop.stopped) == ("2 + 2 = 4. The answer is 4.", 0, "answer")
    assert small_backend.requests == [] and small.log.calls == 0 and large.log.calls == 1


def test_one_call_passes_the_task_and_returns_the_answer() -> None:
    large, small, large_backend, small_backend = models([ask("What is 6*7?"), "The answer is 42."], ["42"])
    result = route(large, small, "Six sevens?", small_prompt=lambda t: f"Question: {t}\nAnswer:")
    assert result.tool_calls == 1 and result.small_answers == ["42"] and result.text == "The answer is 42."
    assert small_backend.requests[0].prompt == "Question: What is 6*7?\nAnswer:"
    tool_message = large_backend.requests[1].messages[-1]
    assert tool_message["role"] == "tool" and tool_message["content"] == "42"
    assert large_backend.requests[0].tools[0]["function"]["name"] == TOOL_NAME
    assert (large.log.calls, small.log.calls) == (2, 1)


def test_several_calls_in_several_turns() -> None:
    large, small, _, _ = models([ask("3*4?"), {"tool_calls": [
        {"name": TOOL_NAME, "arguments": {"task": "12+1?"}}, {"name": TOOL_NAME, "arguments": {"task": "13*2?"}}]},
        "The answer is 26."], ["12", "13", "26"])
    result = route(large, small, "q", small_prompt=str, max_turns=5)
    assert result.tool_calls == 3 and result.loop.turns == 3 and result.small_answers == ["12", "13", "26"]
    assert result.malformed == []
    assert [c["turn"] for c in result.to_extra()["tool_calls"]] == [1, 2, 2]


def test_malformed_arguments_are_reported_not_raised() -> None:
    large, small, _, small_backend = models(
        [{"tool_calls": [{"name": TOOL_NAME, "arguments": "{\"task\": unquoted}"}]}, "The answer is 5."], ["5"])
    result = route(large, small, "q", small_prompt=str)
    assert result.tool_calls == 1 and len(result.malformed) == 1
    assert "not valid JSON" in result.malformed[0]
    assert small_backend.requests == []  # the small model never ran on garbage
    assert result.text == "The answer is 5."


def test_a_model_that_never_stops_calling_tools_hits_the_turn_limit() -> None:
    large, small, large_backend, _ = models([ask("again?")], ["again"])
    result = route(large, small, "q", small_prompt=str, max_turns=3)
    assert result.loop.stopped == "max_turns" and result.text == ""
    assert len(large_backend.requests) == 3 and result.tool_calls == 3
    extra = result.to_extra()
    assert extra["stopped"] == "max_turns" and extra["turns"] == 3
    json.dumps(extra)  # the record must be serializable


def test_comparison_uses_only_the_items_every_variant_answered() -> None:
    def rec(model: str, strategy: str, item: str, correct: bool, cost: float, calls: int = 0) -> dict[str, Any]:
        return {"suite": "gsm8k", "model": model, "strategy": strategy, "item_id": item,
                "status": "ok" if correct else "wrong", "correct": correct, "cost": cost,
                "timings": {"wall_s": 2.0}, "usage": {"prompt_tokens": 10, "completion_tokens": 5},
                "tool_calls": [{"turn": 1, "name": "ask_small_model", "arguments": "{}", "ok": True,
                                "result": ""}] * calls}

    records = [rec("big", "single", "a", True, 0.02), rec("big", "single", "b", True, 0.02),
               rec("small", "single", "a", False, 0.0), rec("small", "single", "b", True, 0.0),
               rec("small+big", "delegate", "a", True, 0.01, 2), rec("small+big", "delegate", "b", True, 0.01, 0),
               rec("small", "single", "c", True, 0.0)]  # c: only one variant answered it
    result = compare(records)
    assert result["common_items"] == 2
    big, small, router = (result["variants"][k] for k in ("single:big", "single:small", "delegate:small+big"))
    assert (big["accuracy"], small["accuracy"], router["accuracy"]) == (1.0, 0.5, 1.0)
    assert big["cost_per_100_items"] == 2.0 and router["cost_per_100_items"] == 1.0
    assert router["tool_calls_per_item"] == 1.0 and router["total_tokens"] == 30
