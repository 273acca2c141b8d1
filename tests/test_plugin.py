"""End-to-end runs of the plugin over the real benchmarks/ modules (pytester subprocesses)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from support import BenchRun, requires_llamacpp

SAMPLE_ITEMS = 32  # fixtures/mmlu: 4 subjects x 8 test questions


def test_oracle_scores_every_sample_item_right(bench: BenchRun) -> None:
    result = bench("--models", "oracle")
    assert result.ret == 0, result.stdout.str()
    records = bench.records()
    assert len(records) == SAMPLE_ITEMS
    assert {r["status"] for r in records} == {"ok"}
    assert all(r["prediction"] == r["reference"] for r in records)
    # The monitor's window of each case keeps user and system CPU time apart (issue 25).
    for r in records:
        res = r["resources"]
        assert res["cpu_user_s"] >= 0 and res["cpu_system_s"] >= 0
        assert res["cpu_s"] == pytest.approx(res["cpu_user_s"] + res["cpu_system_s"])
    [row] = bench.summary()["summary"]
    assert (row["model"], row["suite"], row["accuracy"], row["errors"]) == ("oracle", "mmlu", 1.0, 0)
    result.stdout.fnmatch_lines(["*harness scoreboard*", "*oracle*mmlu*1.000*"])
    # Every record is in the default SQLite store too, under the same run id.
    rows = bench.store_rows()
    assert len(rows) == SAMPLE_ITEMS and {r[0] for r in rows} == {records[0]["run_id"]}


def test_oracle_generation_mode_extracts_letters(bench: BenchRun) -> None:
    result = bench("--models", "oracle", "--mmlu-mode", "generate", "--samples", "5")
    assert result.ret == 0, result.stdout.str()
    records = bench.records()
    assert len(records) == 5
    assert {r["mode"] for r in records} == {"generate"} and all(r["correct"] for r in records)


def test_test_ids_name_the_model_and_item(bench: BenchRun) -> None:
    result = bench("--models", "oracle", "--collect-only", "-q")
    assert "test_mmlu.py::test_mmlu[oracle-astronomy-0]" in result.stdout.str()


def test_k_selects_by_model_and_subject(bench: BenchRun) -> None:
    result = bench("--models", "all,oracle", "--collect-only", "-q", "-k", "oracle and nutrition")
    ids = [line for line in result.stdout.lines if "::test_mmlu[" in line]
    assert len(ids) == 8
    assert all("[oracle-nutrition-" in line for line in ids)


def test_m_selects_by_tier_and_backend(bench: BenchRun) -> None:
    result = bench("--models", "all", "--collect-only", "-q", "-m", "tier_7b", "--mmlu-per-subject", "1")
    models = {line.split("[")[1].rsplit("-", 2)[0] for line in result.stdout.lines if "::test_mmlu[" in line}
    assert models == {"mistral-7b", "llama3.1-8b", "qwen2.5-7b"}  # the extraction project's 7b tier
    result = bench("--models", "all,oracle", "--collect-only", "-q", "-m", "backend_oracle and mmlu")
    assert sum("[oracle-" in line for line in result.stdout.lines) == SAMPLE_ITEMS


def test_models_selects_by_tier(bench: BenchRun) -> None:
    result = bench("--models", "thinking", "--collect-only", "-q", "--mmlu-per-subject", "1")
    models = {line.split("[")[1].rsplit("-", 2)[0] for line in result.stdout.lines if "::test_mmlu[" in line}
    assert models == {"qwq-32b", "deepseek-r1"}


def test_unknown_model_exits_4_naming_it(bench: BenchRun) -> None:
    result = bench("--models", "no-such-model")
    assert result.ret == 4
    assert "no-such-model" in result.stderr.str()
    assert "unknown model or tier" in result.stderr.str()


def test_samples_and_seed_pick_the_same_items_for_every_model(bench: BenchRun) -> None:
    result = bench("--models", "oracle,gemma3-270m-q4", "--samples", "6", "--seed", "7",
                   "--collect-only", "-q")
    ids = [line.split("[")[1] for line in result.stdout.lines if "::test_mmlu[" in line]
    oracle = sorted(i.removeprefix("oracle-") for i in ids if i.startswith("oracle-"))
    gemma = sorted(i.removeprefix("gemma3-270m-q4-") for i in ids if i.startswith("gemma3-270m-q4-"))
    assert len(oracle) == 6 and oracle == gemma
    other = bench("--models", "oracle", "--samples", "6", "--seed", "8", "--collect-only", "-q")
    assert sorted(line for line in other.stdout.lines if "::test_mmlu[" in line) != sorted(
        line for line in result.stdout.lines if "::test_mmlu[oracle" in line)


def test_settings_resolve_cli_over_environment(bench: BenchRun, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_SAMPLES", "3")
    monkeypatch.setenv("HARNESS_MODELS", "oracle")
    from_env = bench("--collect-only", "-q")
    assert sum("::test_mmlu[" in line for line in from_env.stdout.lines) == 3
    from_cli = bench("--samples", "5", "--collect-only", "-q")
    assert sum("::test_mmlu[" in line for line in from_cli.stdout.lines) == 5


def test_junit_xml_carries_the_case_properties(bench: BenchRun) -> None:
    xml = bench.pytester.path / "junit.xml"
    result = bench("--models", "oracle", "--samples", "3", f"--junitxml={xml}")
    assert result.ret == 0
    cases = ET.parse(xml).getroot().findall(".//testcase")
    assert len(cases) == 3
    for testcase in cases:
        props = {p.get("name"): p.get("value") for p in testcase.findall("./properties/property")}
        assert props["correct"] == "True" and props["status"] == "ok"
        assert float(props["latency_s"]) > 0
        assert props["score_accuracy"] == "1.0"
        record = json.loads(props["harness_record"])
        assert record["model"] == "oracle" and record["item_id"] in testcase.get("name")


def test_xdist_gives_the_same_records_as_a_serial_run(bench: BenchRun) -> None:
    serial = bench("--models", "oracle", "--run-id", "serial")
    parallel = bench("--models", "oracle", "--run-id", "parallel", "-n", "2")
    assert serial.ret == parallel.ret == 0
    parallel.stdout.fnmatch_lines(["*harness scoreboard*"])

    def essence(run: str) -> set[tuple[object, ...]]:
        return {(r["case_id"], r["model"], r["prediction"], r["correct"], r["status"])
                for r in bench.records(bench.reports / run)}

    assert len(essence("serial")) == SAMPLE_ITEMS
    assert essence("serial") == essence("parallel")
    summary = bench.summary(bench.reports / "parallel")
    assert summary["metadata"]["workers"] == 2


def test_a_model_that_fails_to_load_is_an_error_not_a_wrong_answer(bench: BenchRun) -> None:
    # The file is there (so the model can run, as far as the registry can tell) but is no GGUF:
    # loading fails in the model's host, and each case is an error. (A model named with --models
    # that cannot run at all stops the run: see the test below.)
    weights = bench.pytester.path / "model.gguf"
    weights.write_bytes(b"not a gguf file" * 64)
    registry = bench.pytester.path / "mine.toml"
    registry.write_text(f'[[models]]\nname = "broken"\nbackend = "llamacpp"\nmodel = "{weights}"\n'
                        'tiers = ["1b"]\n')
    result = bench("--models-file", str(registry), "--models", "broken", "--samples", "2")
    assert result.ret == 1, result.stdout.str()
    records = bench.records()
    assert len(records) == 2
    assert {r["status"] for r in records} <= {"error", "crash"}
    assert all(r["correct"] is None and r["error"] for r in records)
    [row] = bench.summary()["summary"]
    assert row["errors"] == 2 and row["scored"] == 0


def test_no_runnable_model_is_a_usage_error(bench: BenchRun) -> None:
    registry = bench.pytester.path / "mine.toml"
    # Override the embedded defaults with ones that cannot run here.
    registry.write_text('[[models]]\nname = "gemma3-270m-q4"\nbackend = "llamacpp"\n'
                        'model = "/nonexistent/model.gguf"\ndefault = true\n'
                        '[[models]]\nname = "smollm2-135m"\nbackend = "llamacpp"\n'
                        'model = "/nonexistent/smollm2.gguf"\ndefault = true\n')
    result = bench("--models-file", str(registry))
    assert result.ret != 0
    assert "no model selected" in result.stdout.str() + result.stderr.str()
    assert "/nonexistent/model.gguf" in result.stdout.str() + result.stderr.str()


@requires_llamacpp
def test_llamacpp_records_tokens_and_timings(bench: BenchRun) -> None:
    result = bench("--models", "gemma3-270m-q4", "--mmlu-per-subject", "1")
    assert result.ret == 0, result.stdout.str()
    records = bench.records()
    assert len(records) == 4
    for r in records:
        assert r["status"] in ("ok", "wrong") and r["mode"] == "loglikelihood"
        assert r["prediction"] in ("A", "B", "C", "D")
        assert r["usage"]["prompt_tokens"] > 20 and r["usage"]["source"] == "tokenizer"
        assert r["timings"]["model_s"] > 0 and r["timings"]["wall_s"] >= r["timings"]["model_s"]


@requires_llamacpp
def test_llamacpp_generation_mode_and_fail_on_wrong(bench: BenchRun) -> None:
    result = bench("--models", "gemma3-270m-q4", "--mmlu-per-subject", "2", "--mmlu-mode", "generate",
                   "--fail-on-wrong")
    records = bench.records()
    assert len(records) == 8
    for r in records:
        assert r["mode"] == "generate" and r["usage"]["completion_tokens"] > 0
        assert r["timings"]["first_token_s"] is not None and r["timings"]["first_token_s"] > 0
    wrong = sum(r["status"] == "wrong" for r in records)
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == wrong
    assert outcomes.get("passed", 0) == 8 - wrong




def test_a_crash_mid_run_loses_no_answered_case(bench: BenchRun, monkeypatch: pytest.MonkeyPatch) -> None:
    result = bench("--models", "oracle", *bench.crash_after(5, monkeypatch), "--run-id", "crashed")
    assert result.ret == 3
    run_dir = bench.reports / "crashed"
    assert not (run_dir / "summary.json").exists()
    records = bench.records(run_dir)
    assert len(records) == 5 and all(r["status"] == "ok" for r in records)
    assert [row[1] for row in bench.store_rows()] == sorted(r["case_id"] for r in records)


def test_a_named_model_that_cannot_run_stops_the_run_before_any_case(
        bench: BenchRun, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = bench("--models", "oracle,gpt-4o")
    assert result.ret == 4
    errors = [line for line in result.stderr.lines if line.strip()]
    assert errors == ["ERROR: model 'gpt-4o' cannot run here: no API key: set OPENAI_API_KEY"]
    assert bench.run_dirs() == [] or bench.records() == []


def test_tier_models_that_cannot_run_are_skipped_with_their_reason(
        bench: BenchRun, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    result = bench("--models", "api,oracle", "--mmlu-per-subject", "1", "-rs")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=4, skipped=12)
    result.stdout.fnmatch_lines(["SKIPPED [[]4[]] *deepseek-r1: no API key: set DEEPSEEK_API_KEY",
                                 "SKIPPED [[]4[]] *gpt-4o-mini: no API key: set OPENAI_API_KEY"])
    assert {r["model"] for r in bench.records()} == {"oracle"}


def test_show_answers_prints_each_case_as_it_runs(bench: BenchRun) -> None:
    result = bench("--models", "oracle", "--mmlu-per-subject", "1", "--show-answers")
    assert result.ret == 0, result.stdout.str()
    lines = [line for line in result.stdout.lines if line.startswith("[oracle] ")]
    assert len(lines) == 4
    assert all(" | answer " in line and line.endswith(": right") for line in lines)
    records = {r["item_id"]: r for r in bench.records()}
    for line in lines:
        item_id = line.removeprefix("[oracle] ").split(":", 1)[0]
        assert f"| answer {records[item_id]['reference']}, reference {records[item_id]['reference']}: right" in line
    quiet = bench("--models", "oracle", "--mmlu-per-subject", "1")
    assert not [line for line in quiet.stdout.lines if line.startswith("[oracle] ")]


def test_mmlu_subjects_takes_presets(bench: BenchRun) -> None:
    from pathlib import Path

    real = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mmlu"
    if not real.is_dir():
        pytest.skip(f"the MMLU CSVs are not at {real}")
    result = bench("--models", "oracle", "--collect-only", "-q", "--mmlu-data", str(real), "--mmlu-split", "val",
                   "--mmlu-subjects", "baseline,astronomy", "--mmlu-per-subject", "2")
    ids = [line.split("[")[1].rstrip("]") for line in result.stdout.lines if "::test_mmlu[" in line]
    assert ids == ["oracle-abstract_algebra-0", "oracle-abstract_algebra-1", "oracle-anatomy-0", "oracle-anatomy-1",
                   "oracle-astronomy-0", "oracle-astronomy-1"]
