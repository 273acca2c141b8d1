"""MMLU: four-way multiple-choice questions over 57 subjects (Hendrycks et al. 2021).

Each question is a case per selected model. Scoring by the loglikelihood of the answer letters
where the backend allows it (one forward pass per question), else by generation and letter
extraction. Data: --mmlu-data (default: the project's sample in fixtures/mmlu). The suite's options,
loader and tags are declared once, in harness/suites/mmlu.py (SUITE).
"""

from __future__ import annotations

import pytest

from harness.backends.base import LoglikelihoodRequest
from harness.plugin import Case, parametrize_cases
from harness.session import RunSession
from harness.strategies import batched, single
from harness.suites import mmlu


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_cases(metafunc, mmlu.SUITE)


def test_mmlu(case: Case, llm, record, harness: RunSession, options: mmlu.Options, upcoming, request) -> None:
    s = harness.settings
    o = options

    def question(c: Case) -> list[LoglikelihoodRequest]:
        """The case's four scored continuations. A chat model is scored on its own template's
        prompt, the reply starting with the letter; a base model on the plain prompt."""
        subject = c.item.input["subject"]
        shots = harness.memo(("mmlu-shots", subject, o.shots), lambda: mmlu.few_shot(o.source, subject, o.shots))
        prompt = mmlu.prompt(c.item, shots, style=c.model.prompt_style)
        context = single.chat_context(llm, prompt)
        if context is None:
            return [LoglikelihoodRequest(prompt, letter, " " + c.item.reference) for letter in mmlu.CONTINUATIONS]
        return [LoglikelihoodRequest(context, letter, c.item.reference) for letter in mmlu.LETTERS]

    item = case.item
    if o.mode == "loglikelihood" or (o.mode == "auto" and llm.supports_loglikelihood):
        # Questions of this model are scored --score-batch at a time, each still its own case.
        scorer = batched.batcher(harness.memo, (case.suite, case.model.name), s.score_batch)
        requests = question(case)
        values, batch = scorer.scores(llm, request.node.nodeid, requests, question, upcoming)
        letter = mmlu.LETTERS[max(range(len(values)), key=values.__getitem__)]
        extra = {"batch": batch} if batch else {}
        record(letter, mmlu.score(item, letter), mode="loglikelihood",
               chat_template=requests[0].continuation in mmlu.LETTERS,
               loglikelihoods=dict(zip(mmlu.LETTERS, values)), **extra)
    else:
        subject = item.input["subject"]
        shots = harness.memo(("mmlu-shots", subject, o.shots), lambda: mmlu.few_shot(o.source, subject, o.shots))
        prompt = mmlu.prompt(item, shots, style=case.model.prompt_style)
        output = single.complete(llm, prompt, max_tokens=8, reference=item.reference)
        letter = mmlu.extract_answer(output.text)
        record(letter, mmlu.score(item, letter), mode="generate", output=output.text)
