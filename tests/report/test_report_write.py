"""The run's files: results.jsonl written and read back, summaries rendered and re-rendered."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from harness.core.record import CaseRecord
from harness.report.aggregate import summarize
from harness.report.tables import markdown, scoreboard
from harness.report.write import ResultsLog, read_results, render_run, write_summary

METADATA = {
    "run_id": "2024-05-01T12-00-00-abc123",
    "started": "2024-05-01T12:00:00+00:00",
    "git_commit": "abc1234",
    # registry entries, as the session saves them
    "models": ({"name": "tiny", "backend": "llamacpp", "quantization": "q4_k_m"},
               {"name": "small", "backend": "oracle", "quantization": ""}),
    "machine": {"cpu": "2 cores", "gpu": None},
    "output": Path("reports/run"),
}


def make_records() -> list[dict[str, Any]]:
    def one(i: int, model: str, status: str, correct: bool | None) -> dict[str, Any]:
        return CaseRecord(
            run_id=METADATA["run_id"],
            case_id=f"benchmarks/test_mmlu.py::test_mmlu[{model}-{i}]",
            suite="mmlu",
            item_id=str(i),
            model=model,
            backend="fake",
            prediction="B",
            reference="B",
            correct=correct,
            status=status,  # type: ignore[arg-type]
            usage={"prompt_tokens": 100, "completion_tokens": 10, "source": "estimate"},
            timings={"wall_s": 0.25, "model_s": 0.2},
            cost=0.001,
        ).to_dict()

    records = [one(i, "tiny", "ok", True) for i in range(5)]
    records += [one(i, "tiny", "wrong", False) for i in range(5, 8)]
    records += [one(i, "small", "ok", True) for i in range(3)]
    records.append(one(3, "small", "timeout", None))
    return records


def write_log(run_dir: Path, records: list[dict[str, Any]]) -> Path:
    with ResultsLog(run_dir) as log:
        for rec in records:
            log.append(rec)
    return run_dir / "results.jsonl"


def test_jsonl_round_trip(tmp_path: Path) -> None:
    records = make_records()
    path = write_log(tmp_path / "run", records)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(records)
    assert lines[0].startswith('{"attempts": 0, "backend": "fake"')  # sort_keys
    assert read_results(path) == records


def test_append_is_flushed_before_close(tmp_path: Path) -> None:
    log = ResultsLog(tmp_path)
    log.append({"case_id": "a"})
    # Readable by another reader while the log is still open: nothing sits in a buffer.
    assert read_results(tmp_path / "results.jsonl") == [{"case_id": "a"}]
    log.close()
    with pytest.raises(ValueError, match="closed"):
        log.append({"case_id": "b"})


def test_log_appends_to_existing_file(tmp_path: Path) -> None:
    write_log(tmp_path, [{"case_id": "a"}])
    write_log(tmp_path, [{"case_id": "b"}])
    assert [r["case_id"] for r in read_results(tmp_path / "results.jsonl")] == ["a", "b"]


def test_truncated_last_line_skipped_with_warning(tmp_path: Path) -> None:
    path = write_log(tmp_path, [{"case_id": "a"}, {"case_id": "b"}])
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"case_id": "c", "predic')  # a crash mid-write
    with pytest.warns(UserWarning, match=r"results\.jsonl:3: skipping a truncated last line"):
        records = read_results(path)
    assert [r["case_id"] for r in records] == ["a", "b"]


def test_reopened_log_drops_partial_line_so_file_stays_readable(tmp_path: Path) -> None:
    path = write_log(tmp_path, [{"case_id": "a"}])
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"case_id": "b", "pr')
    with pytest.warns(UserWarning, match="partial last line"):
        write_log(tmp_path, [{"case_id": "c"}])
    assert [r["case_id"] for r in read_results(path)] == ["a", "c"]


def test_corrupt_middle_line_raises_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"case_id": "a"}\n{"case_id": \n{"case_id": "c"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"results\.jsonl:2: not a JSON line"):
        read_results(path)


def test_non_object_line_rejected(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"case_id": "a"}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"results\.jsonl:2: expected a JSON object"):
        read_results(path)


def test_write_summary_files(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    rows = write_summary(run_dir, make_records(), METADATA)
    assert [(r.model, r.items, r.correct, r.scored, r.errors) for r in rows] == [
        ("small", 4, 3, 3, 1),
        ("tiny", 8, 5, 8, 0),
    ]

    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert [m["name"] for m in summary["metadata"]["models"]] == ["tiny", "small"]
    assert summary["metadata"]["output"] == str(Path("reports/run"))
    assert summary["summary"][1]["accuracy"] == 0.625
    assert summary["summary"][0]["accuracy"] == 1.0
    assert summary["summary"][1]["tokens_per_s"] == pytest.approx(110 / 0.2)

    metadata = json.loads((run_dir / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["run_id"] == METADATA["run_id"]

    with open(run_dir / "summary.csv", newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert [row["model"] for row in table] == ["small", "tiny"]
    assert table[1]["accuracy"] == "0.625" and table[1]["errors"] == "0"
    assert list(table[0]) == list(rows[0].to_dict())

    text = (run_dir / "summary.md").read_text(encoding="utf-8")
    assert text.startswith("# Benchmark run 2024-05-01T12-00-00-abc123\n")
    assert "- Git commit: abc1234\n" in text
    assert "- Models: tiny (llamacpp, q4_k_m), small (oracle)\n" in text
    assert "- Machine: cpu=2 cores\n" in text
    assert "| tiny | mmlu | single | 8 | 0.625 | [0.31, 0.86] | 0 | 0.250 s | 550.0 |" in text
    assert "| small | mmlu | single | 4 | 1.000 | [0.44, 1.00] | 1 | 0.250 s | 550.0 |" in text
    assert not list(run_dir.glob("*.tmp"))


def test_render_run_reproduces_summaries_byte_for_byte(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    records = make_records()
    write_log(run_dir, records)
    write_summary(run_dir, records, METADATA)
    names = ["summary.json", "summary.csv", "summary.md", "metadata.json"]
    before = {name: (run_dir / name).read_bytes() for name in names}
    for name in names[:3]:  # metadata.json is an input of render_run; the rest are rebuilt
        (run_dir / name).write_text("stale", encoding="utf-8")
    rows = render_run(run_dir)
    assert [(r.model, r.items) for r in rows] == [("small", 4), ("tiny", 8)]
    assert {name: (run_dir / name).read_bytes() for name in names} == before


def test_render_run_without_results_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no results to report"):
        render_run(tmp_path)


def test_scoreboard_columns_line_up() -> None:
    text = scoreboard(summarize(make_records()))
    lines = text.splitlines()
    assert lines[0].split() == [
        "model", "suite", "strategy", "items", "accuracy", "95%", "CI", "errors", "latency", "tok/s",
    ]
    assert set(lines[1]) == {"-", " "}
    assert lines[3].split() == [
        "tiny", "mmlu", "single", "8", "0.625", "[0.31,", "0.86]", "0", "0.250", "s", "550.0",
    ]
    # Fixed width: every column ends at the same offset on every line.
    assert len({len(line) for line in lines[1:]}) == 1
    assert lines[2].index("mmlu") == lines[3].index("mmlu") == lines[0].index("suite")


def test_markdown_without_metadata_or_rows() -> None:
    text = markdown([], None)
    assert text.startswith("# Benchmark run\n\n| model |")
    assert "No cases were recorded." in text
    assert "- Run id" not in text
