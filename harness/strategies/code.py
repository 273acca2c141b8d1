"""Answering a code task: generate, assemble the program, run it in the sandbox.

`attempt` is one try (one model call, one sandboxed run); `sample` is n tries of one model for
pass@k. The cascade (cascade.py) strings attempts of two models together; `answer` is what a
benchmark module calls for one case, whichever of the two it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from harness.call import ModelCall
from harness.report import passk
from harness.sandbox import Result, Sandbox, SandboxError
from harness.strategies import single
from harness.suites.base import Score
from harness.suites.code import CodeTask

if TYPE_CHECKING:
    from harness.strategies.delegate import RouterResult


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


@dataclass
class CodeAnswer:
    """A code case's outcome, ready for the `record` fixture."""

    prediction: str
    score: Score
    mode: str
    extra: dict[str, Any]


def routed_answer(task: CodeTask, routed: RouterResult, sandbox: Sandbox) -> CodeAnswer:
    """A delegation-router case: the large model's final text, run against the task's tests."""
    result: Result = sandbox.run(task.program(routed.text))
    if result.outcome == "sandbox_error":
        raise SandboxError(f"item {task.item_id}: the sandbox failed: {result.detail}")
    return CodeAnswer(routed.text, Score(result.passed, {"pass@1": float(result.passed)}), "router",
                      {**routed.to_extra(), "output": routed.text, "outcome": result.outcome,
                       "detail": result.detail, "sandbox_s": result.wall_s, "sandbox_cpu_s": result.cpu_s,
                       "isolation": sandbox.isolation.describe()})


def answer(task: CodeTask, model: ModelCall, sandbox: Sandbox, *, strategy: str = "single",
           large: Callable[[], ModelCall] | None = None, samples: int = 1,
           cascade_variants: int = 2) -> CodeAnswer:
    """One case of a code suite: n samples of one model (pass@k), or the cascade.

    The verdict (`correct`) of a sampled case is its first sample's: an unbiased pass@1 per item,
    so the scoreboard's accuracy estimates pass@1; scores hold pass@k and pass^k over all n.
    """
    isolation = sandbox.isolation.describe()
    if strategy == "cascade":
        from harness.strategies import cascade  # a pair strategy: imported where used

        if large is None:
            raise ValueError("the cascade needs the large model")
        result = cascade.run(model, large, task, sandbox, variants(cascade_variants))
        final = result.final
        return CodeAnswer(final.code, Score(final.passed, {"pass@1": float(final.passed)}), "cascade",
                          {**result.to_extra(), "outcome": final.outcome, "detail": final.detail,
                           "isolation": isolation})
    if strategy != "single":
        raise ValueError(f"unknown code strategy {strategy!r}")
    tries = sample(model, task, sandbox, samples)
    passed = [t.passed for t in tries]
    first = tries[0]
    return CodeAnswer(first.code, Score(first.passed, passk.scores(passed)), "sample" if samples > 1 else "greedy",
                      {"outcome": first.outcome, "detail": first.detail, "samples": len(tries),
                       "passed": sum(passed), "outcomes": [t.outcome for t in tries],
                       "sandbox_s": sum(t.sandbox_s for t in tries),
                       "sandbox_cpu_s": sum(t.sandbox_cpu_s for t in tries), "isolation": isolation})
