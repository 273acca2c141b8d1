"""--resume RUN_ID: a run that crashed continues where it stopped; every case answered once."""

from __future__ import annotations

import json

import pytest
from support import BenchRun

from harness.commands.cli import main as harness_cli

TARGET = "test_extraction.py"
ROWS = 8



def test_a_crashed_run_resumes_where_it_stopped(bench: BenchRun, monkeypatch: pytest.MonkeyPatch) -> None:
    crashed = bench("--models", "oracle", *bench.crash_after(3, monkeypatch), "--run-id", "r1", target=TARGET)
    assert crashed.ret == 3
    run_dir = bench.reports / "r1"
    first = bench.records(run_dir)
    assert len(first) == 3 and not (run_dir / "summary.json").exists()

    resumed = bench("--models", "oracle", "--resume", "r1", target=TARGET)
    assert resumed.ret == 0, resumed.stdout.str()
    outcomes = resumed.parseoutcomes()
    assert (outcomes.get("skipped"), outcomes.get("passed")) == (3, 5)
    resumed.stdout.fnmatch_lines(["*harness scoreboard: run r1*"])
    records = bench.records(run_dir)
    case_ids = [r["case_id"] for r in records]
    assert len(records) == ROWS and len(set(case_ids)) == ROWS  # every case exactly once
    assert records[:3] == first  # the answered ones untouched
    assert {r["run_id"] for r in records} == {"r1"} and bench.run_dirs() == [run_dir]
    [row] = bench.summary(run_dir)["summary"]
    assert (row["items"], row["correct"]) == (ROWS, ROWS)
    # The suite's end-of-run outputs see the earlier attempt's answers too.
    metrics = (run_dir / "extraction" / "metrics.csv").read_text().splitlines()
    assert all(line.startswith("oracle,") and f",{ROWS},{ROWS}," in line for line in metrics[1:])
    assert len(bench.store_rows()) == ROWS

    # Resuming a finished run runs nothing and rewrites the same summaries.
    again = bench("--models", "oracle", "--resume", "r1", target=TARGET)
    assert again.ret == 0 and again.parseoutcomes().get("skipped") == ROWS
    assert len(bench.records(run_dir)) == ROWS


def test_resume_runs_errors_again_and_the_new_record_counts(bench: BenchRun) -> None:
    registry = bench.pytester.path / "scripted.toml"
    answer = '{"diagnose": "x", "medikation": "y", "dosierung": "z"}'
    # Two answers, then every further call fails: rows 3-8 are errors on the first attempt.
    registry.write_text('[[models]]\nname = "scripted"\nbackend = "scripted"\nmodel = "script"\n'
                        f"options = {{ steps = {json.dumps([answer, answer])}, then = \"error\" }}\n")
    args = ("--models-file", str(registry), "--models", "scripted")
    first = bench(*args, "--run-id", "flaky", target=TARGET)
    assert first.ret == 1  # errors fail their tests
    assert [r["status"] for r in bench.records()].count("error") == 6

    second = bench(*args, "--resume", "flaky", target=TARGET)
    assert second.parseoutcomes().get("skipped") == 2
    lines = bench.records()
    assert len(lines) == ROWS + 6  # the log keeps every attempt...
    [row] = bench.summary()["summary"]
    assert (row["items"], row["scored"], row["errors"]) == (ROWS, 4, 4)  # ...the latest one counts
    assert sorted(status for _, _, status in bench.store_rows()).count("error") == 4
    assert len(bench.store_rows()) == ROWS
    # `harness report` rebuilds the same summary from the log: the latest record of each case.
    assert harness_cli(["report", str(bench.run_dirs()[-1])]) == 0
    assert bench.summary()["summary"] == [row]


def test_resume_of_an_unknown_run_is_a_usage_error(bench: BenchRun) -> None:
    result = bench("--models", "oracle", "--resume", "no-such-run", target=TARGET)
    assert result.ret == 4
    assert "--resume no-such-run" in result.stderr.str() and "nothing to resume" in result.stderr.str()
    result = bench("--models", "oracle", "--resume", "a", "--run-id", "b", target=TARGET)
    assert result.ret == 4 and "name different runs" in result.stderr.str()
