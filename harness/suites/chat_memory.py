"""Chat memory: does a model still know a fact the user stated turns ago?

Each item is a conversation script (a JSON file in fixtures/chat/ or a folder of your own):

    {"system": "...",                        optional; DEFAULT_SYSTEM otherwise
     "turns": [
       {"user": "Hi, I'm Alice.", "sets": {"name": "Alice"}, "reply": "Hello!"},
       {"user": "Tell me about volcanoes.", "reply": "..."},       a distractor
       {"user": "I moved to Lisbon.", "sets": {"city": ["Lisbon", "Lisboa"]}},
       {"user": "What is my name?", "asks": "name"}]}

`sets` states facts (a value, or a list of accepted spellings, the first the canonical one); a
later `sets` of the same fact updates it, and the latest must win. `asks` is a question whose
answer is the fact's value at that point: the model answers it, and it is scored. `reply` gives
the assistant's side of a turn that asks nothing: the history is then scripted, the same for every
model and strategy (only the context differs), and the model is called only for the questions and
for turns without a reply. The project's scripts reply to every turn that asks nothing; the
reply never repeats a fact, so a fact lives in exactly one user message.

An answer is right when, normalized (lowercase, accents and punctuation dropped), it holds an
accepted spelling of the latest value as whole words and none of a superseded value's. Each
question also says whether the turn that stated the fact was in the context the model saw, so a
miss is put down to the memory strategy (fact dropped) or to the model (fact there, not used).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.settings import option
from harness.suites.base import DataError, Item, Score, sample
from harness.suites.unit import LoadContext, Suite

DEFAULT_SYSTEM = ("You are a helpful assistant chatting with a user. Keep every answer to one short "
                  "sentence. Remember what the user tells you about themselves.")
# Replies to statements and distractors stay short: they are history, not what is measured.
TURN_MAX_TOKENS = 24
ANSWER_MAX_TOKENS = 32
ACK = "Noted."  # the oracle's reply to a turn that asks nothing
_ID = re.compile(r"[A-Za-z0-9_.-]+")
_TURN_KEYS = {"user", "sets", "asks", "reply"}


@dataclass(frozen=True)
class Question:
    """One scored turn, as the suite knows it before the model answers."""

    turn: int
    fact: str
    accepted: tuple[str, ...]  # spellings of the latest value, the canonical one first
    stale: tuple[str, ...]  # spellings of superseded values (not also accepted)
    stated_at: int  # the turn that set the latest value
    updated: bool  # the fact had an earlier value

    @property
    def distance(self) -> int:
        """Turns from the statement to the question: 1 when it was the turn just before."""
        return self.turn - self.stated_at


def _values(path: Path, index: int, fact: str, value: Any) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and normalize(v) for v in values):
        raise DataError(path, "a fact's value must be a non-empty string or list of strings",
                        field=f"turns[{index}].sets.{fact}")
    return tuple(values)


def _parse(path: Path, data: Any) -> Item:
    if not isinstance(data, dict) or not isinstance(data.get("turns"), list) or not data["turns"]:
        raise DataError(path, "expected an object with a non-empty list 'turns'")
    unknown = set(data) - {"system", "turns", "note"}
    if unknown:
        raise DataError(path, f"unknown field(s) {sorted(unknown)}; known: note, system, turns")
    system = data.get("system", DEFAULT_SYSTEM)
    if not isinstance(system, str):
        raise DataError(path, "must be a string", field="system")
    facts: dict[str, list[tuple[int, tuple[str, ...]]]] = {}  # fact -> [(turn, spellings)]
    questions: list[Question] = []
    turns: list[dict[str, Any]] = []
    for index, turn in enumerate(data["turns"]):
        where = f"turns[{index}]"
        if not isinstance(turn, dict) or not isinstance(turn.get("user"), str) or not turn["user"].strip():
            raise DataError(path, "each turn needs a non-empty string 'user'", field=where)
        if set(turn) - _TURN_KEYS:
            raise DataError(path, f"unknown field(s) {sorted(set(turn) - _TURN_KEYS)}; known: asks, reply, sets, user",
                            field=where)
        sets = turn.get("sets", {})
        if not isinstance(sets, dict):
            raise DataError(path, "must map fact names to values", field=f"{where}.sets")
        for fact, value in sets.items():
            facts.setdefault(fact, []).append((index, _values(path, index, fact, value)))
        asks, reply = turn.get("asks"), turn.get("reply")
        if reply is not None and (not isinstance(reply, str) or asks is not None):
            raise DataError(path, "a reply is a string, on a turn that asks nothing (the model answers "
                            "questions)", field=f"{where}.reply")
        if asks is not None:
            if asks not in facts:
                raise DataError(path, f"asks for fact {asks!r} before any turn sets it", field=f"{where}.asks")
            history = facts[asks]
            stated_at, accepted = history[-1]
            wanted = {normalize(v) for v in accepted}
            stale = tuple(v for _, old in history[:-1] for v in old if normalize(v) not in wanted)
            questions.append(Question(index, asks, accepted, stale, stated_at, len(history) > 1))
        turns.append({"user": turn["user"], "asks": asks, "reply": reply})
    if not questions:
        raise DataError(path, "no turn 'asks' for a fact: nothing to score")
    if not _ID.fullmatch(path.stem):
        raise DataError(path, "the file name must be letters, digits, '_', '.' or '-' (it is the item id)")
    reference = "; ".join(q.accepted[0] for q in questions)
    return Item(id=path.stem, input={"system": system, "turns": turns}, reference=reference,
                meta={"questions": questions, "file": str(path)})


def load(source: str | Path) -> list[Item]:
    """Every *.json conversation of a folder (or one file), in name order."""
    root = Path(source)
    files = sorted(root.glob("*.json")) if root.is_dir() else [root]
    if not files or not files[0].is_file():
        raise DataError(root, "no conversation scripts (*.json) found")
    items = []
    for path in files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(path, f"not JSON: {exc.msg}", line=exc.lineno) from None
        items.append(_parse(path, data))
    return items


def questions(item: Item) -> dict[int, Question]:
    return {q.turn: q for q in item.meta["questions"]}


def normalize(text: str) -> str:
    """Lowercase, accents dropped, anything but letters and digits a single space."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


