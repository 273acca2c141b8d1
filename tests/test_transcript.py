"""Transcripts: built from the model calls of a case in the order they happen, bounded, carried by
the record through JSON, and shown in the terminal."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.backends.base import BackendError, Request
from harness.backends.scripted import ScriptedBackend
from harness.core.record import CaseRecord
from harness.core.transcript import Message, Transcript, TranscriptBuilder, bounded, clip
from harness.models.call import ModelCall
from harness.report.transcript_view import reason, terminal
from harness.strategies.delegate import route


def _models(builder: TranscriptBuilder, **steps: list[Any]) -> dict[str, ModelCall]:
    models = {}
    for name, script in steps.items():
        backend = ScriptedBackend.from_steps(script, name=name)
        models[name] = ModelCall(backend.spec, backend)
        models[name].transcript = builder
    return models


def test_router_transcript_tells_the_whole_story_in_order() -> None:
    builder = TranscriptBuilder()
    bad = {"tool_calls": [{"name": "ask_small_model", "arguments": "{task: 5"}]}
    good = {"tool_calls": [{"name": "ask_small_model", "arguments": {"task": "half of 10?"}}]}
    m = _models(builder, large=[bad, good, "The answer is 5."], small=["5"])
    result = route(m["large"], m["small"], "What is half of 10?", small_prompt=lambda t: f"Q: {t}\nA:",
                   system="Delegate.", tool_choice="required")
    assert result.text == "The answer is 5."
    transcript = builder.build(result.text)
    assert transcript is not None
    rows = [(x.role, x.model, x.content, [(c.name, c.arguments) for c in x.tool_calls], x.ok)
            for x in transcript.messages]
    assert rows == [
        ("system", "large", "Delegate.", [], None),
        ("user", "large", "What is half of 10?", [], None),
        ("assistant", "large", "", [("ask_small_model", "{task: 5")], None),
        ("tool", "large", "error: arguments are not valid JSON (Expecting property name enclosed in double "
                          "quotes at position 1)", [], False),
        ("assistant", "large", "", [("ask_small_model", '{"task": "half of 10?"}')], None),
        ("prompt", "small", "Q: half of 10?\nA:", [], None),  # the small model's prompt ...
        ("assistant", "small", "5", [], None),  # ... and its answer
        ("tool", "large", "5", [], True),  # what went back to the large model
        ("assistant", "large", "The answer is 5.", [], None),
    ]
    assert transcript.messages[2].tool_calls[0].error is not None  # the unreadable call says why
    assert transcript.final == "The answer is 5." and transcript.left_out == 0


def test_a_chat_history_is_shown_once_and_repeats_count() -> None:
    builder = TranscriptBuilder()
    m = _models(builder, chat=["hi", "yes", "bye"])
    history: list[dict[str, Any]] = [{"role": "user", "content": "yes"}]
    for _ in range(3):
        answer = m["chat"].generate(Request(messages=tuple(history))).text
        history += [{"role": "assistant", "content": answer}, {"role": "user", "content": "yes"}]
    transcript = builder.build()
    assert transcript is not None
    assert [(x.role, x.content) for x in transcript.messages] == [
        ("user", "yes"), ("assistant", "hi"), ("user", "yes"), ("assistant", "yes"), ("user", "yes"),
        ("assistant", "bye")]


def test_a_failed_call_leaves_a_note() -> None:
    builder = TranscriptBuilder()
    backend = ScriptedBackend.from_steps([], name="empty")
    model = ModelCall(backend.spec, backend)
    model.transcript = builder
    with pytest.raises(BackendError, match="script exhausted"):
        model.generate(Request(prompt="2+2="))
    transcript = builder.build()
    assert transcript is not None and [x.role for x in transcript.messages] == ["prompt", "note"]
    assert "empty" in transcript.messages[1].content


def test_bounds_keep_the_start_and_the_end() -> None:
    text, cut = clip("a" * 3000 + "b" * 3000 + "END", limit=400)
    assert cut == 6003 - 400 and text.startswith("a" * 300) and text.endswith("b" * 97 + "END")
    messages = [Message("system", "rules"), Message("user", "question")] + \
        [Message("assistant", f"turn {i} " + "x" * 100) for i in range(50)]
    kept, left_out = bounded(messages, chars=1000)
    assert kept[:2] == messages[:2] and kept[2].role == "note" and kept[-1] == messages[-1]
    assert left_out == 52 - (len(kept) - 1) and sum(len(x.content) for x in kept[3:]) <= 1000
    builder = TranscriptBuilder()
    builder.request("m", None, "p" * 100_000)
    built = builder.build()
    assert built is not None and built.messages[0].cut > 90_000 and len(built.messages[0].content) < 4100


def _routed_record(transcript: Transcript | None) -> CaseRecord:
    return CaseRecord(run_id="r", case_id="benchmarks/test_gsm8k.py::test_gsm8k[delegate-s-l-7]", suite="gsm8k",
                      item_id="7", model="s+l", backend="scripted", strategy="delegate", prediction="5",
                      reference="5", status="error", error="tool call failed: arguments are not valid JSON",
                      transcript=transcript)


def test_round_trip_through_json() -> None:
    builder = TranscriptBuilder()
    m = _models(builder, large=[{"tool_calls": [{"name": "ask_small_model", "arguments": {"task": "t"}}]}, "5"],
                small=["5"])
    route(m["large"], m["small"], "q", small_prompt=str)
    record = _routed_record(builder.build("5"))
    back = CaseRecord.from_dict(json.loads(record.to_json()))
    assert back == record and isinstance(back.transcript, Transcript)
    assert back.transcript.tool_calls[0].name == "ask_small_model"
    assert back.transcript.tool_calls[0].arguments == '{"task": "t"}'
    # a record written before transcripts reads back without one
    old = json.loads(record.to_json())
    del old["transcript"]
    assert CaseRecord.from_dict(old).transcript is None
    with pytest.raises(ValueError, match="role 'robot'"):
        Transcript.from_value({"messages": [{"role": "robot"}]})


def test_terminal_shows_reason_calls_and_answers() -> None:
    builder = TranscriptBuilder()
    m = _models(builder, large=[{"tool_calls": [{"name": "ask_small_model", "arguments": {"task": "t"}}]}, "5"],
                small=["five"])
    route(m["large"], m["small"], "q", small_prompt=lambda t: f"solve {t}")
    text = terminal(_routed_record(builder.build("5")))
    assert "reason   tool call failed: arguments are not valid JSON" in text
    assert '>> calls ask_small_model({"task": "t"})' in text
    assert "--- prompt -> small\n  solve t\n--- small answered\n  five" in text
    assert "--- tool ask_small_model result -> large\n  five" in text and "final answer: '5'" in text
    invalid = CaseRecord(run_id="r", case_id="c", suite="extraction", item_id="1", model="m", backend="b",
                         status="invalid_output", extra={"invalid_reason": "field 'age' is not a number"})
    assert reason(invalid) == "field 'age' is not a number"
    assert reason(CaseRecord(run_id="r", case_id="c", suite="s", item_id="1", model="m", backend="b")) is None


def test_one_model_as_both_router_models_and_repeated_samples() -> None:
    builder = TranscriptBuilder()
    call = {"tool_calls": [{"name": "ask_small_model", "arguments": {"task": "t"}}]}
    m = _models(builder, same=[call, "5", "The answer is 5."])
    route(m["same"], m["same"], "q", small_prompt=lambda t: f"solve {t}", system="S")
    transcript = builder.build()
    assert transcript is not None
    assert [(x.role, x.content) for x in transcript.messages] == [
        ("system", "S"), ("user", "q"), ("assistant", ""), ("prompt", "solve t"), ("assistant", "5"),
        ("tool", "5"), ("assistant", "The answer is 5.")]
    # two samples of one chat prompt: each a conversation of its own, its question shown each time
    builder = TranscriptBuilder()
    m = _models(builder, chat=["a", "b"])
    for _ in range(2):
        m["chat"].generate(Request(messages=({"role": "user", "content": "q"},)))
    transcript = builder.build()
    assert transcript is not None
    assert [(x.role, x.content) for x in transcript.messages] == [("user", "q"), ("assistant", "a"),
                                                                   ("user", "q"), ("assistant", "b")]
