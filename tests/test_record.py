"""The case record: built in one place, typed parts, the JSON round trip and reading older records."""

from __future__ import annotations

import json

import pytest

from harness.core.record import (
    SCHEMA_VERSION,
    CaseInfo,
    CaseRecord,
    ModelUsage,
    Outcome,
    ToolCallRecord,
    Try,
    build_record,
)

INFO = CaseInfo("run-1", "benchmarks/test_gsm8k.py::test_gsm8k[delegate-s-l-7]", "gsm8k", "7", "s+l",
                "llamacpp+openai", "delegate", "42")


def usage(calls: int, prompt: int, completion: int, seconds: float, cost: float = 0.0, **more) -> ModelUsage:
    return ModelUsage(calls=calls, prompt_tokens=prompt, completion_tokens=completion, source="tokenizer",
                      model_s=seconds, cost=cost, **more)


def test_outcome_with_typed_fields_and_two_models() -> None:
    calls = [{"turn": 1, "name": "ask_small_model", "arguments": '{"task": "6*7"}', "ok": True, "result": "42"}]
    outcome = Outcome("42", {"exact": 1.0}, True, "router", None, None,
                      {"tool_calls": calls, "turns": 2, "stopped": "answer", "output": "The answer is 42."},
                      {"small_answers": ["42"]})
    models = {"l": usage(2, 300, 40, 1.5, 0.01, first_token_s=0.2), "s": usage(1, 50, 5, 0.25)}
    rec = build_record(INFO, outcome, models=models, wall_s=2.0, resources={"cpu_s": 1.2})
    assert (rec.status, rec.correct, rec.prediction, rec.mode) == ("ok", True, "42", "router")
    assert rec.tool_calls == [ToolCallRecord(1, "ask_small_model", '{"task": "6*7"}', True, "42")]
    assert (rec.turns, rec.stopped, rec.output) == (2, "answer", "The answer is 42.")
    assert rec.extra == {"small_answers": ["42"]}  # only what is not a typed field
    # The case's totals are the sums of its models'; each model's share is kept.
    assert (rec.usage.prompt_tokens, rec.usage.completion_tokens, rec.usage.source) == (350, 45, "tokenizer")
    assert rec.timings.model_s == pytest.approx(1.75) and rec.timings.wall_s == 2.0
    assert rec.timings.first_token_s == 0.2 and rec.attempts == 3 and rec.cost == pytest.approx(0.01)
    assert list(rec.per_model) == ["l", "s"] and rec.per_model["s"].prompt_tokens == 50
    assert rec.resources == {"cpu_s": 1.2} and rec.run_id == "run-1"


def test_errors_are_not_scores() -> None:
    outcome = Outcome("7", {"exact": 0.0}, False, "router", "error", "tool call failed: bad JSON")
    rec = build_record(INFO, outcome, models={}, wall_s=0.5)
    assert (rec.status, rec.correct, rec.error) == ("error", None, "tool call failed: bad JSON")
    assert not rec.scored and rec.is_error and not rec.counts_correct
    assert rec.timings.model_s is None  # no model was called: no model time, not zero

    failed = build_record(INFO, None, models={}, wall_s=3.0, failure="no answer within 3 s", timeout=True)
    assert (failed.status, failed.error) == ("timeout", "no answer within 3 s")
    silent = build_record(INFO, None, models={}, wall_s=0.1)
    assert silent.status == "error" and "recorded no outcome" in str(silent.error)


@pytest.mark.parametrize(("status", "correct", "counts"), [
    ("ok", True, True), ("wrong", False, False), ("ok", None, True), ("wrong", None, False),
    ("invalid_output", True, False), ("error", None, False), ("timeout", None, False)])
def test_what_counts_correct(status: str, correct: bool | None, counts: bool) -> None:
    rec = CaseRecord("r", "c", "mmlu", "1", "m", "b", status=status, correct=correct)  # type: ignore[arg-type]
    assert rec.counts_correct is counts
    assert rec.scored is (status in ("ok", "wrong", "invalid_output"))


def test_json_round_trip_gives_the_same_typed_record() -> None:
    outcome = Outcome("def f(): ...", {"pass@1": 0.0}, False, "cascade", None, None,
                      {"tries": [{"model": "s", "variant": "greedy", "passed": False, "outcome": "fail"}],
                       "settled_by_small": False, "isolation": "bwrap"}, {"final_model": "l"})
    rec = build_record(INFO, outcome, models={"s": usage(1, 10, 5, 0.1)}, wall_s=0.3)
    assert rec.tries == [Try("s", "greedy", False, "fail")]
    back = CaseRecord.from_dict(json.loads(rec.to_json()))
    assert back == rec and back.schema == SCHEMA_VERSION
    assert isinstance(back.per_model["s"], ModelUsage) and isinstance(back.tries[0], Try)


def test_a_first_wave_record_reads_as_typed() -> None:
    old = {"run_id": "r", "case_id": "x", "suite": "gsm8k", "item_id": 3, "model": "s+l", "backend": "b",
           "strategy": "delegate", "status": "ok", "correct": True,
           "usage": {"prompt_tokens": 9, "completion_tokens": 2, "source": "server"}, "timings": {"wall_s": 1.0},
           "extra": {"tool_calls": 1, "turns": 2, "stopped": "answer", "small_answers": ["5"], "cache_hits": 1,
                     "calls": [{"turn": 1, "name": "ask_small_model", "arguments": "{}", "ok": True,
                                "result": "5"}],
                     "per_model": {"l": {"calls": 2, "prompt_tokens": 9}}, "output": "The answer is 5."}}
    rec = CaseRecord.from_dict(old)
    assert rec.item_id == "3" and rec.schema == SCHEMA_VERSION
    assert [c.name for c in rec.tool_calls] == ["ask_small_model"] and rec.turns == 2
    assert rec.per_model["l"].calls == 2 and rec.cache_hits == 1 and rec.output == "The answer is 5."
    assert rec.extra == {"small_answers": ["5"]}


def test_bad_records_name_the_problem() -> None:
    with pytest.raises(ValueError, match="newer than this harness reads"):
        CaseRecord.from_dict({"schema": SCHEMA_VERSION + 1, "suite": "s", "model": "m", "item_id": "1"})
    with pytest.raises(ValueError, match="lacks suite"):
        CaseRecord.from_dict({"schema": SCHEMA_VERSION, "model": "m", "item_id": "1", "case_id": "c"})
    with pytest.raises(ValueError, match="unknown status 'maybe'"):
        CaseRecord("r", "c", "s", "1", "m", "b", status="maybe")  # type: ignore[arg-type]


def test_values_that_are_not_finite_numbers_become_null() -> None:
    # The oracle gives the wrong letters -inf; results.jsonl and the stores take JSON only.
    rec = CaseRecord("r", "c", "mmlu", "1", "oracle", "oracle", scores={"x": float("nan")},
                     extra={"loglikelihoods": {"A": 0.0, "B": float("-inf")}})
    text = rec.to_json()
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text)["extra"]["loglikelihoods"] == {"A": 0.0, "B": None}
