"""The controller's side of a run: run id to the workers, what they loaded back, loud report failures."""

from __future__ import annotations

import json

import pytest
from support import BenchRun, requires_llamacpp

BROKEN_REPORT = """
from harness.report.hooks import hookimpl

@hookimpl
def pytest_harness_report(run):
    raise RuntimeError("the plot library is gone")
"""


def metadata(bench: BenchRun, run: str) -> dict:
    return json.loads((bench.reports / run / "metadata.json").read_text())


def test_the_run_id_reaches_the_workers(bench: BenchRun) -> None:
    result = bench("--models", "oracle", "--samples", "4", "--run-id", "ids", "-n", "2")
    assert result.ret == 0, result.stdout.str()
    lines = (bench.reports / "ids" / "results.jsonl").read_text().splitlines()
    assert {json.loads(line)["run_id"] for line in lines} == {"ids"}  # built so on the workers


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_metadata_says_what_each_process_loaded(bench: BenchRun, workers: list[str]) -> None:
    result = bench("--models", "oracle", "--samples", "4", "--run-id", "loaded", *workers)
    assert result.ret == 0, result.stdout.str()
    # Before: under -n the workers' backends never reached metadata.json.
    backends = metadata(bench, "loaded")["backends"]
    assert backends["oracle"]["backend"] == "oracle"
    assert backends["oracle"]["processes"] == (2 if workers else 1)


def test_a_failing_report_fails_the_run_loudly(bench: BenchRun, monkeypatch: pytest.MonkeyPatch) -> None:
    (bench.pytester.path / "brokenreport.py").write_text(BROKEN_REPORT)
    monkeypatch.setenv("PYTHONPATH", str(bench.pytester.path))
    result = bench("--models", "oracle", "--samples", "3", "--run-id", "loud", "-p", "brokenreport")
    assert result.ret == 1  # every case passed; the report's failure fails the run
    result.stdout.fnmatch_lines(["*report brokenreport failed: RuntimeError: the plot library is gone*"])
    # The summaries and the other reports are still written.
    assert (bench.reports / "loud" / "summary.json").is_file()
    assert (bench.reports / "loud" / "comparison" / "mmlu" / "comparison.json").is_file()


@requires_llamacpp
@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_llamacpp_reports_its_effective_settings(bench: BenchRun, workers: list[str]) -> None:
    result = bench("--models", "gemma3-270m-q4", "--samples", "2", "--run-id", "gemma", *workers)
    assert result.ret == 0, result.stdout.str()
    described = metadata(bench, "gemma")["backends"]["gemma3-270m-q4"]
    # The silent-fallback check is there in parallel runs too, with what a reader needs to see
    # why two runs of the same weights answered differently.
    assert described["quantization_asked"] == described["quantization_in_effect"] == "q4_k_m"
    assert described["n_ctx"] == 4096 and described["n_ubatch"] == 128 and described["n_batch"] == 512
    assert described["flash_attn"] in (True, "auto") and described["n_threads"] >= 1
    assert described["sampling"]["top_k"] == 40 and described["llama_cpp_python"]
