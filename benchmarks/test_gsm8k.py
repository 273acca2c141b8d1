"""GSM8K: grade-school math word problems, the final number compared exactly.

Each problem is a case per selected model. With --small-model and --large-model the delegation
router runs too: the large model may hand sub-tasks to the small one through the tool
`ask_small_model`, beside both models alone on the same problems (--samples N --seed S pick them).
Data: --gsm8k-data (default: the project's sample in fixtures/gsm8k).
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.core.confidence import AGREEMENT, agreement
from harness.models.call import ModelCall
from harness.run.plugin import Case, parametrize_cases
from harness.run.session import RunSession
from harness.strategies import delegate, single
from harness.suites import gsm8k
from harness.suites.base import Item

SAMPLE_TEMPERATURE = 0.8  # the --gsm8k-samples-per-item draws beside the greedy answer


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_cases(metafunc, gsm8k.SUITE, pair_strategies=("delegate",))


def _prompt(run: RunSession, o: gsm8k.Options, model: ModelCall, question: Item) -> str:
    if model.spec.prompt_style != "base":
        return gsm8k.prompt(question, style="chat")
    shots = run.memo(("gsm8k-shots", o.source, o.shots), lambda: gsm8k.few_shot(o.source, o.shots))
    return gsm8k.prompt(question, shots, style="base")


def _solve(run: RunSession, o: gsm8k.Options, model: ModelCall, item: Item, temperature: float = 0.0,
           seed: int | None = None) -> str:
    output = single.complete(model, _prompt(run, o, model, item), max_tokens=o.max_tokens,
                             stop=gsm8k.STOP if model.spec.prompt_style == "base" else (),
                             reference=f"The answer is {item.reference}.", temperature=temperature, seed=seed)
    return output.text


def _confidence(run: RunSession, o: gsm8k.Options, model: ModelCall, item: Item, text: str,
                answer: str | None) -> dict[str, Any]:
    """The record's confidence: with --gsm8k-samples-per-item k > 1, the share of k answers (the
    greedy one and k - 1 samples at temperature 0.8) that agree with the greedy answer; else with
    --generation-confidence the answer's mean token log-probability (strategies/single.py)."""
    k = o.samples_per_item
    if k > 1:
        others = [gsm8k.extract_answer(_solve(run, o, model, item, SAMPLE_TEMPERATURE, seed=i)) for i in range(1, k)]
        return {"confidence": agreement([answer, *others], answer), "confidence_source": AGREEMENT,
                "sampled_answers": others}
    if run.settings.generation_confidence:
        return single.answer_confidence(model, _prompt(run, o, model, item), text)
    return {}


def test_gsm8k(case: Case, llm: ModelCall, record, harness: RunSession, options: gsm8k.Options,
               request: pytest.FixtureRequest) -> None:
    item = case.item
    if case.strategy == "single":
        text = _solve(harness, options, llm, item)
        answer = gsm8k.extract_answer(text)
        record(answer, gsm8k.score(item, answer), mode="generate", output=text,
               **_confidence(harness, options, llm, item, text, answer))
        return
    large: ModelCall = request.getfixturevalue("large_llm")

    def small_prompt(task: str) -> str:
        return _prompt(harness, options, llm, Item(id="delegated", input={"question": task}, reference=""))

    routed = delegate.route(large, llm, item.input["question"], small_prompt=small_prompt,
                            max_turns=harness.settings.router_max_turns,
                            max_tokens=options.max_tokens,
                            small_max_tokens=options.max_tokens,
                            small_stop=gsm8k.STOP if llm.spec.prompt_style == "base" else (),
                            reference=f"The answer is {item.reference}.",
                            system=gsm8k.router_instructions(),
                            tool_choice=harness.settings.router_tool_choice,  # type: ignore[arg-type]
                            calculator=harness.settings.router_calculator)
    answer = gsm8k.extract_answer(routed.text)
    extra = {**routed.to_extra(), "output": routed.text}
    if routed.malformed:
        # The strategy could not be carried out as the model asked: an error, with its reason.
        record(answer, gsm8k.score(item, answer), mode="router", status="error",
               error=f"tool call failed: {'; '.join(routed.malformed)}", **extra)
        return
    record(answer, gsm8k.score(item, answer), mode="router", **extra)
