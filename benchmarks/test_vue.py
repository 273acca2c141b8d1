"""Vue to TypeScript: a model types an untyped Vue 3 component; vue-tsc and the SFC's AST grade it.

Modes (--vue-mode single,agent): `single` asks once and the answer is the file; `agent` gives the
model read_file, write_file, run_type_check and finish in a loop of at most --vue-max-iterations
turns (ids `agent-<model>-<case>`). Each answer is graded in its own copy of the fixture project:
0-10 from compilation and weighted patterns (fixtures/vue/cases/*/spec.json). --vue-repeats N runs
each case N times; the record holds the mean, the spread and every run. Needs Node.js and
`npm ci --prefix fixtures/vue/project`.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.run.plugin import Case, parametrize_cases
from harness.strategies import agent, single
from harness.suites import vue
from harness.suites.base import Score
from harness.suites.vue_project import VueProject


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # --vue-mode, --vue-repeats and --vue-max-iterations are checked where they are declared
    # (harness/suites/vue.py Options): a bad value stops the run with exit code 4.
    modes = vue.SUITE.values(metafunc.config).mode
    parametrize_cases(metafunc, vue.SUITE, strategies=[m for m in vue.MODES if m in modes])


@pytest.fixture(scope="session")
def vue_project(pytestconfig: pytest.Config) -> VueProject:
    project = VueProject(keep_failed=vue.SUITE.values(pytestconfig).keep_failed)
    project.check_installed()  # a clear setup error per case: "run npm ci --prefix fixtures/vue/project"
    return project


Answer = tuple[Score, dict[str, Any], str]  # the score, the record's details, the final component


def _single(case: Case, llm, s: vue.Options, project: VueProject, repeat: int) -> Answer:
    base = case.model.prompt_style == "base"
    # A base model continues inside the opened ```vue block; its closing fence ends the answer.
    output = single.complete(llm, vue.prompt(case.item, case.model.prompt_style), max_tokens=s.max_tokens,
                             stop=("```",) if base else (), temperature=s.temperature,
                             reference=case.item.reference)
    component = vue.extract_component(output.text)
    graded = vue.grade_component(case.item, component if component is not None else output.text, project)
    details = {**graded.details(), "component_found": component is not None, "output": output.text,
               "finish_reason": output.finish_reason, "repeat": repeat}
    return graded.score, details, component or output.text


def _agent(case: Case, llm, s: vue.Options, project: VueProject, repeat: int) -> Answer:
    item = case.item
    spec: vue.Spec = item.meta["spec"]
    with project.workspace() as workspace:
        run = agent.run_agent(llm, vue.agent_task(item), workspace, max_iterations=s.max_iterations,
                              max_tokens=s.max_tokens, temperature=s.temperature,
                              reference=item.reference)
        # A model that answers with the component in plain text instead of writing it (the oracle
        # does, and chat models without tool use) still has its answer graded as the file.
        wrote = any(c.name == "write_file" and c.ok for c in run.loop.calls)
        component = vue.extract_component(run.loop.text) if run.loop.stopped == "answer" else None
        if not wrote and component is not None:
            workspace.write(item.input["component"], component)
        graded = vue.grade(item, workspace, project)
        final = workspace.read(item.input["component"])
    score = graded.score
    fraction = score.scores["score"] / 10
    efficiency = agent.efficiency(fraction, run.iterations, spec.ideal_iterations)
    score = Score(score.correct, {**score.scores, "efficiency": efficiency})
    details = {**graded.details(), **run.metrics(), "efficiency": efficiency,
               "file_from_answer": not wrote and component is not None, "answer": run.loop.text,
               "tool_calls": [c.to_dict() for c in run.loop.calls][:40], "repeat": repeat,
               "expected_tools": list(spec.expected_tools),
               "followed_expected_tools": vue.follows(spec.expected_tools, run.tools_used)}
    return score, details, final


def test_vue(case: Case, llm, record, options: vue.Options, vue_project: VueProject) -> None:
    answer = _agent if case.strategy == "agent" else _single
    runs = [answer(case, llm, options, vue_project, repeat) for repeat in range(options.repeats)]
    score, extra = vue.combine([(s, d) for s, d, _ in runs], case.item.meta["spec"].pass_score)
    if len(runs) > 1 and case.strategy == "agent":  # the record's tool calls: every repeat's
        extra["tool_calls"] = [call for _, details, _ in runs for call in details["tool_calls"]]
    record(runs[-1][2], score, mode=case.strategy, **extra)
