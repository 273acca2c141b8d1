"""The engine's own speed (backends/engine_rate.py) and the run's share of it (report/engine_share.py).

The scripted double plays an engine whose measurement takes given seconds (`options.engine_rate`),
so its rates are known exactly: 256 prompt tokens in 0.5 s are 512 tokens/s, 32 decode steps in
0.25 s are 128 tokens/s.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import requires_llamacpp

from harness.backends import engine_rate as engine_rate_module
from harness.backends.engine_rate import RATES_FILE, engine_rate
from harness.backends.hosted import HostedBackend
from harness.backends.scripted import ScriptedBackend
from harness.core.record import CaseRecord
from harness.models.registry import DEFAULT_REGISTRY, ModelSpec, load_registry
from harness.report.aggregate import summarize
from harness.report.engine_share import engine_lines, with_engine
from harness.report.hooks import RunData
from harness.report.html import render
from harness.report.tables import resources_table
from harness.report.write import write_summary

SCRIPTED = ModelSpec(name="engine", backend="scripted", model="script", host=True,
                     options={"steps": ["yes"], "engine_rate": [0.5, 0.25]})


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache folder of the test's own, seen by this process and by the hosts it starts."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "llm-bench-harness" / RATES_FILE


def test_measured_once_then_read_from_the_cache(cache: Path) -> None:
    backend = ScriptedBackend(SCRIPTED)
    before = engine_rate_module.measurements
    first = engine_rate(backend, SCRIPTED.model)
    second = engine_rate(backend, SCRIPTED.model)
    assert engine_rate_module.measurements == before + 1  # the second came from the cache folder
    assert (first["cached"], second["cached"]) == (False, True)
    assert first["prompt_tokens_per_s"] == second["prompt_tokens_per_s"] == 512.0
    assert first["decode_tokens_per_s"] == second["decode_tokens_per_s"] == 128.0
    saved = json.loads(cache.read_text())
    (key,) = saved
    assert key.startswith("script|library scripted|threads 1|cpu ")


def test_a_second_host_reads_the_rate_the_first_measured(cache: Path) -> None:
    first = HostedBackend(SCRIPTED)
    try:
        described = first.describe()
    finally:
        first.close()
    rate = described["engine_rate"]
    assert rate["measured"] is True and rate["prompt_tokens_per_s"] == 512.0 and rate["decode_tokens_per_s"] == 128.0
    assert described["host"]["engine_rate_cached"] is False
    measured_at = json.loads(cache.read_text())
    second = HostedBackend(SCRIPTED)  # a new host process: nothing of the first in its memory
    try:
        again = second.describe()
    finally:
        second.close()
    assert again["host"]["engine_rate_cached"] is True
    assert again["engine_rate"] == rate  # the same measurement: its time and cost too
    assert json.loads(cache.read_text()) == measured_at


def test_a_server_is_said_unmeasured_not_given_a_rate(cache: Path) -> None:
    plain = ScriptedBackend(ModelSpec(name="remote", backend="scripted", model="script"))
    rate = engine_rate(plain, "script")
    assert rate["measured"] is False and "not measured" in rate["why"]
    assert not cache.exists()


def _record(case: int, model: str, prompt: int, completion: int, model_s: float, decode_s: float,
            decode_tokens: int) -> CaseRecord:
    usage = {"calls": 1, "prompt_tokens": prompt, "completion_tokens": completion, "model_s": model_s,
             "decode_s": decode_s, "decode_tokens": decode_tokens}
    return CaseRecord(run_id="r", case_id=f"t[{model}-{case}]", suite="gsm8k", item_id=str(case), model=model,
                      backend="llamacpp", usage={"prompt_tokens": prompt, "completion_tokens": completion},
                      timings={"wall_s": model_s, "model_s": model_s}, per_model={model: usage})


METADATA = {"run_id": "r", "backends": {
    "local": {"backend": "llamacpp", "engine_rate": {"measured": True, "prompt_tokens_per_s": 500.0,
                                                     "decode_tokens_per_s": 80.0, "prompt_tokens": 256,
                                                     "decode_tokens": 32, "engine_threads": 2,
                                                     "measured_at": "2026-12-05T12:00:00+00:00"}},
    "api": {"backend": "openai", "engine_rate": {"measured": False, "why": "api: a server's engine"}}}}
# local: 400 prompt tokens in 2 x 0.5 s to the first token (400 tokens/s, 80% of 500); 60 tokens
# after the first in 2 x 0.75 s (40 tokens/s, 50% of 80). api: the same figures, no engine.
RECORDS = [_record(i, m, 200, 31, 1.25, 0.75, 30) for m in ("local", "api") for i in range(2)]


def test_the_share_is_the_run_rate_over_the_engine_rate() -> None:
    rows = {row.model: row for row in with_engine(summarize(RECORDS), METADATA)}
    local, api = rows["local"], rows["api"]
    assert local.prompt_tokens_per_s == pytest.approx(400.0)
    assert local.completion_tokens_per_s == pytest.approx(40.0)
    assert (local.engine_prompt_tokens_per_s, local.engine_decode_tokens_per_s) == (500.0, 80.0)
    assert local.prompt_engine_share == pytest.approx(0.8)
    assert local.decode_engine_share == pytest.approx(0.5)
    assert api.prompt_tokens_per_s == pytest.approx(400.0)  # the run's own rate, whatever the engine
    assert (api.engine_prompt_tokens_per_s, api.prompt_engine_share, api.decode_engine_share) == (None, None, None)


def test_the_tables_show_the_share_and_say_why_none(tmp_path: Path) -> None:
    rows = write_summary(tmp_path, RECORDS, METADATA)
    text = resources_table(rows)
    header = text.splitlines()[0]
    for column in ("in tok/s", "engine in", "% engine in", "out tok/s", "engine out", "% engine out"):
        assert column in header
    local = next(line for line in text.splitlines() if line.startswith("local"))
    assert local.split()[-6:] == ["400.0", "500.0", "80%", "40.0", "80.0", "50%"]
    summary = (tmp_path / "summary.md").read_text()
    assert "| % engine in |" in summary and "| 80% |" in summary
    assert "- local: 500.0 prompt tokens/s, 80.0 decode tokens/s (256-token prompt, 32 greedy steps, 2 threads" \
        in summary
    assert "- api: not measured (api: a server's engine)" in summary
    assert json.loads((tmp_path / "metadata.json").read_text())["backends"]["local"]["engine_rate"][
        "prompt_tokens_per_s"] == 500.0
    page = render(RunData.of(tmp_path, RECORDS, METADATA))
    assert "prompt speed (% of engine)" in page and "80%" in page and "50%" in page
    assert engine_lines(METADATA)[1] in page


@requires_llamacpp
def test_llamacpp_measures_its_engine_once(cache: Path) -> None:
    spec = load_registry([DEFAULT_REGISTRY])["smollm2-135m"]
    first = HostedBackend(spec)
    try:
        rate = first.describe()["engine_rate"]
    finally:
        first.close()
    assert rate["measured"] is True and rate["prompt_tokens"] == 256 and rate["decode_tokens"] == 32
    # A prompt evaluates in batches, faster per token than greedy steps one at a time (a busy
    # 2-core machine decodes a 135M model at under a token a second: no floor is asserted).
    assert rate["prompt_tokens_per_s"] > rate["decode_tokens_per_s"] > 0
    assert rate["engine_library"].startswith("llama-cpp-python ")
    # In a host, greedy text goes through the batched decoder: its decode is the one measured
    # (with the model's flash attention, as the serial path).
    assert rate["engine_decode"] == "batch streams, flash_attn True"
    assert 0 < rate["measure_s"] < 600
    second = HostedBackend(spec)
    try:
        again = second.describe()
    finally:
        second.close()
    assert again["host"]["engine_rate_cached"] is True and again["engine_rate"] == rate


def test_transformers_decodes_on_its_cache() -> None:
    """One forward pass over the prompt, then one token per step with the cache passed back: a
    decode that recomputed the prompt each step would measure something else."""
    transformers = pytest.importorskip("transformers")
    from harness.backends.transformers import TransformersBackend

    config = transformers.LlamaConfig(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512)
    backend = object.__new__(TransformersBackend)  # a tiny random model: no files, no tokenizer
    backend.model = transformers.LlamaForCausalLM(config).eval()
    backend.device = "cpu"
    backend._ids = lambda text, special=True: [i % 1000 for i in range(len(text.split()))]  # type: ignore[method-assign]
    seen: list[tuple[int, bool]] = []

    def note(module: object, args: tuple[object, ...], kwargs: dict[str, object]) -> None:
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        seen.append((int(kwargs["input_ids"].shape[1]), cache is not None))  # type: ignore[attr-defined]

    backend.model.register_forward_pre_hook(note, with_kwargs=True)
    prompt_s, decode_s = backend.measure_engine_rate(256, 32)
    assert prompt_s > 0 and decode_s > 0
    assert seen == [(256, False)] + [(1, True)] * 32
