"""MMLU: four-way multiple-choice questions over 57 subjects (Hendrycks et al. 2021).

Each question is a case per selected model. Scoring by the loglikelihood of the answer letters
where the backend allows it (one forward pass per question), else by generation and letter
extraction. Data: --mmlu-data (default: the project's sample in fixtures/mmlu).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.backends.base import LoglikelihoodRequest
from harness.plugin import Case, parametrize_cases
from harness.session import RunSession
from harness.strategies import batched, single
from harness.suites import mmlu

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "mmlu"


def _source(run: RunSession) -> str:
    return run.settings.mmlu_data or str(SAMPLE)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    from harness.plugin import SESSION

    run = metafunc.config.stash[SESSION]
    s = run.settings
    items = mmlu.load(_source(run), split=s.mmlu_split, subjects=s.mmlu_subjects,
                      per_subject=s.mmlu_per_subject, samples=s.samples, seed=s.seed)
    parametrize_cases(metafunc, "mmlu", items)


def test_mmlu(case: Case, llm, record, harness: RunSession, upcoming, request) -> None:
    s = harness.settings

    def question(c: Case) -> list[LoglikelihoodRequest]:
        subject = c.item.input["subject"]
        shots = harness.memo(("mmlu-shots", subject, s.mmlu_shots),
                             lambda: mmlu.few_shot(_source(harness), subject, s.mmlu_shots))
        prompt = mmlu.prompt(c.item, shots, style=c.model.prompt_style)
        return [LoglikelihoodRequest(prompt, letter, " " + c.item.reference) for letter in mmlu.CONTINUATIONS]

    item = case.item
    if s.mmlu_mode == "loglikelihood" or (s.mmlu_mode == "auto" and llm.supports_loglikelihood):
        # Questions of this model are scored --score-batch at a time, each still its own case.
        scorer = batched.batcher(harness.memo, (case.suite, case.model.name), s.score_batch)
        index, batch = batched.choose(llm, scorer, request.node.nodeid, case, question, upcoming)
        letter = mmlu.LETTERS[index]
        extra = {"batch": batch} if batch else {}
        record(letter, mmlu.score(item, letter), mode="loglikelihood", **extra)
    else:
        prompt = question(case)[0].context
        output = single.complete(llm, prompt, max_tokens=8, reference=item.reference)
        letter = mmlu.extract_answer(output.text)
        record(letter, mmlu.score(item, letter), mode="generate", output=output.text)
