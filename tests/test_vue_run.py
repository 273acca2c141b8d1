"""End-to-end runs of benchmarks/test_vue.py (pytester subprocesses): the oracle, a scripted agent
with repeats, and the real gemma model."""

from __future__ import annotations

import json

from support import BenchRun, requires_llamacpp
from vue_support import requires_vue_tools

from harness.suites import vue

ITEMS = {item.id: item for item in vue.load()}
CASES = ["cart-summary", "data-table", "item-list", "legacy-counter", "paged-list", "rating-input", "search-box",
         "todo-list", "user-card", "user-profile"]
TARGET = "src/components/UserCard.vue"


def test_modes_give_case_ids_and_a_bad_mode_stops_the_run(bench: BenchRun) -> None:
    result = bench("--models", "oracle", "--vue-mode", "single,agent", "--collect-only", "-q",
                   target="test_vue.py")
    ids = sorted(line.split("[")[1].rstrip("]") for line in result.stdout.lines if "::test_vue[" in line)
    assert ids == sorted([f"agent-oracle-{case}" for case in CASES] + [f"oracle-{case}" for case in CASES])
    bad = bench("--models", "oracle", "--vue-mode", "single,chat", "--collect-only", target="test_vue.py")
    assert bad.ret != 0 and "--vue-mode takes single and/or agent" in bad.stdout.str() + bad.stderr.str()


@requires_vue_tools
def test_the_oracle_scores_ten_on_every_case(bench: BenchRun) -> None:
    result = bench("--models", "oracle", target="test_vue.py")
    assert result.ret == 0, result.stdout.str()
    records = {r["item_id"]: r for r in bench.records()}
    assert sorted(records) == CASES
    for item_id, record in records.items():
        assert (record["status"], record["strategy"], record["mode"]) == ("ok", "single", "single")
        assert record["scores"]["score"] == 10.0 and record["scores"]["compiled"] == 1.0
        assert record["prediction"] == ITEMS[item_id].reference
        assert record["extra"]["compile_errors"] == [] and record["extra"]["component_found"]
    result.stdout.fnmatch_lines(["*harness scoreboard*", "*oracle*vue*single*10*1.000*"])


def _write(content: str) -> dict[str, object]:
    return {"tool_calls": [{"name": "write_file", "arguments": {"path": TARGET, "content": content}}]}


CHECK = {"tool_calls": [{"name": "run_type_check", "arguments": {}}]}
FINISH = {"tool_calls": [{"name": "finish", "arguments": {"summary": "done"}}]}


@requires_vue_tools
def test_a_scripted_agent_with_repeats_records_each_run_mean_and_spread(bench: BenchRun) -> None:
    reference = ITEMS["user-card"].reference
    broken = reference.replace("ref<boolean>(false)", "ref<boolean>('no')")
    typed_emits = "defineEmits<{\n  select: [id: number]\n  'toggle-details': [expanded: boolean]\n}>()"
    untyped_emits = reference.replace(typed_emits, "defineEmits(['select', 'toggle-details'])")
    assert broken != reference and untyped_emits != reference
    # Repeat 1 writes broken code, reads the error and fixes it; repeat 2 writes untyped emits and stops.
    script = bench.pytester.path / "agent.json"
    script.write_text(json.dumps([_write(broken), CHECK, _write(reference), CHECK, FINISH,
                                  _write(untyped_emits), FINISH]))
    registry = bench.pytester.path / "mine.toml"
    registry.write_text(f'[[models]]\nname = "scripted-agent"\nbackend = "scripted"\nmodel = "script"\n'
                        f'options = {{ script = "{script}", then = "error" }}\n')
    result = bench("--models-file", str(registry), "--models", "scripted-agent", "--vue-mode", "agent",
                   "--vue-repeats", "2", "-k", "user-card", target="test_vue.py")
    assert result.ret == 0, result.stdout.str()
    [record] = bench.records()
    assert record["case_id"].endswith("test_vue[agent-scripted-agent-user-card]")
    assert (record["strategy"], record["mode"], record["status"]) == ("agent", "agent", "ok")
    first, second = record["extra"]["repeats"]
    assert first["tools_used"] == ["write_file", "run_type_check", "write_file", "run_type_check", "finish"]
    # The transcript: both repeats' tool calls, each with its result (the type checker's output).
    calls = [c["name"] for m in record["transcript"]["messages"] for c in m["tool_calls"]]
    assert calls == first["tools_used"] + ["write_file", "finish"]
    results = [m for m in record["transcript"]["messages"] if m["role"] == "tool"]
    assert len(results) == 7 and [m["name"] for m in results][:2] == ["write_file", "run_type_check"]
    assert (first["self_corrected"], first["iterations_to_success"], first["final_score"]) == (True, 4, 10.0)
    assert (second["self_corrected"], second["tool_calls_count"]) == (False, 2)
    # The plan for the case reads the component first: neither repeat did.
    assert first["expected_tools"] == ["read_file", "write_file", "run_type_check", "finish"]
    assert first["followed_expected_tools"] is False and second["followed_expected_tools"] is False
    assert second["stopped"] == "finish_tool"
    low = round(10 * (4 + 6 * 11 / 13) / 10, 4)  # compiles; typed_emits (2 of 13) missing
    assert second["final_score"] == low and second["patterns"]["typed_emits"] == 0.0
    assert record["extra"]["scores"] == [10.0, low]
    assert record["scores"]["score"] == round((10.0 + low) / 2, 4)
    assert record["scores"]["score_stdev"] == round(abs(10.0 - low) / 2 ** 0.5, 4)
    assert record["scores"]["efficiency"] == round((4 / 5 + low / 10) / 2, 4)


@requires_llamacpp
@requires_vue_tools
def test_gemma_answers_one_case_and_gets_a_recorded_score(bench: BenchRun) -> None:
    result = bench("--models", "gemma3-270m-q4", "-k", "user-card", "--vue-max-tokens", "48",
                   target="test_vue.py")
    assert result.ret == 0, result.stdout.str()
    [record] = bench.records()
    assert record["status"] in ("ok", "wrong") and record["model"] == "gemma3-270m-q4"
    assert 0.0 <= record["scores"]["score"] <= 10.0 and "compiled" in record["scores"]
    assert 0 < record["usage"]["completion_tokens"] <= 48 and record["usage"]["source"] == "tokenizer"
    assert record["usage"]["prompt_tokens"] > 400  # the template with the whole original component
    assert record["output"] and record["extra"]["type_check_s"] > 0
