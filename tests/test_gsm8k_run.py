"""GSM8K end to end: the oracle, the three strategies on identical items, the router's edge
cases through scripted models, and a real router run through llama.cpp's server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from support import BenchRun

SAMPLE_ITEMS = 8  # fixtures/gsm8k/test.jsonl


def run(bench: BenchRun, *args: str) -> Any:
    return bench(*args, target="test_gsm8k.py")


def test_oracle_scores_every_sample_problem(bench: BenchRun) -> None:
    result = run(bench, "--models", "oracle")
    assert result.ret == 0, result.stdout.str()
    records = bench.records()
    assert len(records) == SAMPLE_ITEMS and all(r["correct"] for r in records)


def test_three_strategies_on_identical_items_with_a_comparison(bench: BenchRun) -> None:
    result = run(bench, "--models", "oracle", "--small-model", "oracle", "--large-model", "oracle",
                 "--samples", "3", "--seed", "5", "--run-id", "cmp")
    assert result.ret == 0, result.stdout.str()
    records = bench.records(bench.reports / "cmp")
    by_strategy = {s: sorted(r["item_id"] for r in records if r["strategy"] == s) for s in ("single", "delegate")}
    assert len(by_strategy["single"]) == 3 and by_strategy["single"] == by_strategy["delegate"]
    folder = bench.reports / "cmp" / "comparison" / "gsm8k"
    comparison = json.loads((folder / "comparison.json").read_text())
    assert comparison["common_items"] == 3
    assert set(comparison["variants"]) == {"single:oracle", "delegate:oracle+oracle"}
    assert comparison["variants"]["delegate:oracle+oracle"]["accuracy"] == 1.0
    assert (folder / "samples.csv").read_text().count("\n") == 4
    assert (folder / "comparison.png").stat().st_size > 5000


def scripted(tmp: Path, name: str, steps: list[Any]) -> str:
    script = tmp / f"{name}.json"
    script.write_text(json.dumps(steps))
    return f'[[models]]\nname = "{name}"\nbackend = "scripted"\nmodel = "script"\noptions = {{ script = "{script}" }}\n'


def test_router_errors_and_turn_limit_are_recorded(bench: BenchRun) -> None:
    tmp = bench.pytester.path
    call = {"tool_calls": [{"name": "ask_small_model", "arguments": {"task": "half of 10?"}}]}
    bad = {"tool_calls": [{"name": "ask_small_model", "arguments": "{task: 5"}]}
    registry = tmp / "scripted.toml"
    registry.write_text(scripted(tmp, "small", ["5"]) + scripted(tmp, "looping", [call])
                        + scripted(tmp, "broken", [bad, "The answer is 5."]))
    common = ["--models-file", str(registry), "--models", "small", "--samples", "1", "--router-max-turns", "3"]
    run(bench, *common, "--small-model", "small", "--large-model", "looping", "--run-id", "loop")
    [looped] = [r for r in bench.records(bench.reports / "loop") if r["strategy"] == "delegate"]
    assert looped["status"] == "wrong" and looped["stopped"] == "max_turns"
    assert len(looped["tool_calls"]) == 3 and looped["turns"] == 3
    assert looped["per_model"]["looping"]["calls"] == 3
    assert looped["per_model"]["small"]["calls"] == 3
    # -k: the script is the backend's state, so only the router case may consume it.
    result = run(bench, *common, "--small-model", "small", "--large-model", "broken", "--run-id", "bad",
                 "-k", "delegate")
    [broken] = [r for r in bench.records(bench.reports / "bad") if r["strategy"] == "delegate"]
    assert broken["status"] == "error" and "not valid JSON" in broken["error"] and broken["correct"] is None
    assert result.ret == 0  # an error result, not a crash


def test_real_router_run_through_the_llama_server(bench: BenchRun, llama_server: dict[str, Any]) -> None:
    registry = bench.pytester.path / "server.toml"
    registry.write_text(
        '[[models]]\nname = "gemma-server"\nbackend = "openai"\nmodel = "gemma3-270m"\n'
        f'options = {{ base_url = "{llama_server["base_url"]}", tokenize_url = "{llama_server["tokenize_url"]}" }}\n')
    result = run(bench, "--models-file", str(registry), "--models", "gemma-server", "--small-model", "gemma-server",
                 "--large-model", "gemma-server", "--samples", "1", "--gsm8k-max-tokens", "48",
                 "--router-max-turns", "2", "--run-id", "real")
    assert result.ret == 0, result.stdout.str()
    records = bench.records(bench.reports / "real")
    assert {r["strategy"] for r in records} == {"single", "delegate"}
    [routed] = [r for r in records if r["strategy"] == "delegate"]
    assert routed["status"] in ("ok", "wrong")
    # A 270M base model rarely calls a tool: the count is a measured outcome, recorded either way.
    assert isinstance(routed["tool_calls"], list) and routed["turns"] >= 1
    assert routed["usage"]["prompt_tokens"] > 0


def test_router_through_a_tool_calling_server_records_calls_and_transcripts(
        bench: BenchRun, tool_server: dict[str, Any]) -> None:
    """The router end to end on 4 GSM8K items, both models SmolLM2 behind llama-cpp-python's server
    (chatml-function-calling): the forced first call is a real, grammar-bound tool call, and each
    case records its calls and the conversation around them."""
    registry = bench.pytester.path / "server.toml"
    registry.write_text(
        '[[models]]\nname = "smol-server"\nbackend = "openai"\nmodel = "smollm2-135m"\nprompt_style = "chat"\n'
        f'options = {{ base_url = "{tool_server["base_url"]}", tokenize_url = "{tool_server["tokenize_url"]}", '
        'stream = "text" }\n')
    result = run(bench, "--models-file", str(registry), "--models", "smol-server", "--small-model", "smol-server",
                 "--large-model", "smol-server", "--samples", "4", "--seed", "0", "--router-tool-choice",
                 "required", "--router-max-turns", "3", "--gsm8k-max-tokens", "96", "-k", "delegate",
                 "--run-id", "tools")
    assert result.ret == 0, result.stdout.str()
    records = bench.records(bench.reports / "tools")
    assert len(records) == 4 and {r["strategy"] for r in records} == {"delegate"}
    for record in records:
        first = record["tool_calls"][0]
        # The forced first call always parses (a grammar from the tool's schema). Later turns are
        # the model's free choice: a malformed call there is its own, and the reason is recorded.
        assert first["name"] == "ask_small_model" and first["ok"] and first["turn"] == 1, first
        assert record["status"] in ("ok", "wrong", "error"), record["status"]
        if record["status"] == "error":
            failed = [c for c in record["tool_calls"] if not c["ok"]]
            assert failed and all(c["turn"] > 1 for c in failed)
            assert record["error"] == "tool call failed: " + "; ".join(c["result"] for c in failed)
        assert isinstance(json.loads(first["arguments"])["task"], str)
        transcript = record["transcript"]
        said = [c for m in transcript["messages"] for c in m["tool_calls"]]
        assert [(c["name"], c["arguments"]) for c in said] == [(c["name"], c["arguments"])
                                                               for c in record["tool_calls"]]
        roles = [m["role"] for m in transcript["messages"]]
        assert roles[:3] == ["system", "user", "assistant"] and "tool" in roles
        results = [m["content"] for m in transcript["messages"] if m["role"] == "tool"]
        assert results[0] == first["result"]  # what went back to the large model
        assert transcript["final"] == record["output"]
    answered = [m for r in records for m in r["transcript"]["messages"]
                if m["role"] == "assistant" and not m["tool_calls"]]
    assert answered  # the small model's answers and the final ones
