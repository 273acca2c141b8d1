"""A case's conversation, as the record keeps it: every message in order, who it went to or came
from, the tool calls with their raw arguments, the tool results and the final answer.

`TranscriptBuilder` is fed by the call wrapper (harness/models/call.py) with every generate request and
answer of every model a case uses, and by the tool loop with each tool result, in the order they
happen; so one builder per case gives the router's whole story (the large model's call, the small
model's prompt and answer, the tool result that went back, the final answer) and the same for the
cascade's tries, the coding agent and chat memory, without each strategy writing its own.

A chat model is sent the whole history each turn; the builder adds only the messages that model
has not been shown yet (a request with no answer in it starts a new conversation, shown whole).
The transcript is bounded (MESSAGE_CHARS per message, TRANSCRIPT_CHARS and TRANSCRIPT_MESSAGES
in all), so a long agent run cannot blow up a record: a long message keeps its head and tail,
and a long conversation keeps its start and its end, saying what was left out.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MESSAGE_CHARS = 4000  # one message's text
TRANSCRIPT_CHARS = 40_000  # all messages' text together
TRANSCRIPT_MESSAGES = 120
ROLES = ("system", "user", "assistant", "tool", "prompt", "note")  # prompt: a completion model's text


@dataclass
class TranscriptCall:
    """A tool call inside an assistant message: its id, tool, raw arguments and, where they could
    not be read, why."""

    id: str
    name: str
    arguments: str
    error: str | None = None

    @classmethod
    def from_value(cls, data: Any) -> TranscriptCall:
        if isinstance(data, TranscriptCall):
            return data
        if not isinstance(data, Mapping):
            raise ValueError(f"a transcript tool call must be an object, not {type(data).__name__}")
        arguments = data.get("arguments", "")
        error = data.get("error")
        return cls(str(data.get("id") or ""), str(data.get("name") or ""),
                   arguments if isinstance(arguments, str) else json.dumps(arguments),
                   None if error is None else str(error))


@dataclass
class Message:
    """One message. `model`: the model it was sent to (system, user, tool, prompt) or that wrote
    it (assistant). `cut`: characters of `content` left out by the bound."""

    role: str
    content: str = ""
    model: str = ""
    tool_calls: list[TranscriptCall] = field(default_factory=list)
    tool_call_id: str = ""
    name: str = ""  # a tool result's tool
    ok: bool | None = None  # a tool result: the tool ran (False: refused or failed, content says why)
    cut: int = 0

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"transcript message role {self.role!r}: one of {', '.join(ROLES)}")
        self.tool_calls = [TranscriptCall.from_value(c) for c in self.tool_calls]

    @classmethod
    def from_value(cls, data: Any) -> Message:
        if isinstance(data, Message):
            return data
        if not isinstance(data, Mapping):
            raise ValueError(f"a transcript message must be an object, not {type(data).__name__}")
        ok = data.get("ok")
        return cls(str(data.get("role") or ""), str(data.get("content") or ""), str(data.get("model") or ""),
                   list(data.get("tool_calls") or []), str(data.get("tool_call_id") or ""),
                   str(data.get("name") or ""), None if ok is None else bool(ok), int(data.get("cut") or 0))


@dataclass
class Transcript:
    """The conversation of one case. `left_out`: messages dropped from the middle by the bound."""

    messages: list[Message] = field(default_factory=list)
    final: str | None = None  # the answer the case scored (or its raw output)
    left_out: int = 0

    def __post_init__(self) -> None:
        self.messages = [Message.from_value(m) for m in self.messages]

    @classmethod
    def from_value(cls, data: Any) -> Transcript | None:
        if data is None or isinstance(data, Transcript):
            return data
        if not isinstance(data, Mapping):
            raise ValueError(f"a transcript must be an object, not {type(data).__name__}")
        final = data.get("final")
        return cls(list(data.get("messages") or []), None if final is None else str(final),
                   int(data.get("left_out") or 0))

    @property
    def tool_calls(self) -> list[TranscriptCall]:
        return [c for m in self.messages for c in m.tool_calls]


def clip(text: str, limit: int = MESSAGE_CHARS) -> tuple[str, int]:
    """(text within `limit` characters, how many were cut): the head and the tail are kept, since a
    model's answer usually ends in what matters."""
    if len(text) <= limit:
        return text, 0
    head = limit * 3 // 4
    tail = limit - head
    cut = len(text) - head - tail
    return f"{text[:head]}\n… [{cut} characters cut] …\n{text[len(text) - tail:]}", cut


