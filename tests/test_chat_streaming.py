"""Streaming and chat sampling (#20 item 5) without a real model: the host protocol's partial
messages, the fallback for backends that do not stream, where the chat's sampling comes from and
that it reaches the backend, and that benchmarks' requests (and their cache keys) stay greedy."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest

from harness.backends.base import (
    GREEDY,
    BackendBase,
    BackendError,
    Generation,
    Request,
    RetryableError,
    Sampling,
    TextSink,
)
from harness.backends.hosted import HostedBackend
from harness.backends.llamacpp_chat import recommended_sampling
from harness.backends.scripted import ScriptedBackend
from harness.commands import chat
from harness.models.cache import request_key
from harness.models.call import CallPolicy, ModelCall
from harness.models.registry import ModelSpec, create_backend
from harness.strategies import memory, single

REPLY = "Cats sleep most of the day, and they purr."


def scripted(*, stream: bool = True, host: bool = False, **options: Any) -> ModelSpec:
    return ModelSpec(name="echo", backend="scripted", model="script", prompt_style="chat", host=host,
                     options={"steps": [REPLY], "stream": stream, **options})


# -- the response cache: old keys stay valid ------------------------------------------------------
SPEC = ModelSpec(name="m", backend="llamacpp", model="x.gguf", options={"n_ctx": 2048})
# Computed with the harness before Request had top_p and top_k (commit b5e806d): entries cached
# then must still be found.
KEYS_BEFORE_TOP_P = [
    (Request(prompt="Question: 2+2?", max_tokens=8, stop=("\n",)),
     "f4bd130ae6d32a8a7bc531a33acc29bbe7f2edccdfaefb6c4d480a4bfa43c8bc"),
    (Request(messages=({"role": "user", "content": "hi"},), temperature=0.5, seed=3),
     "9ac244f0483fb2d32c6e266a4cfded67c51dede19dc282b6ed86a976e88e4f98"),
]


@pytest.mark.parametrize(("request_", "key"), KEYS_BEFORE_TOP_P)
def test_a_request_without_top_p_or_top_k_keeps_its_cache_key(request_: Request, key: str) -> None:
    assert request_key(SPEC, "generate", request_) == key


def test_top_p_and_top_k_are_part_of_the_key_when_set() -> None:
    base = Request(messages=({"role": "user", "content": "hi"},), temperature=0.5, seed=3)
    keys = {request_key(SPEC, "generate", Request(**{**base.__dict__, **change}))
            for change in ({}, {"top_p": 0.9}, {"top_p": 0.8}, {"top_k": 40}, {"top_p": 0.9, "top_k": 40})}
    assert len(keys) == 5


# -- benchmarks stay greedy -----------------------------------------------------------------------
def test_benchmark_requests_are_greedy_and_keep_their_keys() -> None:
    backend = ScriptedBackend(scripted(stream=False))
    model = ModelCall(backend.spec, backend)
    single.complete(model, "Question: 2+2?")
    memory.respond(model, memory.Conversation("Be brief."), "Hello", memory.parse("full"))
    assert [(r.temperature, r.top_p, r.top_k) for r in backend.requests] == [(0.0, None, None)] * 2
    assert Request().temperature == 0.0 and GREEDY == Sampling(0.0, None, None)
    # The same fields as before top_p existed: the same keys, so a benchmark's cache still answers.
    assert {k: v for k, v in backend.requests[0].__dict__.items() if v is not None} == \
        {"messages": ({"role": "user", "content": "Question: 2+2?"},), "max_tokens": 256, "temperature": 0.0,
         "stop": (), "tools": (), "tool_choice": "auto"}


# -- streaming: the protocol and the fallback -----------------------------------------------------
def test_a_hosted_backend_streams_the_answer_in_pieces_that_join_to_it() -> None:
    hosted = create_backend(scripted(host=True))
    try:
        assert isinstance(hosted, HostedBackend) and "generate_stream" in hosted.abilities
        pieces: list[str] = []
        streamed = hosted.generate_stream(Request(messages=({"role": "user", "content": "cats?"},)), pieces.append)
        assert pieces == ["Cats", " sleep", " most", " of", " the", " day,", " and", " they", " purr."]
        assert "".join(pieces) == streamed.text == hosted.generate(Request(prompt="again")).text == REPLY
    finally:
        hosted.close()


def test_a_failing_sink_fails_the_call_and_leaves_the_channel_in_step() -> None:
    hosted = create_backend(scripted(host=True))

    def broken(piece: str) -> None:
        raise BrokenPipeError("the terminal went away")

    try:
        with pytest.raises(BrokenPipeError):
            hosted.generate_stream(Request(prompt="x"), broken)
        # The rest of that answer was read: the next call gets its own answer, from the same host.
        pid = hosted.process()
        assert hosted.generate(Request(prompt="y")).text == REPLY and hosted.process() == pid
    finally:
        hosted.close()


def test_a_backend_that_does_not_stream_says_so_and_the_call_prints_the_whole_answer() -> None:
    backend = ScriptedBackend(scripted(stream=False))
    assert "generate_stream" not in backend.abilities
    model = ModelCall(backend.spec, backend)
    pieces: list[str] = []
    generation = model.generate(Request(prompt="x"), pieces.append)
    assert pieces == [REPLY] and generation.text == REPLY
    streaming = ScriptedBackend(scripted())
    pieces.clear()
    assert ModelCall(streaming.spec, streaming).generate(Request(prompt="x"), pieces.append).text == REPLY
    assert len(pieces) == 9 and "".join(pieces) == REPLY


# -- chat sampling --------------------------------------------------------------------------------
class Recommending(ScriptedBackend):
    """A model whose files recommend some sampling."""

    def chat_sampling(self) -> dict[str, float]:
        return {"temperature": 0.3, "top_k": 20.0}


def test_chat_sampling_is_the_models_then_the_default_then_the_options() -> None:
    plain = ModelCall(scripted(), ScriptedBackend(scripted()))
    assert chat.chat_sampling(plain) == (Sampling(0.7, 0.9, None),
                                         "the harness's chat default (the model's files recommend none)")
    assert chat.chat_sampling(plain, temperature=0.2, top_p=0.5)[0] == Sampling(0.2, 0.5, None)
    recommending = ModelCall(scripted(), Recommending(scripted()))
    assert "chat_sampling" in recommending.backend.abilities
    sampling, source = chat.chat_sampling(recommending)
    assert sampling == Sampling(0.3, 0.9, 20) and source == "temperature, top_k as the model's files recommend"
    sampling, source = chat.chat_sampling(recommending, temperature=1.1)
    assert sampling == Sampling(1.1, 0.9, 20) and source.endswith("; --temperature as given")
    assert chat.DEFAULT_SAMPLING.temperature > 0  # never greedy by default


def test_a_ggufs_recommended_sampling_is_read_from_its_metadata() -> None:
    metadata = {"general.sampling.temp": "0.6", "general.sampling.top_p": "0.95", "general.sampling.top_k": "20",
                "general.name": "x"}
    assert recommended_sampling(metadata) == {"temperature": 0.6, "top_p": 0.95, "top_k": 20.0}
    assert recommended_sampling({"general.sampling.temp": "warm"}) == {}
    assert recommended_sampling({"general.name": "x"}) == {}


def test_transformers_generation_config_gives_what_it_sets() -> None:
    transformers = pytest.importorskip("transformers")
    from harness.backends.transformers_stream import recommended_sampling as from_config

    config = transformers.GenerationConfig(do_sample=True, top_k=64, top_p=0.95)
    assert from_config(config) == {"temperature": 1.0, "top_k": 64.0, "top_p": 0.95}
    assert from_config(transformers.GenerationConfig(temperature=0.6, do_sample=True)) == {"temperature": 0.6}
    assert from_config(transformers.GenerationConfig(bos_token_id=1)) == {}


def run_chat(monkeypatch: pytest.MonkeyPatch, backend: BackendBase, lines: str,
             **options: Any) -> tuple[list[str], str]:
    """harness chat on `backend`, fed `lines`: (what it printed as lines, what it wrote as pieces)."""
    printed: list[str] = []
    written = io.StringIO()
    monkeypatch.setattr(chat, "open_model", lambda name, models_file: ModelCall(
        backend.spec, backend, CallPolicy(timeout_s=None, retries=1)))
    chat.run("echo", stdin=io.StringIO(lines), out=printed.append, write=written.write, **options)
    return printed, written.getvalue()


def test_the_chats_sampling_reaches_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = ScriptedBackend(scripted())
    printed, written = run_chat(monkeypatch, backend, "Hello\n")
    assert (backend.requests[0].temperature, backend.requests[0].top_p, backend.requests[0].top_k) == (0.7, 0.9, None)
    assert printed[1] == ("sampling: temperature 0.7, top_p 0.9, the harness's chat default "
                          "(the model's files recommend none)")
    assert written == f"echo> {REPLY}\n"  # streamed pieces, after the model's name
    backend = ScriptedBackend(scripted())
    printed, _ = run_chat(monkeypatch, backend, "Hello\n", temperature=0.25, top_p=0.5)
    assert (backend.requests[0].temperature, backend.requests[0].top_p) == (0.25, 0.5)
    assert printed[1].startswith("sampling: temperature 0.25, top_p 0.5, ")
    backend = ScriptedBackend(scripted(stream=False))
    printed, written = run_chat(monkeypatch, backend, "Hello\n", temperature=0)
    assert backend.requests[0].temperature == 0 and printed[1].startswith("sampling: greedy (temperature 0)")
    assert written == f"echo> {REPLY}\n"  # not streamed: written whole


@pytest.mark.parametrize(("options", "message"), [
    ({"temperature": -1.0}, "--temperature takes 0 or more (0 is greedy), not -1"),
    ({"top_p": 1.5}, "--top-p takes a number in (0, 1], not 1.5"),
])
def test_bad_sampling_options_are_one_clear_line(monkeypatch: pytest.MonkeyPatch, options: dict[str, float],
                                                message: str) -> None:
    with pytest.raises(chat.ChatError, match=re.escape(message)):
        run_chat(monkeypatch, ScriptedBackend(scripted()), "", **options)



class Flaky(ScriptedBackend):
    """Streams `before` pieces, then fails as a dropped connection does, on its first try only."""

    def __init__(self, spec: ModelSpec, before: int) -> None:
        super().__init__(spec)
        self.before = before
        self.tries = 0

    def generate_stream(self, request: Request, on_text: TextSink) -> Generation:
        self.tries += 1
        if self.tries == 1:
            for piece in REPLY.split()[: self.before]:
                on_text(piece)
            raise RetryableError("connection reset")
        return super().generate_stream(request, on_text)


def test_a_stream_that_fails_before_any_text_is_retried_after_some_is_not() -> None:
    policy = CallPolicy(timeout_s=None, retries=2, backoff_s=0.0)
    early = Flaky(scripted(), before=0)
    pieces: list[str] = []
    assert ModelCall(early.spec, early, policy).generate(Request(prompt="x"), pieces.append).text == REPLY
    assert early.tries == 2 and "".join(pieces) == REPLY
    late = Flaky(scripted(), before=2)
    pieces.clear()
    with pytest.raises(BackendError, match=r"connection reset \(after part of the answer was shown: not retried\)"):
        ModelCall(late.spec, late, policy).generate(Request(prompt="x"), pieces.append)
    assert late.tries == 1 and pieces == ["Cats", "sleep"]
