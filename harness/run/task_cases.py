"""Task files as pytest cases: the test every task file runs (README: "Task files").

A benchmark module runs task files by importing these two names; benchmarks/test_tasks.py is that
module for this project, and a project of your own needs the same one line:

    from harness.run.task_cases import pytest_generate_tests, test_task  # noqa: F401

Then `pytest --task path/to/task.toml` (a file, a folder of them, or several comma-separated): each
file is a registered suite (harness/suites/task.py) whose items are cases per model, with the file's
prompt, mode (log-likelihood over choices, or generation), answer extraction and scorer. Without
--task the module collects one skipped case.
"""

from __future__ import annotations

import pytest

from harness.models.call import ModelCall
from harness.run.plugin import Case, case_params, start
from harness.run.session import RunSession
from harness.strategies import single
from harness.suites.task import Answer, TaskSuite
from harness.suites.unit import registered


def _tasks(config: pytest.Config) -> dict[str, TaskSuite]:
    return {name: s for name, s in registered(config.pluginmanager).items() if isinstance(s, TaskSuite)}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    tasks = _tasks(metafunc.config) if start(metafunc.config).settings.task else {}
    if not tasks:
        metafunc.parametrize("case", [pytest.param(None, marks=pytest.mark.skip(reason="no --task given"))])
        return
    metafunc.parametrize("case", [p for suite in tasks.values() for p in case_params(metafunc.config, suite)])


def test_task(case: Case, llm: ModelCall, record, harness: RunSession, request: pytest.FixtureRequest) -> None:
    task = _tasks(request.config)[case.suite].task
    assert task is not None
    item, spec = case.item, task.spec
    shots = harness.memo(("task-shots", str(spec.path)), task.shot_items)
    prompt = task.prompt(item, shots, style=case.model.prompt_style)
    if spec.mode == "loglikelihood":
        # A chat model is scored on its own template's prompt, the reply starting with the label.
        context = single.chat_context(llm, prompt)
        continuations = spec.choices if context is None else spec.labels
        reference = task.continuation_of(item) if context is None else item.reference
        index, values = single.choose_scored(llm, context or prompt, continuations, reference)
        prediction = spec.labels[index]
        record(prediction, task.score(item, Answer(prediction)), mode="loglikelihood",
               loglikelihoods=dict(zip(spec.labels, values)))
        return
    stop = spec.stop if case.model.prompt_style == "base" else ()
    output = single.complete(llm, prompt, max_tokens=spec.max_tokens, stop=stop, reference=item.reference)
    answer = task.answer(output.text)
    if answer.problem is not None:  # JSON that does not validate: the model's failure, scored as wrong
        record(None, task.score(item, answer), mode="generate", status="invalid_output",
               invalid_reason=answer.problem, output=output.text)
        return
    record(answer.prediction, task.score(item, answer), mode="generate", output=output.text)