def _holds(answer: str, value: str) -> bool:
    return f" {normalize(value)} " in f" {answer} "


def is_right(question: Question, answer: str) -> bool:
    said = normalize(answer)
    return any(_holds(said, v) for v in question.accepted) and not any(_holds(said, v) for v in question.stale)


def judge(question: Question, answer: str, kept: Sequence[int]) -> dict[str, Any]:
    """A question's outcome, as recorded under extra['questions']."""
    right = is_right(question, answer)
    in_context = question.stated_at in kept
    return {"turn": question.turn, "fact": question.fact, "expected": question.accepted[0],
            "answer": answer, "correct": right, "in_context": in_context,
            "distance": question.distance, "updated": question.updated,
            # A miss with the fact dropped is the strategy's; with the fact in view, the model's.
            "miss": None if right else ("model" if in_context else "strategy")}


def score(judged: Sequence[dict[str, Any]]) -> Score:
    """A conversation is right when every question is; recall is the share of right answers."""
    right = sum(bool(q["correct"]) for q in judged)
    in_context = sum(bool(q["in_context"]) for q in judged)
    return Score(right == len(judged) and bool(judged),
                 {"recall": right / len(judged) if judged else 0.0,
                  "in_context": in_context / len(judged) if judged else 0.0})


# -- the suite as the harness registers it (harness/suites/unit.py) --------------------------------

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "chat"


@dataclass(frozen=True)
class Options:
    strategies: tuple[str, ...] = option("chat memory strategies, comma-separated: full, none, window:N, budget:T",
                                         ("full", "none", "window:4", "budget:512"), aliases=("--memory",))


def _load(options: Options, context: LoadContext) -> list[Item]:
    return sample(load(SAMPLE), context.samples, context.seed)


SUITE = Suite("chat_memory", load=_load, options=Options, reports=("harness.report.chat_memory",),
              description="chat memory: facts stated early in a conversation, asked for later")
