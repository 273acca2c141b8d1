"""MMLU: four-way multiple-choice questions over 57 subjects (Hendrycks et al. 2021).

Each question is a case per selected model. Scoring by the loglikelihood of the answer letters
where the backend allows it (one forward pass per question), else by generation and letter
extraction. Data: --mmlu-data (default: the project's sample in fixtures/mmlu). The suite's options,
loader and tags are declared once, in harness/suites/mmlu.py (SUITE). With --small-model,
--large-model and --route-thresholds, the live threshold router runs too (threshold:T).
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.backends.base import LoglikelihoodRequest
from harness.core.confidence import CHOICE_MARGIN, choice_margin
from harness.models.call import ModelCall
from harness.run.plugin import Case, parametrize_cases, start
from harness.run.session import RunSession
from harness.strategies import batched, single
from harness.suites import mmlu
from harness.suites.base import Item


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # With --small-model/--large-model and --route-thresholds: the live threshold router, threshold:T.
    thresholds = start(metafunc.config).settings.route_thresholds or ()
    parametrize_cases(metafunc, mmlu.SUITE, pair_strategies=[f"threshold:{t:g}" for t in thresholds])


def _question(harness: RunSession, o: mmlu.Options, item: Item, call: ModelCall) -> list[LoglikelihoodRequest]:
    """The item's four scored continuations for the model behind `call`. A chat model is scored on
    its own template's prompt, the reply starting with the letter; a base model on the plain prompt."""
    subject = item.input["subject"]
    shots = harness.memo(("mmlu-shots", subject, o.shots), lambda: mmlu.few_shot(o.source, subject, o.shots))
    prompt = mmlu.prompt(item, shots, style=call.spec.prompt_style)
    context = single.chat_context(call, prompt)
    if context is None:
        return [LoglikelihoodRequest(prompt, letter, " " + item.reference) for letter in mmlu.CONTINUATIONS]
    return [LoglikelihoodRequest(context, letter, item.reference) for letter in mmlu.LETTERS]


def _by_loglikelihood(o: mmlu.Options, call: ModelCall) -> bool:
    return o.mode == "loglikelihood" or (o.mode == "auto" and call.supports_loglikelihood)


def _chosen(values: list[float], requests: list[LoglikelihoodRequest]) -> tuple[str, dict[str, Any]]:
    """The most likely letter, and the record's details: every choice's log-likelihood and the
    margin between the best and the second choice's probability (the confidence)."""
    letter = mmlu.LETTERS[max(range(len(values)), key=values.__getitem__)]
    return letter, {"chat_template": requests[0].continuation in mmlu.LETTERS,
                    "loglikelihoods": dict(zip(mmlu.LETTERS, values)),
                    "confidence": choice_margin(values), "confidence_source": CHOICE_MARGIN}


def _generated(harness: RunSession, o: mmlu.Options, item: Item, call: ModelCall) -> tuple[str | None, dict[str, Any]]:
    subject = item.input["subject"]
    shots = harness.memo(("mmlu-shots", subject, o.shots), lambda: mmlu.few_shot(o.source, subject, o.shots))
    prompt = mmlu.prompt(item, shots, style=call.spec.prompt_style)
    output = single.complete(call, prompt, max_tokens=8, reference=item.reference)
    confidence = single.answer_confidence(call, prompt, output.text) if harness.settings.generation_confidence else {}
    return mmlu.extract_answer(output.text), {"output": output.text, **confidence}


def test_mmlu(case: Case, llm: ModelCall, record, harness: RunSession, options: mmlu.Options, upcoming,
              request) -> None:
    o = options
    item = case.item
    if case.large is not None:
        _threshold_route(case, llm, record, harness, o, request)
    elif _by_loglikelihood(o, llm):
        # Questions of this model are scored --score-batch at a time, each still its own case.
        scorer = batched.batcher(harness.memo, (case.suite, case.model.name), harness.settings.score_batch)
        requests = _question(harness, o, item, llm)
        values, batch = scorer.scores(llm, request.node.nodeid, requests,
                                      lambda c: _question(harness, o, c.item, llm), upcoming)
        letter, details = _chosen(values, requests)
        extra: dict[str, Any] = {"batch": batch} if batch else {}
        if o.show_answers:  # the controller prints it as the record arrives (controller.py)
            extra["shown"] = mmlu.shown(item, letter)
        record(letter, mmlu.score(item, letter), mode="loglikelihood", **details, **extra)
    else:
        answer, details = _generated(harness, o, item, llm)
        shown = {"shown": mmlu.shown(item, answer)} if o.show_answers else {}
        record(answer, mmlu.score(item, answer), mode="generate", **details, **shown)


def _threshold_route(case: Case, small: ModelCall, record, harness: RunSession, o: mmlu.Options, request) -> None:
    """threshold:T: the small model answers when its confidence (choice margin) >= T, else the large
    model answers as it does alone. The offline routing lab (`harness routes`) predicts this case
    for case from the two models' single records."""
    item = case.item
    threshold = float(case.strategy.partition(":")[2])
    if not small.supports_loglikelihood:
        record(None, mmlu.score(item, None), mode="threshold", status="error",
               error=f"threshold routing needs {small.name}'s log-likelihoods (its confidence)")
        return
    requests = _question(harness, o, item, small)
    letter, details = _chosen(small.loglikelihood(requests).values, requests)
    confidence = details["confidence"]
    if confidence is not None and confidence >= threshold:
        record(letter, mmlu.score(item, letter), mode="threshold", settled_by_small=True, **details)
        return
    large: ModelCall = request.getfixturevalue("large_llm")
    answer: str | None
    if _by_loglikelihood(o, large):
        large_requests = _question(harness, o, item, large)
        answer, large_details = _chosen(large.loglikelihood(large_requests).values, large_requests)
    else:
        answer, large_details = _generated(harness, o, item, large)
    large_details.pop("confidence", None)
    large_details.pop("confidence_source", None)
    record(answer, mmlu.score(item, answer), mode="threshold", settled_by_small=False,
           confidence=confidence, confidence_source=CHOICE_MARGIN, small_answer=letter, **large_details)
