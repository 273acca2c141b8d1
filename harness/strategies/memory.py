"""Chat memory: which part of a conversation a model sees, and conversations saved as JSON.

A conversation is a system prompt and the finished turns (a user message and the model's reply).
A memory strategy is a pure function of (conversation, the new user message) to the messages sent:

- `full`        every earlier turn
- `none`        history off: the system prompt and the new message only
- `window:N`    the last N earlier turns
- `budget:T`    drop the oldest turns until the prompt fits T tokens, counted by a function the
                caller gives (the model's own tokenizer on the prompt as the model will see it)

Because the messages depend on nothing but the conversation, a conversation saved to JSON and
loaded back continues with exactly the prompt an uninterrupted one would have had. JSON, not
pickle: loading a pickle runs code, and a saved chat is a file people pass around.

`respond` runs one turn through a model: the strategy picks the context, the model answers, the
turn joins the conversation (whole: the strategy only decides what is *sent*).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from harness.backends.base import GREEDY, Request, Sampling, TextSink, Unsupported

if TYPE_CHECKING:  # the call layer sits above this module's pure part
    from harness.models.call import ModelCall

Message = dict[str, str]
# Counts the tokens of the prompt the given messages make; budget:T needs one.
TokenCounter = Callable[[Sequence[Message]], int]

FORMAT = "llm-bench-harness/conversation"
VERSION = 1
KINDS = ("full", "none", "window", "budget")
SPEC_HELP = "full, none, window:N (the last N turns) or budget:T (the prompt within T tokens)"


class ChatMemoryError(ValueError):
    """A bad memory spec or conversation file; the message names the culprit."""


@dataclass(frozen=True)
class Turn:
    user: str
    assistant: str


@dataclass
class Conversation:
    system: str | None = None
    turns: list[Turn] = field(default_factory=list)

    def add(self, user: str, assistant: str) -> None:
        self.turns.append(Turn(user, assistant))

    def to_json(self) -> str:
        data = {"format": FORMAT, "version": VERSION, "system": self.system,
                "turns": [{"user": t.user, "assistant": t.assistant} for t in self.turns]}
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def from_json(cls, text: str, where: str = "conversation") -> Conversation:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ChatMemoryError(f"{where}: not JSON ({exc.msg}, line {exc.lineno})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ChatMemoryError(f"{where}: not a saved conversation (field 'format' must be {FORMAT!r})")
        if data.get("version") != VERSION:
            raise ChatMemoryError(f"{where}: field 'version': {data.get('version')!r} is not {VERSION}")
        system = data.get("system")
        if system is not None and not isinstance(system, str):
            raise ChatMemoryError(f"{where}: field 'system' must be a string or null")
        turns = data.get("turns")
        if not isinstance(turns, list):
            raise ChatMemoryError(f"{where}: field 'turns' must be a list")
        loaded = []
        for index, turn in enumerate(turns):
            if not isinstance(turn, dict) or set(turn) != {"user", "assistant"} or \
                    not all(isinstance(turn[k], str) for k in ("user", "assistant")):
                raise ChatMemoryError(f"{where}: field 'turns[{index}]' must be "
                                   '{"user": "...", "assistant": "..."}')
            loaded.append(Turn(turn["user"], turn["assistant"]))
        return cls(system, loaded)

    @classmethod
    def load(cls, path: str | Path) -> Conversation:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ChatMemoryError(f"{path}: cannot read: {exc}") from None
        return cls.from_json(text, str(path))


@dataclass(frozen=True)
class Context:
    """What one turn sends: the messages, and which earlier turns (by index) they include."""

    messages: tuple[Message, ...]
    kept: tuple[int, ...]
    tokens: int | None = None  # the prompt's size where the strategy counted it
    over_budget: bool = False  # budget:T smaller than the system prompt and the new message


def _messages(conversation: Conversation, kept: Sequence[int], message: str) -> tuple[Message, ...]:
    out: list[Message] = []
    if conversation.system:
        out.append({"role": "system", "content": conversation.system})
    for index in kept:
        turn = conversation.turns[index]
        out += [{"role": "user", "content": turn.user}, {"role": "assistant", "content": turn.assistant}]
    out.append({"role": "user", "content": message})
    return tuple(out)


def _keep(conversation: Conversation, kept: Sequence[int], message: str) -> Context:
    return Context(_messages(conversation, kept, message), tuple(kept))


def full(conversation: Conversation, message: str) -> Context:
    return _keep(conversation, range(len(conversation.turns)), message)


def none(conversation: Conversation, message: str) -> Context:
    return _keep(conversation, (), message)


def window(conversation: Conversation, message: str, n: int) -> Context:
    count = len(conversation.turns)
    return _keep(conversation, range(max(0, count - n), count), message)


def budget(conversation: Conversation, message: str, limit: int, count: TokenCounter) -> Context:
    """The most recent turns whose prompt fits `limit` tokens. When even the system prompt and the
    new message alone do not fit, they are sent anyway (nothing else can be dropped), marked."""
    start = 0
    while True:
        kept = range(start, len(conversation.turns))
        messages = _messages(conversation, kept, message)
        tokens = count(messages)
        if tokens <= limit or not kept:
            return Context(messages, tuple(kept), tokens, over_budget=tokens > limit)
        start += 1


@dataclass(frozen=True)
class Memory:
    """A parsed strategy spec: `kind` and, for window and budget, its `limit`."""

    kind: str
    limit: int | None = None

    def __str__(self) -> str:
        return self.kind if self.limit is None else f"{self.kind}:{self.limit}"

    def context(self, conversation: Conversation, message: str, count: TokenCounter | None = None) -> Context:
        if self.kind == "full":
            return full(conversation, message)
        if self.kind == "none":
            return none(conversation, message)
        if self.kind == "window":
            return window(conversation, message, int(self.limit or 0))
        if count is None:
            raise Unsupported(f"memory {self}: this model cannot count tokens, so no token budget")
        return budget(conversation, message, int(self.limit or 0), count)


def parse(spec: str) -> Memory:
    """'full', 'none', 'window:N' (N >= 0), 'budget:T' (T >= 1) -> Memory, else a clear error."""
    kind, colon, value = spec.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise ChatMemoryError(f"unknown memory strategy {spec!r}; use {SPEC_HELP}")
    if kind in ("full", "none"):
        if colon:
            raise ChatMemoryError(f"memory strategy {spec!r}: {kind} takes no ':' value")
        return Memory(kind)
    least = 0 if kind == "window" else 1
    try:
        limit = int(value.strip())
    except ValueError:
        limit = -1
    if limit < least:
        what = "window:N needs N, the turns to keep," if kind == "window" else \
            "budget:T needs T, the prompt's token budget,"
        raise ChatMemoryError(f"memory strategy {spec!r}: {what} as a whole number >= {least}, "
                              f"e.g. {kind}:{4 if kind == 'window' else 512}")
    return Memory(kind, limit)


def parse_list(specs: str | Sequence[str]) -> list[Memory]:
    """A comma-separated list of specs (or a sequence of them), duplicates dropped."""
    parts = specs.split(",") if isinstance(specs, str) else list(specs)
    out: list[Memory] = []
    for part in parts:
        if part.strip() and (memory := parse(part)) not in out:
            out.append(memory)
    if not out:
        raise ChatMemoryError(f"no memory strategy given; use {SPEC_HELP}")
    return out


# -- prompts for base models, and turns through a model ------------------------------------------

BASE_STOP = ("\nUser:", "\n\n")


def transcript(messages: Sequence[Message]) -> str:
    """A base model's prompt: the system text, then `User:`/`Assistant:` lines, ending on the cue."""
    lines = [m["content"] + "\n" if m["role"] == "system" else
             f"{'User' if m['role'] == 'user' else 'Assistant'}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nAssistant:"


def counter(model: ModelCall) -> TokenCounter | None:
    """The model's own token count of the prompt it will see, or None where it cannot count."""
    try:
        model.count_tokens("probe")
    except Unsupported:
        return None
    if model.spec.prompt_style == "chat":
        return lambda messages: model.count_tokens(list(messages))
    return lambda messages: model.count_tokens(transcript(messages))


@dataclass(frozen=True)
class Reply:
    text: str
    context: Context
    prompt_tokens: int
    tokens_source: str  # where prompt_tokens came from: tokenizer, estimate, or the usage's source
    latency_s: float


def respond(model: ModelCall, conversation: Conversation, message: str, memory: Memory, *,
            max_tokens: int = 64, count: TokenCounter | None = None, reference: str | None = None,
            sampling: Sampling = GREEDY, on_text: TextSink | None = None) -> Reply:
    """One turn: pick the context, ask the model, add the whole turn to the conversation.
    Greedy unless `sampling` says otherwise (`harness chat` does); `on_text` gets the answer as
    it is written."""
    context = memory.context(conversation, message, count)
    if model.spec.prompt_style == "chat":
        request = Request(messages=context.messages, max_tokens=max_tokens, reference=reference)
    else:
        request = Request(prompt=transcript(context.messages), max_tokens=max_tokens, stop=BASE_STOP,
                          reference=reference)
    request = replace(request, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)
    start = time.perf_counter()
    generation = model.generate(request, on_text)
    latency = time.perf_counter() - start
    text = generation.text.strip()
    conversation.add(message, text)
    tokens = context.tokens
    source = model.backend.token_count_source
    if tokens is None and count is not None:
        tokens = count(context.messages)
    if tokens is None:
        tokens, source = generation.usage.prompt_tokens, generation.usage.source
    return Reply(text, context, tokens, source, latency)

