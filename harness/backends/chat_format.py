"""Putting a harness chat history through any model's own chat template (llama.cpp and
transformers alike), and forcing a tool call.

A harness history is OpenAI-shaped: assistant turns may carry `tool_calls` with content None,
and tool results come back as role "tool". Many small models' templates know none of that
(SmolLM2's concatenates `message['content']`; Gemma's demands strictly alternating user and
model turns), so the history is first written in the plain form every template accepts:

- an assistant's tool calls become its text, in the `<tool_call>{json}</tool_call>` form the
  model is asked to write (unless the template renders `tool_calls` itself)
- a tool result becomes a user turn `<tool_response>...</tool_response>` (unless the template
  has a tool role), and consecutive turns of one role are merged
- the offered tools go to the template as `tools` when it uses them, else into the system
  message with instructions for the `<tool_call>` form

tool_choice "required" or a tool's name forces a call: the prompt continues with `<tool_call>`
and (in llama.cpp) a grammar built from the tools' JSON schemas constrains what follows.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from harness.backends.base import BackendError

FORCED_PREFIX = "<tool_call>\n"

# End-of-turn markers of common templates: generation stops there even when the GGUF's EOS
# token is another one (Gemma's <eos> vs <end_of_turn>).
_END_OF_TURN = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>", "</s>")

TOOL_INSTRUCTIONS = (
    "You can call these tools:\n<tools>\n{tools}\n</tools>\n"
    "To call a tool, answer with only\n<tool_call>\n{{\"name\": \"<tool name>\", \"arguments\": "
    "{{<the arguments as a JSON object>}}}}\n</tool_call>\nThe tool's result comes back to you in "
    "<tool_response>. When you need no tool, answer normally."
)


def _call_text(call: dict[str, Any]) -> str:
    function = call.get("function", call)
    raw = function.get("arguments") or "{}"
    try:
        arguments: Any = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        arguments = raw  # the model's own malformed text, shown back to it as it was
    return "<tool_call>\n" + json.dumps({"name": function.get("name", ""), "arguments": arguments}) + \
        "\n</tool_call>"


@dataclass(frozen=True)
class TemplateAbilities:
    """What a chat template's source says it can render."""

    takes_tools: bool
    renders_tool_calls: bool
    has_tool_role: bool
    has_system_role: bool
    stop: tuple[str, ...]  # the end-of-turn markers it writes

    @classmethod
    def of(cls, template: str) -> TemplateAbilities:
        return cls(takes_tools=re.search(r"\btools\b", template) is not None,
                   renders_tool_calls="tool_calls" in template,
                   has_tool_role=re.search(r"""['"]tool['"]""", template) is not None,
                   has_system_role="system" in template,
                   stop=tuple(marker for marker in _END_OF_TURN if marker in template))


def plain_messages(messages: tuple[dict[str, Any], ...] | list[dict[str, Any]], tools: tuple[dict[str, Any], ...],
                   abilities: TemplateAbilities) -> list[dict[str, Any]]:
    """The history in a form the template accepts (see the module's docstring)."""
    out: list[dict[str, Any]] = []
    for message in messages:
        role, content = message["role"], message.get("content") or ""
        if role == "assistant" and message.get("tool_calls") and not abilities.renders_tool_calls:
            calls = "\n".join(_call_text(c) for c in message["tool_calls"])
            content = f"{content}\n{calls}" if content else calls
        elif role == "tool" and not abilities.has_tool_role:
            role, content = "user", f"<tool_response>\n{content}\n</tool_response>"
        if out and out[-1]["role"] == role and role != "system" and "tool_calls" not in out[-1]:
            out[-1] = {**out[-1], "content": out[-1]["content"] + "\n\n" + content}
            continue
        plain = {"role": role, "content": content}
        if abilities.renders_tool_calls and message.get("tool_calls"):
            plain["tool_calls"] = message["tool_calls"]
        out.append(plain)
    if tools and not abilities.takes_tools:
        listing = "\n".join(json.dumps(t.get("function", t)) for t in tools)
        instructions = TOOL_INSTRUCTIONS.format(tools=listing)
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": out[0]["content"] + "\n\n" + instructions}
        else:
            out.insert(0, {"role": "system", "content": instructions})
    if out and out[0]["role"] == "system" and not abilities.has_system_role:
        # Templates without a system role (Mistral's raises on one): it opens the first user turn.
        system = out.pop(0)["content"]
        if out and out[0]["role"] == "user":
            out[0] = {**out[0], "content": system + "\n\n" + out[0]["content"]}
        else:
            out.insert(0, {"role": "user", "content": system})
    return out


