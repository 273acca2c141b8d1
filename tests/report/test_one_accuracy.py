"""Every report counts the same records the same way (issue 10, defects 1 and 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.core.record import CaseRecord
from harness.report import comparison, passk
from harness.report.aggregate import Group, aggregate, latest, summarize
from harness.report.hooks import RunData, hookimpl, report_manager, run_reports


def rec(item: str, status: str, correct: bool | None, wall_s: float | None, *, model: str = "m",
        strategy: str = "single", suite: str = "gsm8k", **more) -> CaseRecord:
    return CaseRecord("run", f"{suite}-{strategy}-{model}-{item}", suite, item, model, "b", strategy=strategy,
                      status=status, correct=correct, timings={"wall_s": wall_s}, **more)  # type: ignore[arg-type]


FOUR = [rec("1", "ok", True, 1.0), rec("2", "wrong", False, 3.0), rec("3", "error", None, None),
        rec("4", "timeout", None, None)]


def test_scoreboard_and_comparison_give_one_accuracy() -> None:
    (row,) = summarize(FOUR)
    variant = comparison.compare(FOUR)["variants"]["single:m"]
    # Before: the comparison divided by all four items (0.25) and counted missing latencies as 0 (1.0).
    assert row.accuracy == variant["accuracy"] == 0.5
    assert row.errors == variant["errors"] == 2
    assert row.mean_latency_s == variant["mean_latency_s"] == 2.0
    assert (variant["ci_low"], variant["ci_high"]) == (row.ci_low, row.ci_high)


def test_code_report_uses_the_same_denominator() -> None:
    records = [rec(i, s, c, 1.0, suite="mbpp", scores={"pass@1": float(bool(c))}) for i, s, c in
               (("1", "ok", True), ("2", "wrong", False), ("3", "error", None))]
    (row,) = passk.summarize(records)
    assert (row["items"], row["scored"], row["errors"], row["pass@1"]) == (3, 2, 1, 0.5)


def test_latest_record_per_case_counts() -> None:
    first = rec("1", "error", None, None)
    again = rec("1", "ok", True, 2.0)
    assert latest([first, again]) == [again]
    (group,) = aggregate([first, again])
    assert isinstance(group, Group) and group.row.accuracy == 1.0 and group.row.errors == 0


def test_vue_agent_tool_calls_are_a_typed_list_in_the_comparison(tmp_path: Path) -> None:
    calls = [{"turn": 1, "name": "read_file", "arguments": '{"path": "src/A.vue"}', "ok": True, "result": "..."},
             {"turn": 2, "name": "write_file", "arguments": "{}", "ok": False, "result": "bad"}]
    records = [rec("a", "wrong", False, 4.0, suite="vue", strategy="agent", tool_calls=calls),
               rec("b", "ok", True, 2.0, suite="vue", strategy="agent"),
               rec("a", "wrong", False, 1.0, suite="vue"), rec("b", "wrong", False, 1.0, suite="vue")]
    # Before: comparison.py called int() on the Vue record's list, and comparison/vue/ was not written.
    [folder] = comparison.write(tmp_path, records)
    result = json.loads((folder / "comparison.json").read_text())
    assert result["variants"]["agent:m"]["tool_calls_per_item"] == 1.0
    assert result["variants"]["single:m"]["tool_calls_per_item"] == 0.0
    assert (folder / "comparison.png").stat().st_size > 5000


class Broken:
    @hookimpl
    def pytest_harness_report(self, run: RunData) -> None:
        raise RuntimeError("cannot draw")


def test_a_failing_report_is_named_and_the_others_still_write(tmp_path: Path) -> None:
    manager = report_manager([Broken()])
    failures = run_reports(manager, RunData.of(tmp_path, FOUR))
    assert [str(f) for f in failures] == [f"report {failures[0].report} failed: RuntimeError: cannot draw"]
    assert (tmp_path / "comparison" / "gsm8k" / "comparison.json").is_file()


def test_run_data_holds_the_latest_records_grouped(tmp_path: Path) -> None:
    run = RunData.of(tmp_path, [*FOUR, rec("3", "ok", True, 1.0)], {"settings": {"seed": 1}})
    assert len(run.records) == 4 and run.settings == {"seed": 1}
    assert [g.row.accuracy for g in run.groups] == [pytest.approx(2 / 3)]


def test_each_variants_records_are_written_as_results_jsonl_has_them(tmp_path: Path) -> None:
    [folder] = comparison.write(tmp_path, FOUR + [rec("1", "ok", True, 0.5, model="n", extra={"ll": float("-inf")})])
    text = (folder / "results-single_m.json").read_text()
    assert json.loads(text) == [r.to_dict() for r in FOUR]
    assert text.splitlines()[1] == FOUR[0].to_json() + ","  # a record a line, as in results.jsonl
    [other] = json.loads((folder / "results-single_n.json").read_text())
    assert other["extra"] == {"ll": None} and other["model"] == "n"
    assert comparison.records_json([]) == "[]\n"
