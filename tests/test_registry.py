"""models.toml parsing, user overrides, selection by name and tier, and availability."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.models.registry import (
    DEFAULT_REGISTRY,
    RegistryError,
    availability,
    choose,
    create_backend,
    load_registry,
    marker_safe,
    select,
)

REQUIRED = {"gemma3-270m-q4", "oracle", "tinyllama", "codellama-7b", "qwen2.5-0.5b", "qwen2.5-1.5b",
            "qwen2.5-3b", "qwen2.5-7b", "qwen2.5-14b", "llama3.2-1b", "llama3.2-3b", "llama3.1-8b",
            "llama3.1-70b", "mistral-7b", "phi3.5-mini", "qwq-32b", "deepseek-r1", "gpt-4o", "gpt-4o-mini",
            "smollm2-135m", "qwen2.5-math-1.5b", "qwen2.5-coder-7b", "qwen2.5-32b", "mistral-small", "qwen2.5-72b"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return path


def test_shipped_registry_has_the_replaced_projects_models() -> None:
    models = load_registry([DEFAULT_REGISTRY])
    assert REQUIRED <= set(models)
    assert models["gemma3-270m-q4"].default and models["gemma3-270m-q4"].backend == "llamacpp"
    assert {"thinking"} <= set(models["qwq-32b"].tiers) and {"thinking"} <= set(models["deepseek-r1"].tiers)
    assert models["gpt-4o"].price_in == 2.5 and models["gpt-4o"].price_out == 10.0
    # The default run compares a base model and a chat model, both shipped on PyPI.
    assert [n for n, m in models.items() if m.default] == ["gemma3-270m-q4", "smollm2-135m"]
    assert (models["smollm2-135m"].prompt_style, models["smollm2-135m"].tiers) == ("chat", ("135m", "small"))
    assert models["qwen2.5-coder-7b"].model == "qwen2.5-coder:7b-instruct-q8_0"


def test_user_file_overrides_and_extends(tmp_path: Path) -> None:
    mine = write(tmp_path, '[[models]]\nname = "gpt-4o"\nbackend = "openai"\nmodel = "gpt-4o-2024-08-06"\n'
                           'tiers = ["api"]\nprice_in = 2.0\n\n'
                           '[[models]]\nname = "my-model"\nbackend = "llamacpp"\nmodel = "/m.gguf"\n')
    models = load_registry([DEFAULT_REGISTRY, mine])
    assert models["gpt-4o"].model == "gpt-4o-2024-08-06" and models["gpt-4o"].price_in == 2.0
    assert models["my-model"].backend == "llamacpp"
    assert len(models) == len(load_registry([DEFAULT_REGISTRY])) + 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[models]]\nname = "x"\nbackend = "vllm"\nmodel = "m"\n', "unknown backend 'vllm'"),
        ('[[models]]\nname = "x"\nbackend = "oracle"\n', "field 'model' is required"),
        ('[[models]]\nname = "x"\nbackend = "oracle"\nmodel = "m"\ncolour = 1\n', "unknown field(s) ['colour']"),
        ('[[models]]\nname = "x"\nbackend = "oracle"\nmodel = "m"\nprompt_style = "poem"\n', "prompt_style"),
        ('[[models]\nname = "x"\n', "not valid TOML"),
    ],
)
def test_bad_registry_names_file_and_model(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RegistryError) as err:
        load_registry([path])
    assert str(path) in str(err.value) and message in str(err.value)


def test_missing_registry_file(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="not found"):
        load_registry([tmp_path / "nope.toml"])


def test_select_by_name_tier_and_all() -> None:
    models = load_registry([DEFAULT_REGISTRY])
    assert [m.name for m in select(models, ["oracle"])] == ["oracle"]
    assert {m.name for m in select(models, ["70b"])} == {"llama3.1-70b", "qwen2.5-72b"}
    assert {m.name for m in select(models, ["api"])} == {"deepseek-r1", "gpt-4o", "gpt-4o-mini"}
    assert {m.name for m in select(models, ["oracle", "api", "gpt-4o"])} == {
        "oracle", "deepseek-r1", "gpt-4o", "gpt-4o-mini"}
    everything = select(models, ["all"])
    assert {m.name for m in everything} == {n for n, m in models.items() if m.backend not in ("oracle", "scripted")}
    assert "oracle" not in {m.name for m in everything} and len(everything) == len(models) - 1
    assert select(models, ["test"]) == []  # nor by its tier


def test_unknown_model_or_tier_is_named() -> None:
    models = load_registry([DEFAULT_REGISTRY])
    with pytest.raises(RegistryError, match="unknown model or tier 'gpt-5'"):
        select(models, ["oracle", "gpt-5"])


def test_default_selection_is_what_runs_here() -> None:
    models = load_registry([DEFAULT_REGISTRY])
    expected = [name for name in ("gemma3-270m-q4", "smollm2-135m") if availability(models[name]) is None]
    assert [m.name for m in select(models, None)] == expected


def test_availability_explains_what_cannot_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")  # a closed port: no server answers
    models = load_registry([DEFAULT_REGISTRY, write(tmp_path, '[[models]]\nname = "gone"\nbackend = "llamacpp"\n'
                                                               'model = "/nonexistent.gguf"\n')])
    assert availability(models["oracle"]) is None
    assert "no Ollama server answers at http://127.0.0.1:9" in str(availability(models["tinyllama"]))
    reason = availability(models["gone"])
    assert reason is not None and "/nonexistent.gguf" in reason
    with pytest.raises(RegistryError, match="cannot run here"):
        create_backend(models["gone"])


def test_markers_and_cost() -> None:
    models = load_registry([DEFAULT_REGISTRY])
    assert marker_safe("0.5b") == "tier_0_5b".removeprefix("tier_")
    assert models["qwen2.5-0.5b"].markers == ["tier_0_5b", "tier_small", "backend_transformers"]
    # 1M input tokens at $2.50 and 100k output tokens at $10 per million.
    assert models["gpt-4o"].cost(1_000_000, 100_000) == pytest.approx(3.5)


# The extraction project's tiers, by its own names (issue 25).
ORIGINAL_TIERS = {
    "3b": {"llama3.2-3b", "qwen2.5-3b", "phi3.5-mini"},
    "7b": {"mistral-7b", "llama3.1-8b", "qwen2.5-7b"},
    "30b": {"qwen2.5-32b", "mistral-small"},
    "70b": {"llama3.1-70b", "qwen2.5-72b"},
    "thinking": {"qwq-32b", "deepseek-r1"},
}


@pytest.mark.parametrize("tier", sorted(ORIGINAL_TIERS))
def test_tiers_hold_the_original_members(tier: str) -> None:
    models = load_registry([DEFAULT_REGISTRY])
    assert {m.name for m in select(models, [tier])} == ORIGINAL_TIERS[tier]


def test_large_tiers_load_in_nf4_or_say_why() -> None:
    models = load_registry([DEFAULT_REGISTRY])
    for tier in ("7b", "30b", "70b", "thinking"):
        for name in ORIGINAL_TIERS[tier]:
            spec = models[name]
            assert spec.quantization == "nf4" or "NF4" in spec.note, (name, spec.quantization, spec.note)
    assert models["qwen2.5-7b"].quantization == "nf4" and models["qwen2.5-7b"].note == ""
    assert "Ollama" in models["mistral-small"].note and "API" in models["deepseek-r1"].note


def test_choose_skips_tier_models_that_cannot_run_and_stops_on_a_named_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")  # a closed port: no server answers
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    models = load_registry([DEFAULT_REGISTRY])
    chosen = choose(models, ["api", "oracle"])
    assert [m.name for m in chosen.models] == ["deepseek-r1", "gpt-4o", "gpt-4o-mini", "oracle"]
    assert chosen.unrunnable == {"deepseek-r1": "no API key: set DEEPSEEK_API_KEY",
                                 "gpt-4o": "no API key: set OPENAI_API_KEY",
                                 "gpt-4o-mini": "no API key: set OPENAI_API_KEY"}
    everything = choose(models, ["all"])
    assert "oracle" not in {m.name for m in everything.models}
    assert set(everything.unrunnable) <= {m.name for m in everything.models}
    assert "no Ollama server answers" in everything.unrunnable["mistral-7b"]
    with pytest.raises(RegistryError) as err:
        choose(models, ["oracle", "gpt-4o"])
    assert str(err.value) == "model 'gpt-4o' cannot run here: no API key: set OPENAI_API_KEY"
    assert choose(models, ["oracle"]).unrunnable == {}
