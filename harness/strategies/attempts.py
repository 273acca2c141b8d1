"""Tries of a code answer: a model asked once (greedy or sampled), its program run in the sandbox.

The primitives the code strategies share: `attempt` (ask, run, report), `sample` (n tries for
pass@k), `variants` (how tries differ) and `totals` (per model). code.py picks a strategy;
cascade.py strings attempts of two models together.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from harness.models.call import ModelCall
from harness.sandbox import Result, Sandbox, SandboxError
from harness.strategies import single
from harness.suites.code import CodeTask


@dataclass(frozen=True)
class Variant:
    """How one try differs from another: sampling temperature and seed."""

    name: str
    temperature: float = 0.0
    seed: int | None = None


GREEDY = Variant("greedy")


def variants(n: int, temperature: float = 0.8) -> list[Variant]:
    """Greedy first, then sampled tries with distinct seeds (reproducible where the backend
    honours seeds)."""
    return [GREEDY, *(Variant(f"t{temperature:g}-seed{i}", temperature, i) for i in range(1, n))][:n]


@dataclass
class Attempt:
    """One try: who answered, how, and what the sandbox said."""

    model: str
    variant: str
    passed: bool
    outcome: str  # the sandbox's: pass, fail, timeout, crash, sandbox_error
    detail: str
    code: str  # the program's answer part as the model wrote it
    prompt_tokens: int
    completion_tokens: int
    model_s: float
    sandbox_s: float
    sandbox_cpu_s: float

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("code")  # the prediction carries the final code; attempts stay small
        return data


def attempt(model: ModelCall, task: CodeTask, sandbox: Sandbox, variant: Variant = GREEDY) -> Attempt:
    """Ask once, run the program, report. Model and sandbox errors propagate: the case is an
    error, not a wrong answer."""
    generation = single.complete(model, task.prompt, max_tokens=task.max_tokens, stop=task.stops,
                                 temperature=variant.temperature, reference=task.reference, seed=variant.seed)
    result: Result = sandbox.run(task.program(generation.text))
    if result.outcome == "sandbox_error":  # the harness's failure, not the model's
        raise SandboxError(f"item {task.item_id}: the sandbox failed: {result.detail}")
    return Attempt(model=model.name, variant=variant.name, passed=result.passed, outcome=result.outcome,
                   detail=result.detail, code=generation.text,
                   prompt_tokens=generation.usage.prompt_tokens,
                   completion_tokens=generation.usage.completion_tokens,
                   model_s=generation.timings.total_s, sandbox_s=result.wall_s, sandbox_cpu_s=result.cpu_s)


def sample(model: ModelCall, task: CodeTask, sandbox: Sandbox, n: int, temperature: float = 0.8) -> list[Attempt]:
    """n independent samples for pass@k: greedy when n is 1, else all at `temperature`
    (pass@k needs samples from one distribution, so the greedy one is not mixed in)."""
    if n <= 1:
        return [attempt(model, task, sandbox)]
    return [attempt(model, task, sandbox, Variant(f"t{temperature:g}-seed{i}", temperature, i)) for i in range(n)]


def totals(attempts: list[Attempt]) -> dict[str, dict[str, float]]:
    """Per model: tries, tokens, model and sandbox seconds."""
    out: dict[str, dict[str, float]] = {}
    for a in attempts:
        t = out.setdefault(a.model, {"attempts": 0, "prompt_tokens": 0, "completion_tokens": 0,
                                     "model_s": 0.0, "sandbox_s": 0.0, "sandbox_cpu_s": 0.0})
        t["attempts"] += 1
        t["prompt_tokens"] += a.prompt_tokens
        t["completion_tokens"] += a.completion_tokens
        t["model_s"] += a.model_s
        t["sandbox_s"] += a.sandbox_s
        t["sandbox_cpu_s"] += a.sandbox_cpu_s
    return out