def bounded(messages: Sequence[Message], chars: int = TRANSCRIPT_CHARS,
            count: int = TRANSCRIPT_MESSAGES) -> tuple[list[Message], int]:
    """(messages within the bounds, how many were left out of the middle). The first messages (the
    instructions and the question) and as many of the last as fit are kept."""
    def size(m: Message) -> int:
        return len(m.content) + sum(len(c.arguments) + len(c.name) for c in m.tool_calls)

    if len(messages) <= count and sum(size(m) for m in messages) <= chars:
        return list(messages), 0
    head = list(messages[:2])
    budget, room = chars - sum(size(m) for m in head), count - len(head) - 1
    tail: list[Message] = []
    for message in reversed(messages[2:]):
        if room <= 0 or size(message) > budget:
            break
        tail.insert(0, message)
        budget -= size(message)
        room -= 1
    left_out = len(messages) - len(head) - len(tail)
    note = Message("note", f"{left_out} messages left out (the transcript's bound)")
    return [*head, note, *tail], left_out


def _key(role: str, content: Any, tool_call_id: Any = "", calls: Iterable[tuple[str, str]] = ()) -> tuple[Any, ...]:
    return role, str(content or "").strip(), str(tool_call_id or ""), tuple(calls)


def _history_key(message: Mapping[str, Any]) -> tuple[Any, ...]:
    calls = [(c.get("function", c).get("name", ""), str(c.get("function", c).get("arguments", "")))
             for c in message.get("tool_calls") or ()]
    return _key(str(message.get("role")), message.get("content"), message.get("tool_call_id"), calls)


def _content(value: Any) -> str:
    """A message's content as text: multi-part content (text and images) keeps its text parts."""
    if isinstance(value, list):
        return "\n".join(str(p.get("text", "")) for p in value if isinstance(p, Mapping))
    return "" if value is None else str(value)


class TranscriptBuilder:
    """Collects one case's conversation as its model calls happen (see the module's docstring)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._shown: dict[str, Counter[tuple[Any, ...]]] = {}  # per model: messages it has been shown

    def _add(self, message: Message) -> None:
        message.content, message.cut = clip(message.content)
        for call in message.tool_calls:
            call.arguments, cut = clip(call.arguments)
            message.cut += cut
        self.messages.append(message)

    def request(self, model: str, messages: Sequence[Mapping[str, Any]] | None, prompt: str | None) -> None:
        """What a model is about to be sent: the messages it has not seen yet, or a completion prompt."""
        if messages is None:
            self._add(Message("prompt", prompt or "", model))
            return
        # A request that carries an answer continues a conversation: what was shown of it is
        # skipped. One that does not starts a new one (a retry, another sample): shown whole.
        continuing = any(m.get("role") == "assistant" for m in messages)
        shown = Counter(self._shown.get(model, Counter()) if continuing else Counter())
        for message in messages:
            key = _history_key(message)
            if shown[key] > 0:
                shown[key] -= 1
                continue
            role = str(message.get("role") or "user")
            calls = [TranscriptCall(str(c.get("id") or ""), str(c.get("function", c).get("name", "")),
                                    str(c.get("function", c).get("arguments", "")))
                     for c in message.get("tool_calls") or ()]
            self._add(Message(role if role in ROLES else "user", _content(message.get("content")), model, calls,
                              str(message.get("tool_call_id") or ""), str(message.get("name") or "")))
        # Next turn, this model's history repeats all of these: count them as shown. A union, not
        # a reset: one model may hold two conversations in a case (the router's large and small
        # model may be one model).
        self._shown[model] = self._shown.get(model, Counter()) | Counter(_history_key(m) for m in messages)

    def answer(self, model: str, text: str, calls: Sequence[TranscriptCall] = ()) -> None:
        """What a model wrote: its text and its tool calls (each with its parse error, if any)."""
        self._add(Message("assistant", text, model, [TranscriptCall(c.id, c.name, c.arguments, c.error)
                                                     for c in calls]))
        self._shown.setdefault(model, Counter())[_key("assistant", text, "", [(c.name, c.arguments)
                                                                             for c in calls])] += 1

    def tool_result(self, model: str, call_id: str, name: str, content: str, ok: bool) -> None:
        """A tool's result (or why the call was refused), on its way back to `model`."""
        self._add(Message("tool", content, model, tool_call_id=call_id, name=name, ok=ok))
        self._shown.setdefault(model, Counter())[_key("tool", content, call_id)] += 1

    def note(self, text: str, model: str = "") -> None:
        """Something the harness saw that is no message: a failed call, a stop."""
        self._add(Message("note", text, model))

    def build(self, final: str | None = None) -> Transcript | None:
        """The bounded transcript; None when the case made no generate call."""
        if not self.messages:
            return None
        messages, left_out = bounded(self.messages)
        return Transcript(messages, None if final is None else clip(final)[0], left_out)