def offered_tools(tools: tuple[dict[str, Any], ...], choice: str) -> tuple[dict[str, Any], ...]:
    return () if choice == "none" else tools


def tool_names(tools: tuple[dict[str, Any], ...]) -> list[str]:
    return [t.get("function", t).get("name", "") for t in tools]


def forced_call_schema(tools: tuple[dict[str, Any], ...], choice: str) -> dict[str, Any] | None:
    """The JSON schema of one call `{"name": ..., "arguments": {...}}` for tool_choice "required"
    (any offered tool) or a tool's name; None for "auto"/"none"."""
    if choice in ("auto", "none"):
        return None
    functions = [t.get("function", t) for t in tools]
    if choice != "required":
        functions = [f for f in functions if f.get("name") == choice]
        if not functions:
            raise BackendError(f"tool_choice names {choice!r}, which is not among the offered tools")

    def one(function: dict[str, Any]) -> dict[str, Any]:
        # No extra keys: a small model would otherwise ramble on adding properties.
        parameters = {"type": "object", "properties": {}, **function.get("parameters", {}),
                      "additionalProperties": False}
        return {"type": "object", "properties": {"name": {"const": function["name"]}, "arguments": parameters},
                "required": ["name", "arguments"], "additionalProperties": False}

    variants = [one(f) for f in functions]
    return variants[0] if len(variants) == 1 else {"anyOf": variants}


# JSON the grammar lets through between tokens: llama.cpp's schema grammar allows at most a
# newline and 20 spaces or tabs; counted generously per value.
_SPACE = 24


def json_char_bound(schema: dict[str, Any]) -> int | None:
    """The most characters of JSON that `schema`'s grammar admits, or None where it admits any
    length (a string without maxLength, a number, an array without maxItems). A string's character
    may be an escape, up to six characters (\\uXXXX)."""
    if "const" in schema:
        return len(json.dumps(schema["const"])) + _SPACE
    if "enum" in schema:
        return max(len(json.dumps(v)) for v in schema["enum"]) + _SPACE
    for key in ("anyOf", "oneOf"):
        if key in schema:
            bounds = [json_char_bound(s) for s in schema[key]]
            return None if any(b is None for b in bounds) else max(b for b in bounds if b is not None)
    kind = schema.get("type")
    if kind == "string" and isinstance(schema.get("maxLength"), int):
        return 2 + 6 * schema["maxLength"] + _SPACE
    if kind == "boolean" or kind == "null":
        return 5 + _SPACE
    if kind == "object":
        total = 2 + _SPACE
        for name, value in (schema.get("properties") or {}).items():
            bound = json_char_bound(value)
            if bound is None:
                return None
            total += len(json.dumps(name)) + 2 + bound + _SPACE
        # Properties beyond those listed are unbounded, unless the schema closes the object.
        return total if schema.get("additionalProperties") is False else None
    if kind == "array" and isinstance(schema.get("maxItems"), int):
        item = json_char_bound(schema.get("items") or {})
        return None if item is None else 2 + schema["maxItems"] * (item + 1) + _SPACE
    return None


def forced_call_budget(schema: dict[str, Any] | None, asked: int, room: int) -> int:
    """Tokens a forced call may take: enough for the longest call its schema admits (a token is
    at least one character), so a call the grammar holds is never cut short by the budget; at
    least `asked`, at most `room` (what the context has left)."""
    bound = json_char_bound(schema) if schema is not None else None
    if bound is None:
        return min(asked, room) if room > 0 else asked
    return max(1, min(max(asked, bound), room)) if room > 0 else max(asked, bound)
