"""A model that calls tools, in a bounded loop: the shared core of the delegation router and
the coding agent.

Messages are OpenAI-style dicts; tools are given to the backend as OpenAI function schemas.
Every tool call is recorded (name, raw arguments, result or error). Malformed arguments or a
failing tool become a tool message that tells the model what went wrong, never a crash; the
caller decides whether such an error makes the case an error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from harness.backends.base import Request, ToolCall
from harness.core.record import ToolCallRecord  # a call as the case record keeps it
from harness.models.call import ModelCall

StopReason = Literal["answer", "finish_tool", "max_turns"]
ToolChoice = Literal["auto", "required"]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments object
    run: Callable[[dict[str, Any]], str]

    def schema(self) -> dict[str, Any]:
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


class ToolError(Exception):
    """Raised by a tool for a refused or failed call; its message goes back to the model."""


@dataclass
class LoopResult:
    text: str  # the model's final answer (or the finish tool's argument summary)
    turns: int
    stopped: StopReason
    calls: list[ToolCallRecord] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    finish_arguments: dict[str, Any] | None = None

    @property
    def errors(self) -> list[ToolCallRecord]:
        return [c for c in self.calls if not c.ok]


def _arguments(call: ToolCall) -> dict[str, Any]:
    """The call's parsed arguments; a call the backend could not parse is refused with its reason."""
    if call.error is not None or call.arguments is None:
        raise ToolError(call.error or "arguments are not a JSON object")
    return call.arguments


def _required(tool: Tool, arguments: dict[str, Any]) -> None:
    missing = [k for k in tool.parameters.get("required", []) if k not in arguments]
    if missing:
        raise ToolError(f"missing required argument(s): {', '.join(missing)}")


def run_tool_loop(model: ModelCall, messages: Sequence[dict[str, Any]], tools: Sequence[Tool], *,
                  max_turns: int = 8, finish_tool: str | None = None, max_tokens: int = 512,
                  temperature: float = 0.0, reference: str | None = None,
                  first_tool_choice: str = "auto") -> LoopResult:
    """Ask, run the tools the model calls, feed results back; stop on a plain answer, on the
    finish tool, or after max_turns model calls.

    `first_tool_choice="required"` (or a tool's name) asks the backend to force a tool call on the first turn
    (later turns are "auto"): the tool path gets measured with models that never volunteer one.
    """
    by_name: Mapping[str, Tool] = {t.name: t for t in tools}
    history = list(messages)
    calls: list[ToolCallRecord] = []
    schemas = tuple(t.schema() for t in tools)
    for turn in range(1, max_turns + 1):
        choice = first_tool_choice if turn == 1 else "auto"
        generation = model.generate(Request(messages=tuple(history), tools=schemas, tool_choice=choice,
                                            max_tokens=max_tokens, temperature=temperature,
                                            reference=reference))
        if not generation.tool_calls:
            history.append({"role": "assistant", "content": generation.text})
            return LoopResult(generation.text, turn, "answer", calls, history)
        ids = [c.id or f"call_{turn}_{i}" for i, c in enumerate(generation.tool_calls)]
        history.append({"role": "assistant", "content": generation.text or None,
                        "tool_calls": [{"id": id_, "type": "function",
                                        "function": {"name": c.name, "arguments": c.raw_arguments}}
                                       for id_, c in zip(ids, generation.tool_calls)]})
        for id_, call in zip(ids, generation.tool_calls):
            arguments: dict[str, Any] = {}
            try:
                arguments = _arguments(call)  # a call whose name could not be read fails here
                tool = by_name.get(call.name)
                if tool is None:
                    raise ToolError(f"unknown tool {call.name!r}; tools: {', '.join(by_name)}")
                _required(tool, arguments)
                result, ok = tool.run(arguments), True
            except ToolError as exc:
                result, ok = f"error: {exc}", False
            calls.append(ToolCallRecord(turn, call.name, call.raw_arguments, ok, result))
            model.note_tool_result(id_, call.name, result, ok)
            history.append({"role": "tool", "tool_call_id": id_, "content": result})
            if ok and call.name == finish_tool:
                return LoopResult(generation.text, turn, "finish_tool", calls, history, arguments)
    return LoopResult("", max_turns, "max_turns", calls, history)
