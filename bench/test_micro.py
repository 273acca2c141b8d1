"""Micro-benchmarks of the harness's own hot paths (pytest-benchmark; not part of `pytest tests`).

    pytest bench/test_micro.py --benchmark-autosave          # save a baseline
    pytest bench/test_micro.py --benchmark-compare            # compare with the last saved run

Each benchmark also checks its result, so a fast wrong answer does not pass for a speed-up.
"""

from __future__ import annotations

from pathlib import Path

from harness.core.record import CaseRecord
from harness.report.aggregate import summarize
from harness.report.write import ResultsLog
from harness.store.sqlite import SQLiteStore
from harness.suites import mmlu

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "mmlu"
OUTPUTS = ["B", " The answer is (C).", "**D** because", "I think A is correct, since ...",
           "Answer: b.", "none of these"]


def make_record(i: int) -> dict:
    return CaseRecord(run_id="bench", case_id=f"benchmarks/test_mmlu.py::test_mmlu[m-{i}]", suite="mmlu",
                      item_id=str(i), model="m", backend="oracle", prediction="B", reference="B",
                      scores={"accuracy": 1.0}, correct=True,
                      usage={"prompt_tokens": 120, "completion_tokens": 1, "source": "tokenizer"},
                      timings={"wall_s": 0.1, "model_s": 0.09, "first_token_s": None}).to_dict()


def test_extract_answer(benchmark) -> None:
    found = benchmark(lambda: [mmlu.extract_answer(o) for o in OUTPUTS])
    assert found == ["B", "C", "D", "A", "B", None]


def test_prompt_and_score(benchmark) -> None:
    items = mmlu.load(SAMPLE)
    def run() -> int:
        return sum(mmlu.score(i, i.reference).correct for i in items if mmlu.prompt(i).endswith("Answer:"))
    assert benchmark(run) == len(items)


def test_results_log_append(benchmark, tmp_path: Path) -> None:
    log = ResultsLog(tmp_path)
    record = make_record(0)
    benchmark(log.append, record)
    log.close()
    assert (tmp_path / "results.jsonl").read_text().count("\n") >= 1


def test_sqlite_store_add(benchmark, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "h.sqlite")
    store.start_run("bench", {})
    counter = iter(range(10**9))
    benchmark(lambda: store.add(make_record(next(counter))))
    assert len(store.records("bench")) >= 1
    store.close()


def test_summarize_1000_records(benchmark) -> None:
    records = [make_record(i) for i in range(1000)]
    [row] = benchmark(summarize, records)
    assert row.items == 1000 and row.accuracy == 1.0
