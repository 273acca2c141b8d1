"""MBPP: short Python tasks, each answer run against the task's asserts in the sandbox.

Each task is a case per selected model; with --small-model and --large-model the cascade runs
too (the small model tries --cascade-variants times, then the large one answers), and the
delegation router (the large model may hand the task or a part to the small one through the tool
`ask_small_model`), beside both models alone on the same tasks. --code-samples N gives pass@k over N samples per task.
Data: --mbpp-data (default: the project's sample in fixtures/mbpp), --mbpp-split.
"""

from __future__ import annotations

import pytest

from harness.run.plugin import Case, parametrize_cases
from harness.run.session import RunSession
from harness.sandbox import Limits, Sandbox
from harness.store import read_tasks
from harness.strategies import code, delegate
from harness.suites import mbpp


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_cases(metafunc, mbpp.SUITE, pair_strategies=("cascade", "delegate"))


def _shots(run: RunSession, o: mbpp.Options) -> list:
    # The data's own prompt split when it has one (the authors' files do), else the sample's.
    def load() -> list:
        try:
            if mbpp.is_store(o.source):  # the prompt split, where it was imported into the store too
                return mbpp.pick_shots(mbpp.stored(read_tasks(o.source, "mbpp", "prompt")), o.shots, o.source)
            return mbpp.few_shot(o.source, o.shots)
        except (ValueError, OSError):
            return mbpp.few_shot(mbpp.SAMPLE, o.shots)

    return run.memo(("mbpp-shots", o.source, o.shots), load)


def test_mbpp(case: Case, llm, record, harness: RunSession, options: mbpp.Options,
              request: pytest.FixtureRequest) -> None:
    s = harness.settings
    sandbox = harness.memo(("sandbox", s.sandbox, s.code_timeout),
                           lambda: Sandbox(Limits(timeout_s=s.code_timeout), level=s.sandbox))
    shots = _shots(harness, options) if case.model.prompt_style == "base" else []
    if case.strategy == "delegate":
        _route(case, llm, record, harness, request.getfixturevalue("large_llm"), sandbox, shots)
        return
    task = mbpp.task(case.item, shots, style=case.model.prompt_style, max_tokens=s.code_max_tokens)
    result = code.answer(task, llm, sandbox, strategy=case.strategy, samples=s.code_samples,
                         large=lambda: request.getfixturevalue("large_llm"), cascade_variants=s.cascade_variants)
    record(result.prediction, result.score, mode=result.mode, **result.extra)


def _route(case: Case, small, record, harness: RunSession, large, sandbox: Sandbox, shots: list) -> None:
    """The router: the large model gets the task in its own prompt style and may delegate."""
    s = harness.settings
    task = mbpp.task(case.item, [], style=large.spec.prompt_style, max_tokens=s.code_max_tokens)
    small_style = case.model.prompt_style
    routed = delegate.route(large, small, task.prompt,
                            small_prompt=lambda text: mbpp.delegated_prompt(text, shots, small_style),
                            max_turns=s.router_max_turns, max_tokens=s.code_max_tokens,
                            small_max_tokens=s.code_max_tokens, small_stop=mbpp.STOPS,
                            reference=case.item.reference, system=mbpp.router_instructions(),
                            tool_choice=s.router_tool_choice)  # type: ignore[arg-type]
    result = code.routed_answer(task, routed, sandbox)
    if routed.malformed:
        record(result.prediction, result.score, mode=result.mode, status="error",
               error=f"tool call failed: {'; '.join(routed.malformed)}", **result.extra)
        return
    record(result.prediction, result.score, mode=result.mode, **result.extra)
