"""Memory strategies as pure functions, saved conversations, and the chat_memory suite's parts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from support import PROJECT

from harness.backends.scripted import ScriptedBackend
from harness.models.call import ModelCall
from harness.models.registry import ModelSpec
from harness.report import chat_memory as report
from harness.strategies import memory
from harness.strategies.memory import ChatMemoryError, Conversation, Memory
from harness.suites import chat_memory
from harness.suites.base import DataError


def conversation(turns: int = 6, system: str | None = "Be brief.") -> Conversation:
    convo = Conversation(system)
    for n in range(turns):
        convo.add(f"user {n}", f"reply {n}")
    return convo


def words(messages: Sequence[dict[str, str]]) -> int:
    """A deterministic token count for the tests: words, plus 2 per message."""
    return sum(2 + len(m["content"].split()) for m in messages)


def users(messages: Sequence[dict[str, str]]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "user"]


# -- strategies -------------------------------------------------------------------------------------

def test_full_and_none() -> None:
    convo = conversation(3)
    full = memory.full(convo, "now")
    assert full.messages[0] == {"role": "system", "content": "Be brief."}
    assert users(full.messages) == ["user 0", "user 1", "user 2", "now"] and full.kept == (0, 1, 2)
    assert [m["role"] for m in full.messages] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    off = memory.none(convo, "now")
    assert off.messages == ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "now"})
    assert off.kept == ()
    assert memory.none(Conversation(None), "hi").messages == ({"role": "user", "content": "hi"},)


@pytest.mark.parametrize(("n", "kept"), [(0, ()), (1, (5,)), (4, (2, 3, 4, 5)), (6, (0, 1, 2, 3, 4, 5)),
                                         (9, (0, 1, 2, 3, 4, 5))])
def test_window_edges(n: int, kept: tuple[int, ...]) -> None:
    context = memory.window(conversation(6), "now", n)
    assert context.kept == kept
    assert users(context.messages) == [f"user {i}" for i in kept] + ["now"]


def test_window_on_an_empty_conversation() -> None:
    assert memory.window(Conversation("s"), "hi", 3).kept == ()


def test_budget_drops_the_oldest_turns_until_the_prompt_fits() -> None:
    convo = conversation(6)  # system 2+2, each turn 2+2 + 2+2 = 8, the new message 2+1
    assert words(memory.full(convo, "now").messages) == 4 + 6 * 8 + 3
    context = memory.budget(convo, "now", 4 + 3 * 8 + 3, words)
    assert context.kept == (3, 4, 5) and context.tokens == 31 and not context.over_budget
    assert memory.budget(convo, "now", 4 + 3 * 8 + 2, words).kept == (4, 5)  # one token short
    assert memory.budget(convo, "now", 1000, words).kept == tuple(range(6))


def test_a_budget_smaller_than_one_turn_keeps_only_the_new_message() -> None:
    context = memory.budget(conversation(6), "now", 10, words)
    assert context.kept == () and context.tokens == 7 and not context.over_budget
    tiny = memory.budget(conversation(6), "now", 3, words)  # not even the system prompt fits
    assert tiny.kept == () and tiny.over_budget and users(tiny.messages) == ["now"]


def test_an_updated_fact_is_lost_or_kept_by_position() -> None:
    convo = Conversation("s")
    convo.add("I live in Paris.", "Noted.")
    for n in range(3):
        convo.add(f"distractor {n}", "ok")
    convo.add("I moved to Lisbon.", "Noted.")
    convo.add("distractor 4", "ok")
    # window:2 holds the update but not the original; none holds neither.
    assert users(memory.window(convo, "Where do I live?", 2).messages)[:2] == ["I moved to Lisbon.", "distractor 4"]
    assert memory.window(convo, "q", 2).kept == (4, 5)
    assert 0 in memory.full(convo, "q").kept and 4 in memory.full(convo, "q").kept


def test_memory_dispatch_and_budget_needs_a_counter() -> None:
    convo = conversation(5)
    assert Memory("window", 2).context(convo, "q").kept == (3, 4)
    assert Memory("budget", 25).context(convo, "q", words).kept == (3, 4)
    with pytest.raises(memory.Unsupported, match="cannot count tokens"):
        Memory("budget", 25).context(convo, "q")


# -- specs ------------------------------------------------------------------------------------------

def test_parse_specs() -> None:
    assert memory.parse("full") == Memory("full") and memory.parse(" None ") == Memory("none")
    assert memory.parse("window:4") == Memory("window", 4) and str(memory.parse("budget:512")) == "budget:512"
    assert [str(m) for m in memory.parse_list("full,window:4, full ,budget:9")] == ["full", "window:4", "budget:9"]


@pytest.mark.parametrize(("spec", "message"), [
    ("recent", "unknown memory strategy 'recent'; use full, none, window:N"),
    ("window", "window:N needs N, the turns to keep, as a whole number >= 0"),
    ("window:-1", "whole number >= 0"),
    ("window:four", "e.g. window:4"),
    ("budget:0", "budget:T needs T, the prompt's token budget, as a whole number >= 1, e.g. budget:512"),
    ("full:3", "full takes no ':' value"),
])
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ChatMemoryError, match=message.replace("(", r"\(").replace(")", r"\)")):
        memory.parse(spec)
    with pytest.raises(ChatMemoryError, match="no memory strategy given"):
        memory.parse_list(" , ")


# -- saved conversations ------------------------------------------------------------------------------

def test_a_restored_conversation_continues_with_the_identical_prompt(tmp_path: Path) -> None:
    uninterrupted = Conversation("Be brief. Ünïcode too.")
    uninterrupted.add("My name is Alice.", "Hello Alice!")
    uninterrupted.add("Tell me about volcanoes, \"quoted\"\nand a new line.", "They erupt.")
    path = tmp_path / "chat.json"
    uninterrupted.save(path)
    restored = Conversation.load(path)
    assert restored == uninterrupted
    for strategy in ("full", "none", "window:1", "budget:20"):
        spec = memory.parse(strategy)
        assert spec.context(restored, "What is my name?", words) == spec.context(uninterrupted, "What is my name?",
                                                                                 words)
    # The next turn, and the one after, stay identical too.
    for convo in (uninterrupted, restored):
        convo.add("What is my name?", "Alice.")
    assert memory.full(restored, "again").messages == memory.full(uninterrupted, "again").messages
    assert json.loads(path.read_text())["format"] == memory.FORMAT


@pytest.mark.parametrize(("text", "message"), [
    ("not json", "not JSON"),
    ('{"turns": []}', "not a saved conversation"),
    (json.dumps({"format": memory.FORMAT, "version": 9, "turns": []}), "field 'version'"),
    (json.dumps({"format": memory.FORMAT, "version": 1, "system": None, "turns": [{"user": "hi"}]}),
     r"field 'turns\[0\]'"),
    (json.dumps({"format": memory.FORMAT, "version": 1, "system": 3, "turns": []}), "field 'system'"),
])
def test_bad_conversation_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ChatMemoryError, match=message) as info:
        Conversation.load(path)
    assert str(path) in str(info.value)
    with pytest.raises(ChatMemoryError, match="cannot read"):
        Conversation.load(tmp_path / "missing.json")


def test_respond_sends_the_strategys_messages_and_keeps_the_whole_turn() -> None:
    backend = ScriptedBackend.from_steps(["one", "two", "three"])
    model = ModelCall(ModelSpec("chatty", "scripted", "script", prompt_style="chat"), backend)
    convo = Conversation("sys")
    strategy = memory.parse("window:1")
    count = memory.counter(model)
    assert count is not None
    for message in ("a", "b", "c"):
        reply = memory.respond(model, convo, message, strategy, count=count)
    assert [t.assistant for t in convo.turns] == ["one", "two", "three"] and reply.text == "three"
    assert backend.requests[-1].messages == memory.window(Conversation("sys", convo.turns[:2]), "c", 1).messages
    assert reply.prompt_tokens == count(backend.requests[-1].messages) and reply.tokens_source == "estimate"
    # A base model gets a transcript ending on the assistant's cue, and stops at the next user line.
    base = ModelCall(ModelSpec("plain", "scripted", "script"), ScriptedBackend.from_steps(["Alice."]))
    memory.respond(base, Conversation("sys", list(convo.turns)), "name?", memory.parse("none"))
    request = base.backend.requests[-1]  # type: ignore[attr-defined]
    assert request.prompt == "sys\n\nUser: name?\nAssistant:" and "\nUser:" in request.stop


# -- the suite ----------------------------------------------------------------------------------------

def test_the_projects_conversations_load() -> None:
    items = chat_memory.load(PROJECT / "fixtures" / "chat")
    assert len(items) >= 12
    asked = [q for item in items for q in item.meta["questions"]]
    assert sum(q.updated for q in asked) >= 4 and max(q.distance for q in asked) >= 8
    city = next(i for i in items if i.id == "city-updated")
    [question] = city.meta["questions"]
    assert question.accepted[0] == "Lisbon" and question.stale == ("Paris",) and question.distance == 3


def test_scoring_wants_the_latest_value_alone() -> None:
    question = chat_memory.Question(turn=6, fact="city", accepted=("Lisbon", "Lisboa"), stale=("Paris",),
                                    stated_at=3, updated=True)
    assert chat_memory.is_right(question, "You live in LISBOA now.")
    assert chat_memory.is_right(question, "lisbon")
    assert not chat_memory.is_right(question, "You live in Paris.")
    assert not chat_memory.is_right(question, "Paris, or maybe Lisbon?")  # the stale value too
    assert not chat_memory.is_right(question, "Lisbonne")  # whole words only
    judged = chat_memory.judge(question, "Paris", kept=(0, 1, 2))
    assert judged["miss"] == "strategy" and not judged["in_context"] and judged["distance"] == 3
    assert chat_memory.judge(question, "Paris", kept=(3,))["miss"] == "model"
    assert chat_memory.judge(question, "Lisbon", kept=(3,))["miss"] is None
    score = chat_memory.score([judged, chat_memory.judge(question, "Lisbon", kept=(3,))])
    assert not score.correct and score.scores == {"recall": 0.5, "in_context": 0.5}


@pytest.mark.parametrize(("script", "message"), [
    ({"turns": [{"user": "What is my name?", "asks": "name"}]}, r"turns\[0\].asks.*before any turn sets it"),
    ({"turns": [{"user": "I am Al.", "sets": {"name": "Al"}}]}, "nothing to score"),
    ({"turns": [{"user": "hi", "says": 1}]}, r"unknown field\(s\) \['says'\]"),
    ({"turns": [{"user": ""}]}, "non-empty string 'user'"),
    ({"turns": [{"user": "x", "sets": {"name": []}}, {"user": "q", "asks": "name"}]}, r"turns\[0\].sets.name"),
    ({"talk": []}, "non-empty list 'turns'"),
    ({"turns": [{"user": "I am Al.", "sets": {"n": "Al"}}, {"user": "Who?", "asks": "n", "reply": "Al"}]},
     r"turns\[1\].reply.*the model answers questions"),
])
def test_bad_scripts_name_file_and_field(tmp_path: Path, script: dict, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(script))
    with pytest.raises(DataError, match=message) as info:
        chat_memory.load(path)
    assert str(path) in str(info.value)


def test_report_rows_count_questions_and_attribute_misses() -> None:
    def rec(strategy: str, status: str, questions: list[dict], tokens: list[int]) -> dict:
        return {"case_id": f"{strategy}-{len(tokens)}-{status}", "suite": "chat_memory", "model": "m",
                "strategy": strategy, "status": status,
                "extra": {"questions": questions, "prompt_tokens_per_turn": tokens,
                          "latency_s_per_turn": [0.5] * len(tokens), "kept_turns_per_turn": [0] * len(tokens)}}
    right = {"correct": True, "in_context": True, "distance": 2, "miss": None}
    dropped = {"correct": False, "in_context": False, "distance": 5, "miss": "strategy"}
    ignored = {"correct": False, "in_context": True, "distance": 5, "miss": "model"}
    records = [rec("full", "ok", [right, ignored], [10, 20, 30]), rec("full", "wrong", [dropped], [10, 40]),
               rec("full", "error", [], [])]
    [row] = report.recall_rows(records)
    assert (row["questions"], row["right"], row["miss_strategy"], row["miss_model"], row["errors"]) == (3, 1, 1, 1, 1)
    assert row["recall"] == pytest.approx(1 / 3) and row["ci_low"] < 1 / 3 < row["ci_high"]
    assert row["last_turn_prompt_tokens"] == 35.0
    by_distance = {r["distance"]: (r["right"], r["questions"]) for r in report.distance_rows(records)}
    assert by_distance == {2: (1, 1), 5: (0, 2)}
    turns = report.turn_rows(records)
    assert [(r["turn"], r["conversations"], r["mean_prompt_tokens"]) for r in turns] == \
        [(1, 2, 10.0), (2, 2, 30.0), (3, 1, 30.0)]


def test_backends_without_a_tokenizer_at_hand_cannot_hold_a_budget() -> None:
    pytest.importorskip("openai")
    from harness.backends.openai import OpenAIBackend

    server = OpenAIBackend(ModelSpec("served", "openai", "m", prompt_style="chat",
                                     options={"base_url": "http://127.0.0.1:9/v1"}))
    model = ModelCall(server.spec, server)
    with pytest.raises(memory.Unsupported, match="only with options.tokenize_url"):
        model.count_tokens("plain text")
    assert memory.counter(model) is None
    with pytest.raises(memory.Unsupported, match="cannot count tokens, so no token budget"):
        memory.parse("budget:100").context(conversation(2), "q", memory.counter(model))
