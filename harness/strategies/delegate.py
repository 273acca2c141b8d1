"""The delegation router: a large model that hands sub-tasks to a small one by tool call.

The large model sees the question and one tool, `ask_small_model`, which runs the small model on
whatever text the large model passes (the whole question or a sub-task) and returns its answer.
The large model decides itself when to delegate (or, with tool_choice "required", must call the
tool on its first turn); the loop is bounded by `max_turns`. Its instructions come from the
suite (e.g. gsm8k.router_instructions()), so one router serves every suite. Each model is a
ModelCall of its own, so tokens, time and cost are kept per model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.models.call import ModelCall
from harness.strategies import single
from harness.strategies.calculator import TOOL_NAME as CALCULATOR
from harness.strategies.calculator import calculator_tool
from harness.strategies.tool_loop import LoopResult, Tool, ToolChoice, ToolError, run_tool_loop

TOOL_NAME = "ask_small_model"
# The longest task the large model may hand over: the question's length and some room for an
# instruction, at most TASK_CHARS. A constrained small model that loops ("1. 2. 3. ...") is cut
# there, and its call still closes.
TASK_CHARS = 1000
TASK_ROOM = 120
# When a suite gives no instructions of its own.
SYSTEM = ("You may call the tool ask_small_model to hand a sub-task or the whole task to a small, cheap "
          "model; its answer can be wrong, so check it.")


@dataclass
class RouterResult:
    text: str  # the large model's final answer text
    loop: LoopResult
    small_answers: list[str] = field(default_factory=list)
    tool_choice: ToolChoice = "auto"  # what the first turn asked of the large model

    @property
    def tool_calls(self) -> int:
        return len(self.loop.calls)

    @property
    def malformed(self) -> list[str]:
        """Why each failed tool call failed (malformed arguments, unknown tool)."""
        return [c.result for c in self.loop.errors]

    def to_extra(self) -> dict[str, Any]:
        """What a case records: every tool call, the turns and stop reason (typed fields of the
        record), the small model's answers and the tool choice the router asked for."""
        return {"tool_calls": [c.to_dict() for c in self.loop.calls], "turns": self.loop.turns,
                "stopped": self.loop.stopped, "small_answers": self.small_answers, "tool_choice": self.tool_choice}


def route(large: ModelCall, small: ModelCall, question: str, *,
          small_prompt: Callable[[str], str], max_turns: int = 4, max_tokens: int = 256,
          small_max_tokens: int = 256, small_stop: tuple[str, ...] = (),
          reference: str | None = None, system: str = SYSTEM,
          tool_choice: ToolChoice = "auto", calculator: bool = False) -> RouterResult:
    """Let `large` answer `question`, delegating to `small` as it sees fit.

    `small_prompt` turns the delegated text into the small model's prompt (few-shot for a base
    model, an instruction for a chat model): the suite knows how its small model is best asked.
    `calculator` offers a second tool, `calculate(expression)` (strategies/calculator.py).
    """
    answers: list[str] = []

    def ask_small_model(arguments: dict[str, Any]) -> str:
        task = arguments.get("task")
        if not isinstance(task, str) or not task.strip():
            raise ToolError("'task' must be a non-empty string")
        output = single.complete(small, small_prompt(task), max_tokens=small_max_tokens, stop=small_stop,
                                 reference=reference)
        answers.append(output.text)
        return output.text.strip() or "(the small model gave no answer)"

    # maxLength bounds the argument: a grammar-constrained call (llama.cpp) then always closes,
    # and the backend gives it the tokens that takes.
    longest = min(TASK_CHARS, len(question) + TASK_ROOM)
    tool = Tool(TOOL_NAME, "Ask a small, cheap model to solve a question or a sub-task; returns its answer.",
                {"type": "object", "properties": {"task": {"type": "string", "minLength": 1, "maxLength": longest,
                                                           "description": "the question or sub-task"}},
                 "required": ["task"]}, ask_small_model)
    tools = [tool]
    if calculator:  # a second tool: arithmetic the large model need not do itself
        tools.append(calculator_tool())
        system += f"\n\nYou may also call the tool {CALCULATOR} with an arithmetic expression; it returns its value."
    messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
    # "required" means ask_small_model on the first turn: with a second tool, say which by name.
    first = TOOL_NAME if tool_choice == "required" and calculator else tool_choice
    loop = run_tool_loop(large, messages, tools, max_turns=max_turns, max_tokens=max_tokens,
                         reference=reference, first_tool_choice=first)
    return RouterResult(loop.text, loop, answers, tool_choice)
