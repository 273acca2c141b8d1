"""`harness chat`: talk to a registry model in the terminal, with a memory strategy.

    harness chat --model smollm2-135m --memory window:6 --load chat.json --save chat.json

Lines starting with '/' are commands (/help lists them); anything else is a message. Ctrl-D or
/exit leaves (and writes --save FILE, when given). Problems a person can fix (an unknown model,
one that fails to load, a file that is not a saved conversation) are one line, never a traceback.

Replies are printed as the model writes them where the backend streams (generate_stream), else
whole. They are sampled, not greedy (greedy small models repeat one sentence until the token
limit): with the sampling the model's own files recommend (a GGUF's `general.sampling.*`,
transformers' generation_config.json), any value they leave out taken from DEFAULT_SAMPLING;
--temperature and --top-p override both. Benchmarks stay greedy: only the chat asks otherwise.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from harness.backends.base import BackendError, Sampling
from harness.core.locations import registry_files
from harness.models.call import CallPolicy, ModelCall
from harness.models.registry import RegistryError, create_backend, load_registry
from harness.strategies import memory

DEFAULT_SYSTEM = "You are a helpful assistant."
PROMPT = "you> "
HELP = ("/save FILE  save the conversation (JSON)   /load FILE  continue a saved one\n"
        "/history    the turns so far              /reset      start over\n"
        "/tokens     size of the current context   /exit       leave (or Ctrl-D)")


# The chat's sampling where the model's files recommend none: common chat defaults (llama.cpp's
# server uses 0.8 / 0.95, Ollama 0.8 / 0.9); top_k unset leaves the backend's own.
DEFAULT_SAMPLING = Sampling(temperature=0.7, top_p=0.9)


class ChatError(Exception):
    """A problem the person at the terminal can fix; printed as one line."""


def open_model(name: str, models_file: str | None) -> ModelCall:
    registry = load_registry(registry_files(models_file, Path.cwd()))
    if name not in registry:
        raise ChatError(f"unknown model {name!r}; models: {', '.join(registry)}")
    try:
        backend = create_backend(registry[name])
    except RegistryError as exc:
        raise ChatError(str(exc)) from None
    except Exception as exc:  # a broken weights file surfaces as anything the library raises
        raise ChatError(f"model {name!r} failed to load: {type(exc).__name__}: {exc}") from None
    # A person waits at the terminal: no timeout thread to abandon a slow answer, few retries.
    return ModelCall(registry[name], backend, CallPolicy(timeout_s=None, retries=1))


def chat_sampling(model: ModelCall, temperature: float | None = None,
                  top_p: float | None = None) -> tuple[Sampling, str]:
    """The chat's sampling and where it came from: the model's recommendation where its files
    have one, DEFAULT_SAMPLING for what they leave out, the options given over both."""
    recommended: dict[str, float] = {}
    if "chat_sampling" in model.backend.abilities:
        try:
            recommended = model.backend.chat_sampling()
        except BackendError:  # unreadable files: no recommendation, not a failed chat
            recommended = {}
    top_k = recommended.get("top_k", DEFAULT_SAMPLING.top_k)
    sampling = Sampling(
        temperature=temperature if temperature is not None else
        recommended.get("temperature", DEFAULT_SAMPLING.temperature),
        top_p=top_p if top_p is not None else recommended.get("top_p", DEFAULT_SAMPLING.top_p),
        top_k=int(top_k) if top_k is not None else None)
    source = (f"{', '.join(sorted(recommended))} as the model's files recommend" if recommended
              else "the harness's chat default (the model's files recommend none)")
    given = [name for name, value in (("--temperature", temperature), ("--top-p", top_p)) if value is not None]
    return sampling, source + "".join(f"; {name} as given" for name in given)


def describe_sampling(sampling: Sampling) -> str:
    if sampling.temperature == 0:
        return "greedy (temperature 0)"
    parts = [f"temperature {sampling.temperature:g}"]
    parts += [f"top_p {sampling.top_p:g}"] if sampling.top_p is not None else []
    parts += [f"top_k {sampling.top_k}"] if sampling.top_k is not None else []
    return ", ".join(parts)


class ReplyPrinter:
    """Writes a reply as its pieces come: after the model's name, without the leading blank
    space the stored turn is stripped of, so the screen shows the turn as it is kept."""

    def __init__(self, write: Callable[[str], None], name: str) -> None:
        self.write = write
        self.name = name
        self.started = False

    def begin(self) -> None:
        self.write(f"{self.name}> ")

    def __call__(self, piece: str) -> None:
        if not self.started:
            piece = piece.lstrip()
            self.started = bool(piece)
        if piece:
            self.write(piece)

    def end(self) -> None:
        self.write("\n")


def terminal_write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()  # a piece is shown now, not when a line or a buffer fills


class ChatSession:
    """The conversation, the strategy and the model; `handle` takes one line of input. Replies go
    to `write` piece by piece where it is given, else to `out` whole."""

    def __init__(self, model: ModelCall, strategy: memory.Memory, conversation: memory.Conversation,
                 out: Callable[[str], None], max_tokens: int = 256, *, sampling: Sampling = DEFAULT_SAMPLING,
                 write: Callable[[str], None] | None = None) -> None:
        self.model = model
        self.strategy = strategy
        self.conversation = conversation
        self.out = out
        self.write = write
        self.max_tokens = max_tokens
        self.sampling = sampling
        self.count = memory.counter(model)

    def handle(self, line: str) -> bool:
        """False when the person asked to leave."""
        line = line.strip()
        if not line:
            return True
        if not line.startswith("/"):
            self._say(line)
            return True
        command, _, argument = line.partition(" ")
        argument = argument.strip()
        if command in ("/exit", "/quit"):
            return False
        actions: dict[str, Callable[[str], None]] = {
            "/save": self._save, "/load": self._load, "/history": self._history,
            "/reset": self._reset, "/tokens": self._tokens, "/help": lambda _: self.out(HELP)}
        action = actions.get(command)
        if action is None:
            self.out(f"unknown command {command}; /help lists them")
        else:
            try:
                action(argument)
            except (OSError, memory.ChatMemoryError, ChatError) as exc:
                self.out(f"error: {exc}")
        return True

    def _say(self, message: str) -> None:
        printer = ReplyPrinter(self.write, self.model.name) if self.write is not None else None
        if printer is not None:
            printer.begin()
        try:
            reply = memory.respond(self.model, self.conversation, message, self.strategy,
                                   max_tokens=self.max_tokens, count=self.count, sampling=self.sampling,
                                   on_text=printer)
        except BackendError as exc:  # includes Unsupported (budget:T on a model that cannot count)
            if printer is not None:
                printer.end()
            self.out(f"error: {exc}")
            return
        if printer is not None:
            printer.end()
        else:
            self.out(f"{self.model.name}> {reply.text}")

    def _need_file(self, argument: str, command: str) -> str:
        if not argument:
            raise ChatError(f"{command} needs a file name, e.g. {command} chat.json")
        return argument

    def _save(self, argument: str) -> None:
        path = self._need_file(argument, "/save")
        self.conversation.save(path)
        self.out(f"saved {len(self.conversation.turns)} turns to {path}")

    def _load(self, argument: str) -> None:
        path = self._need_file(argument, "/load")
        self.conversation = memory.Conversation.load(path)
        self.out(f"loaded {len(self.conversation.turns)} turns from {path}")

    def _history(self, _: str) -> None:
        if not self.conversation.turns:
            self.out("(no turns yet)")
        for number, turn in enumerate(self.conversation.turns, start=1):
            self.out(f"[{number}] you: {turn.user}\n    {self.model.name}: {turn.assistant}")

    def _reset(self, _: str) -> None:
        self.conversation = memory.Conversation(self.conversation.system)
        self.out("the conversation is empty again")

    def _tokens(self, _: str) -> None:
        # The context the next message would join: what the strategy keeps now, with an empty message.
        try:
            context = self.strategy.context(self.conversation, "", self.count)
        except BackendError as exc:
            raise ChatError(str(exc)) from None
        size = f"{self.count(context.messages)} tokens" if self.count else "size unknown (no tokenizer)"
        self.out(f"context: {size}, {len(context.kept)} of {len(self.conversation.turns)} turns kept "
                 f"({self.strategy})")


def run(model_name: str, memory_spec: str = "full", *, load: str | None = None, save: str | None = None,
        models_file: str | None = None, system: str | None = None, max_tokens: int = 256,
        temperature: float | None = None, top_p: float | None = None,
        stdin: TextIO | None = None, out: Callable[[str], None] = print,
        write: Callable[[str], None] | None = terminal_write) -> int:
    """The interactive loop; returns the exit status. Raises ChatError / ChatMemoryError for the
    command line to print as one line."""
    if temperature is not None and temperature < 0:
        raise ChatError(f"--temperature takes 0 or more (0 is greedy), not {temperature:g}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ChatError(f"--top-p takes a number in (0, 1], not {top_p:g}")
    strategy = memory.parse(memory_spec)
    conversation = memory.Conversation.load(load) if load else memory.Conversation(system or DEFAULT_SYSTEM)
    model = open_model(model_name, models_file)
    sampling, source = chat_sampling(model, temperature, top_p)
    session = ChatSession(model, strategy, conversation, out, max_tokens, sampling=sampling, write=write)
    out(f"chatting with {model_name} (memory {strategy}); /help lists commands, Ctrl-D leaves"
        + (f"; {len(conversation.turns)} turns loaded from {load}" if load else ""))
    out(f"sampling: {describe_sampling(sampling)}, {source}")
    try:
        while True:
            try:
                line = stdin.readline() if stdin is not None else input(PROMPT)
            except (EOFError, KeyboardInterrupt):
                break
            if stdin is not None and not line:
                break
            if not session.handle(line):
                break
    finally:
        if save:
            try:
                session.conversation.save(save)
                out(f"saved {len(session.conversation.turns)} turns to {save}")
            except OSError as exc:
                print(f"harness chat: cannot save to {save}: {exc}", file=sys.stderr)
        model.backend.close()
    out("bye")
    return 0
