"""`-k` and `-m` without --models reach every registry model; what cannot run is skipped with
its reason (harness/run/selection.py, and end to end through the real benchmarks/)."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from fake_servers import send_json, send_ndjson, serve
from support import BenchRun

from harness.models.registry import DEFAULT_REGISTRY, load_registry
from harness.run.selection import select_by_expressions

REGISTRY = load_registry([DEFAULT_REGISTRY])
LARGE = {"codellama-7b", "qwen2.5-7b", "qwen2.5-14b", "qwen2.5-7b-fp32", "qwen2.5-7b-int8", "qwen2.5-14b-nf4",
         "qwen2.5-14b-int8", "llama3.1-8b", "llama3.1-70b", "mistral-7b", "qwq-32b", "deepseek-r1", "gpt-4o",
         # the replaced projects' own models (issue 12)
         "qwen2.5-coder-7b", "qwen2.5-32b", "qwen2.5-72b", "mistral-small"}


@pytest.fixture(autouse=True)
def no_ollama(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")  # a closed port: no server answers
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def names(keyword: str | None = None, markexpr: str | None = None) -> set[str] | None:
    chosen = select_by_expressions(REGISTRY, keyword, markexpr)
    return None if chosen is None else {m.name for m in chosen.models}


def test_a_model_name_in_k_selects_it_among_all_models() -> None:
    chosen = select_by_expressions(REGISTRY, "tinyllama", None)
    assert chosen is not None and [m.name for m in chosen.models] == ["tinyllama"]
    assert "no Ollama server answers" in chosen.unrunnable["tinyllama"]
    assert names("gemma3 and not hf") == {"gemma3-270m-q4", "gemma3-270m-server"}
    assert names("tinyllama or mistral") == {"tinyllama", "mistral-7b", "mistral-small"}


def test_words_the_registry_does_not_know_keep_a_model_possible() -> None:
    # "astronomy" may match any model's cases: it leaves the choice to the model words.
    assert names("tinyllama and astronomy") == {"tinyllama"}
    assert names("astronomy or tinyllama") is not None and "gemma3-270m-q4" in names("astronomy or tinyllama")
    # An expression naming no model keeps the default selection.
    assert names("astronomy") is None and names(None, "mmlu") is None and names(None, None) is None


def test_m_selects_by_model_markers_and_names_each_reason() -> None:
    assert names(None, "tier_large") == LARGE
    assert names(None, "tier_large and backend_ollama") == {"codellama-7b", "llama3.1-8b", "llama3.1-70b",
                                                            "mistral-7b", "qwq-32b", "qwen2.5-coder-7b",
                                                            "qwen2.5-32b", "qwen2.5-72b", "mistral-small"}
    assert names("qwen", "tier_large") == {n for n in LARGE if n.startswith("qwen")}
    chosen = select_by_expressions(REGISTRY, None, "tier_large")
    assert chosen is not None and set(chosen.unrunnable) == LARGE
    assert chosen.unrunnable["gpt-4o"] == "no API key: set OPENAI_API_KEY"
    assert "nor in the local Hugging Face cache" in chosen.unrunnable["qwen2.5-7b"]


def test_k_without_models_collects_the_model_and_skips_it_with_the_reason(bench: BenchRun) -> None:
    result = bench("-k", "tinyllama", "--mmlu-per-subject", "1", "-rs")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(skipped=4)
    result.stdout.fnmatch_lines(["*SKIPPED [[]4[]]*tinyllama: no Ollama server answers*"])


def test_m_tier_large_without_models_skips_each_model_with_its_reason(bench: BenchRun) -> None:
    result = bench("-m", "tier_large", "--mmlu-per-subject", "1", "-rs")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(skipped=4 * len(LARGE))
    out = result.stdout.str()
    assert all(f"{name}: " in out for name in LARGE)
    assert "gpt-4o: no API key" in out and "qwen2.5-14b: 'Qwen/Qwen2.5-14B-Instruct' is neither" in out


def test_plain_run_without_k_keeps_the_defaults(bench: BenchRun) -> None:
    result = bench("--collect-only", "-q", "-m", "mmlu", "--mmlu-per-subject", "1")
    ids = [line for line in result.stdout.lines if "::test_mmlu[" in line]
    # The default models: gemma (base) and smollm2 (chat), nothing else of the registry.
    assert ids and {line.split("[")[1].split("-")[0] for line in ids} == {"gemma3", "smollm2"}


def _chat(handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
    send_ndjson(handler, [
        {"model": "tinyllama:1.1b", "message": {"role": "assistant", "content": "The answer is B"}, "done": False},
        {"model": "tinyllama:1.1b", "message": {"role": "assistant", "content": ""}, "done": True,
         "done_reason": "stop", "prompt_eval_count": 50, "eval_count": 5},
    ])


def test_k_runs_the_model_when_a_server_lists_it(bench: BenchRun, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in Ollama server over loopback: tinyllama pulled, codellama not.
    tags = {"models": [{"name": "tinyllama:1.1b", "model": "tinyllama:1.1b"}]}
    routes = {"/api/tags": lambda h, b: send_json(h, tags), "/api/chat": _chat}
    with serve(routes) as (url, received):
        monkeypatch.setenv("OLLAMA_HOST", url)
        result = bench("-k", "tinyllama or codellama", "--mmlu-per-subject", "1", "-rs")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=4, skipped=4)
    result.stdout.fnmatch_lines(["*codellama-7b: model 'codellama:7b' is not pulled*"])
    records = bench.records()
    assert len(records) == 4 and {r["model"] for r in records} == {"tinyllama"}
    assert {r["prediction"] for r in records} == {"B"} and {r["mode"] for r in records} == {"generate"}
    assert sum(r["path"] == "/api/chat" for r in received) == 4
