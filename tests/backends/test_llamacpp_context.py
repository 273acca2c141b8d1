"""A prompt longer than a llama.cpp model's context fails with an error that says so (llama_decode
itself only returns 1), and the run goes on."""

from __future__ import annotations

import dataclasses

import pytest

from harness.backends.base import BackendError, LoglikelihoodRequest
from harness.models.registry import DEFAULT_REGISTRY, load_registry

llama_cpp = pytest.importorskip("llama_cpp")


def test_a_prompt_past_the_context_names_its_length_and_the_option() -> None:
    from harness.backends.llamacpp import LlamaCppBackend

    spec = load_registry([DEFAULT_REGISTRY])["smollm2-135m"]
    spec = dataclasses.replace(spec, options={**spec.options, "n_ctx": 256, "use_extra_bufts": False})
    backend = LlamaCppBackend(spec)
    try:
        long = "The quick brown fox jumps over the lazy dog. " * 60
        with pytest.raises(BackendError, match=r"a prompt of (\d+) tokens does not fit the context of 256 "
                                               r"\(raise options.n_ctx"):
            backend.loglikelihood([LoglikelihoodRequest(long, " A")])
        # The model still answers a prompt that fits.
        short = backend.loglikelihood([LoglikelihoodRequest("Question: 2+2=\nAnswer:", " 4")])
        assert len(short.values) == 1 and short.values[0] < 0
    finally:
        backend.close()
