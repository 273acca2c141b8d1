"""The batched decoder's prefix reuse against decoding from scratch (backends/llamacpp_decode.py).

A KV stream per slot: a finished sequence's prompt stays in its slot and a later prompt that
starts alike continues from it. With a sliding window (gemma 3), positions before the window's
reach may have been overwritten by then; reusing such a prefix would attend over cells that hold
other positions, so the decoder computes the prompt afresh there and says it reused nothing.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from support import requires_llamacpp

from harness.models.registry import DEFAULT_REGISTRY, load_registry

pytestmark = [requires_llamacpp, pytest.mark.slow]

STORY = " ".join(f"On day {i} the baker sold {i * 7 % 23} loaves and {i * 5 % 11} pies." for i in range(1, 200))


@pytest.fixture(scope="module")
def gemma() -> Iterator[Any]:
    from harness.backends.llamacpp import LlamaCppBackend

    spec = load_registry([DEFAULT_REGISTRY])["gemma3-270m-q4"]
    backend = LlamaCppBackend(dataclasses.replace(spec, options={**spec.options, "use_extra_bufts": False}))
    yield backend
    backend.close()


def decoder(backend: Any) -> Any:
    import llama_cpp

    from harness.backends.llamacpp_decode import BatchedDecoder

    vocab = llama_cpp.llama_model_get_vocab(backend.llm.model)
    return BatchedDecoder(backend.llm.model, n_vocab=backend.llm.n_vocab(), detokenize=backend.llm.detokenize,
                          is_end=lambda t: bool(llama_cpp.llama_vocab_is_eog(vocab, t)),
                          step_lock=threading.Lock(), slots=2, seq_ctx=2048, flash_attn=True)


def test_a_prefix_past_the_sliding_window_is_computed_again(gemma: Any) -> None:
    tokens = gemma._tokens(STORY, bos=True)
    long, short = tokens[:1500], tokens[:600] + gemma._tokens(" Question: how many pies on day 3?", bos=False)
    fresh = decoder(gemma)
    try:
        expected = fresh.submit(short, 12, ()).result()
    finally:
        fresh.close()
    assert fresh.n_swa > 0 and expected.reused == 0
    used = decoder(gemma)
    try:
        used.submit(long, 1, ()).result()  # 1500 positions: the window's layers kept only the last ~1024
        again = used.submit(short, 12, ()).result()
        assert again.reused == 0 and again.text == expected.text
        # Within the window, the prefix is reused, and decodes as from scratch.
        third = used.submit(short, 12, ()).result()
        assert third.reused == len(short) - 1 and third.text == expected.text
    finally:
        used.close()


def test_engine_rate_decodes_one_sequence_alone_and_leaves_the_batch_clean(gemma: Any) -> None:
    used = decoder(gemma)
    try:
        prompt = gemma._tokens("Question: What is 12 plus 30?\nAnswer:", bos=True)
        before = used.submit(prompt, 8, ()).result()
        seconds = used.time_decode(gemma._tokens(STORY, bos=True)[:256], 16)
        assert 0 < seconds < 120
        after = used.submit(prompt, 8, ()).result()
        assert after.text == before.text
    finally:
        used.close()


def test_a_sliding_window_model_decodes_with_flash_attention_whatever_is_asked(gemma: Any) -> None:
    from harness.backends.llamacpp_decode import decode_flash_attn

    assert decode_flash_attn(gemma.llm.model, False) is True  # its path without it decoded wrong text
    assert gemma.describe()["batch"] == {"slots": 8, "ctx_per_slot": 2048, "flash_attn": True}
