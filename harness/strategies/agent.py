"""A coding agent: the model edits a project through tools until the type checker is happy.

Tools (OpenAI function schemas, run by harness/strategies/tool_loop.py): read_file, write_file,
run_type_check and finish, over a `Project` (in the Vue suite, a throwaway copy of the target
project whose paths are confined to it). The loop stops at finish, at a plain answer, or after
`max_iterations` model turns. What the run says about the model's way of working is measured:
the tools it used, in order; the turn of its first passing check after a write; whether it read
a failing check and then fixed the code (self_corrected); and an efficiency that penalizes turns
beyond the task's ideal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.models.call import ModelCall
from harness.strategies.tool_loop import LoopResult, Tool, ToolError, run_tool_loop

SYSTEM = ("You are a coding agent working in a Vue 3 + TypeScript project built with Vite. Use the tools "
          "to read files, write files and run the type checker (vue-tsc). Paths are relative to the "
          "project root. When the type check passes, call finish.")


class CheckResult(Protocol):
    passed: bool

    def report(self) -> str: ...


class Project(Protocol):
    """What the agent works on. Refusals and failures raise ValueError or OSError."""

    def read(self, path: str) -> str: ...

    def write(self, path: str, text: str) -> int: ...

    def type_check(self) -> CheckResult: ...


@dataclass
class AgentRun:
    loop: LoopResult
    checks: list[bool] = field(default_factory=list)  # each run_type_check's verdict, in order

    @property
    def tools_used(self) -> list[str]:
        return [c.name for c in self.loop.calls]

    @property
    def tool_calls_count(self) -> int:
        return len(self.loop.calls)

    @property
    def iterations(self) -> int:
        return self.loop.turns

    def _events(self) -> list[tuple[int, str, bool | None]]:
        """(turn, tool, verdict) for the calls that ran: writes, and checks with their verdict."""
        verdicts = iter(self.checks)
        events: list[tuple[int, str, bool | None]] = []
        for call in self.loop.calls:
            if call.ok and call.name == "run_type_check":
                events.append((call.turn, call.name, next(verdicts)))
            elif call.ok and call.name == "write_file":
                events.append((call.turn, call.name, None))
        return events

    @property
    def iterations_to_success(self) -> int | None:
        """The turn of the first passing type check after a write; None if there was none."""
        written = False
        for turn, tool, verdict in self._events():
            written = written or tool == "write_file"
            if written and verdict:
                return turn
        return None

    @property
    def self_corrected(self) -> bool:
        """A failing check, then a write, then a passing check: the model read the errors and fixed them."""
        state = "start"
        for _, tool, verdict in self._events():
            if tool == "run_type_check" and verdict is False:
                state = "failed"
            elif tool == "write_file" and state == "failed":
                state = "rewritten"
            elif tool == "run_type_check" and verdict and state == "rewritten":
                return True
        return False

    def metrics(self) -> dict[str, Any]:
        return {"tool_calls_count": self.tool_calls_count, "iterations": self.iterations,
                "iterations_to_success": self.iterations_to_success, "tools_used": self.tools_used,
                "self_corrected": self.self_corrected, "stopped": self.loop.stopped,
                "tool_errors": [c.result for c in self.loop.errors][:10]}


def efficiency(score_fraction: float, iterations: int, ideal: int) -> float:
    """The answer's quality (0-1), scaled down by the share of turns beyond the ideal."""
    if iterations <= 0:
        return 0.0
    return round(score_fraction * min(1.0, ideal / iterations), 4)


def _tools(project: Project, checks: list[bool]) -> list[Tool]:
    def read_file(arguments: dict[str, Any]) -> str:
        try:
            return project.read(arguments["path"])
        except (ValueError, OSError) as exc:
            raise ToolError(str(exc)) from None

    def write_file(arguments: dict[str, Any]) -> str:
        try:
            written = project.write(arguments["path"], arguments["content"])
        except (ValueError, OSError) as exc:
            raise ToolError(str(exc)) from None
        return f"wrote {written} characters to {arguments['path']}"

    def run_type_check(arguments: dict[str, Any]) -> str:
        result = project.type_check()
        checks.append(result.passed)
        return result.report()

    def path_schema(extra: dict[str, Any] | None = None) -> dict[str, Any]:
        path = {"type": "string", "description": "relative to the project root"}
        properties = {"path": path, **(extra or {})}
        return {"type": "object", "properties": properties, "required": list(properties)}

    return [
        Tool("read_file", "Read a file of the project (a folder lists its entries).", path_schema(),
             read_file),
        Tool("write_file", "Write a file of the project, replacing its content (only under src/).",
             path_schema({"content": {"type": "string", "description": "the whole new content"}}),
             write_file),
        Tool("run_type_check", "Type-check the whole project with vue-tsc; returns the errors, if any.",
             {"type": "object", "properties": {}}, run_type_check),
        Tool("finish", "End the task once the type check passes.",
             {"type": "object", "properties": {"summary": {"type": "string"}}}, lambda arguments: "finished"),
    ]


def run_agent(model: ModelCall, task: str, project: Project, *, max_iterations: int = 10,
              max_tokens: int = 1024, temperature: float = 0.0, system: str = SYSTEM,
              reference: str | None = None) -> AgentRun:
    """Let the model work on `project` with the tools until it finishes or runs out of turns.

    A model that cannot call tools answers in plain text on its first turn: that is its measured
    outcome (no tool calls, the project as it was), not an error.
    """
    checks: list[bool] = []
    messages: Sequence[dict[str, Any]] = ({"role": "system", "content": system},
                                          {"role": "user", "content": task})
    loop = run_tool_loop(model, messages, _tools(project, checks), max_turns=max_iterations,
                         finish_tool="finish", max_tokens=max_tokens, temperature=temperature,
                         reference=reference)
    return AgentRun(loop, checks)
