"""Tool calls read back from a chat model's generated text, in the formats chat templates teach.

In-process backends (transformers, llama.cpp without a function-calling handler) get plain text
back from the model; a model that wants to call a tool writes the call in its template's format:

- `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (Qwen2.5, Hermes, SmolLM), one
  block per call, or a JSON list of calls inside one block; an unclosed last block (the token
  budget ran out) is read up to the end of the text
- `[TOOL_CALLS] [{"name": ..., "arguments": {...}}]` (Mistral)
- `<|python_tag|>{"name": ..., "parameters": {...}}` or a bare JSON object (or a list of them)
  that names one of the offered tools (Llama 3.x), optionally in a ```json fence
- `functions.<name>:\n{...}` (llama-cpp-python's chatml-function-calling template), for an
  offered tool

`parse_tool_calls` returns the text with the calls cut out and the calls as ToolCall values. A
call that cannot be read (broken JSON, no tool name) comes back as a ToolCall with `error` set:
a model's malformed call is a measured outcome, so parsing never raises.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from typing import Any

from harness.backends.base import ToolCall

_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_MISTRAL = re.compile(r"\[TOOL_CALLS\]\s*(.*)$", re.DOTALL)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
_NAME = re.compile(r'"name"\s*:\s*"([^"\\]*)"')
_FUNCTIONS = re.compile(r"^functions\.([\w.-]+):[ \t]*\n?", re.MULTILINE)


def openai_tool_choice(choice: str, tools: Sequence[dict[str, Any]] = ()) -> str | dict[str, Any]:
    """Request.tool_choice in the chat completions API's form: a mode, or one named function.

    "required" with one tool offered is sent as that tool's name: the same demand, and the form
    every server takes (llama-cpp-python's function-calling handlers know only named choices)."""
    if choice == "required" and len(tools) == 1:
        choice = tools[0].get("function", tools[0]).get("name", choice)
    if choice in ("auto", "required", "none"):
        return choice
    return {"type": "function", "function": {"name": choice}}


def _from_object(value: Any, index: int, raw: str) -> ToolCall:
    """One call from a decoded JSON value; anything but {"name": str, "arguments": {...}} is an
    error naming what was wrong."""
    if not isinstance(value, dict):
        return ToolCall(name="", raw_arguments=raw, id=f"call_{index}",
                        error=f"a tool call must be a JSON object, not {type(value).__name__}")
    name = value.get("name")
    if not isinstance(name, str) or not name:
        return ToolCall(name="", raw_arguments=raw, id=f"call_{index}",
                        error="the tool call has no \"name\" string")
    arguments = value.get("arguments", value.get("parameters", {}))
    # Some models write the arguments as a JSON string (as the OpenAI API carries them).
    raw_arguments = arguments if isinstance(arguments, str) else json.dumps(arguments)
    call = ToolCall.from_raw(name, raw_arguments, f"call_{index}")
    call.id = str(value.get("id") or call.id)
    return call


def _decode(body: str, start: int) -> tuple[list[ToolCall], str | None]:
    """The calls in one block of JSON text (an object or a list); on broken JSON, one call with
    the error and whatever tool name can still be read."""
    body = body.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    try:
        value = json.loads(body, strict=False)  # raw control characters in strings: see base.parse_arguments
    except json.JSONDecodeError as exc:
        named = _NAME.search(body)
        error = f"tool call is not valid JSON ({exc.msg} at position {exc.pos})"
        return [ToolCall(name=named.group(1) if named else "", raw_arguments=body, id=f"call_{start}",
                         error=error)], error
    values = value if isinstance(value, list) else [value]
    return [_from_object(v, start + i, json.dumps(v)) for i, v in enumerate(values)], None


def _names_a_tool(value: Any, tool_names: Collection[str]) -> bool:
    def one(v: Any) -> bool:
        if not isinstance(v, dict) or not isinstance(v.get("name"), str):
            return False
        if tool_names:
            return v["name"] in tool_names
        return "arguments" in v or "parameters" in v

    if isinstance(value, list):
        return bool(value) and all(one(v) for v in value)
    return one(value)


def parse_tool_calls(text: str, tool_names: Collection[str] = ()) -> tuple[str, list[ToolCall]]:
    """(the text without its tool calls, the calls). `tool_names`: the offered tools; a bare JSON
    object counts as a call only when it names one of them (else it is an answer, such as the
    extraction suite's JSON)."""
    if "<tool_call>" in text:
        calls: list[ToolCall] = []
        for match in _BLOCK.finditer(text):
            found, _ = _decode(match.group(1), len(calls))
            calls.extend(found)
        return _BLOCK.sub("", text).strip(), calls
    functions = [m for m in _FUNCTIONS.finditer(text) if m.group(1) in tool_names]
    if functions:
        calls = []
        for index, match in enumerate(functions):
            end = functions[index + 1].start() if index + 1 < len(functions) else len(text)
            raw = text[match.end(): end].strip()
            calls.append(ToolCall.from_raw(match.group(1), raw, f"call_{index}"))
        return text[: functions[0].start()].strip(), calls
    mistral = _MISTRAL.search(text)
    if mistral:
        calls, _ = _decode(mistral.group(1), 0)
        return text[: mistral.start()].strip(), calls
    body = text.strip()
    if body.startswith("<|python_tag|>"):
        calls, _ = _decode(body[len("<|python_tag|>"):], 0)
        return "", calls
    fenced = _FENCE.match(body)
    candidate = fenced.group(1) if fenced else body
    if not candidate.startswith(("{", "[")):
        return text, []
    try:
        value = json.loads(candidate)
    except json.JSONDecodeError:
        # Broken JSON that plainly meant to call an offered tool is a malformed call, not prose.
        named = _NAME.search(candidate)
        if named and named.group(1) in tool_names:
            return "", _decode(candidate, 0)[0]
        return text, []
    if not _names_a_tool(value, tool_names):
        return text, []
    return "", _decode(candidate, 0)[0]
