"""Records with known figures for the report page tests (tests/report/test_report_page.py and
test_report_browser.py)."""

from __future__ import annotations

from typing import Any

from harness.core.record import CaseRecord

LETTERS = {"A": -1.0, "B": -2.0, "C": -3.0, "D": -4.0}


def record(model: str, item: int, right: bool, *, suite: str = "mmlu", cpu: float = 1.0, rss: float = 100.0,
           cost: float = 0.0, run: str = "r", strategy: str = "single", ll: dict[str, float] | None = None,
           **more: Any) -> CaseRecord:
    return CaseRecord(run_id=run, case_id=f"{suite}-{model}-{strategy}-{item}", suite=suite, item_id=f"q-{item:02d}",
                      model=model, backend="fake", strategy=strategy, prediction="A" if right else "B",
                      reference="A", correct=right, status="ok" if right else "wrong", input_text=f"question {item}",
                      cost=cost, timings={"wall_s": cpu},
                      resources={"cpu_s": cpu, "duration_s": cpu, "rss_peak_mb": rss},
                      extra={"loglikelihoods": dict(LETTERS if ll is None else ll)} if suite == "mmlu" else {},
                      **more)


def known_pair() -> list[CaseRecord]:
    """gemma right on items 0-19 of 32, smollm2 on 0-16 and 25: 3 items only gemma got right, 1
    only smollm2 (McNemar p = 0.625); smollm2 at 68% of the CPU time and 60% of the memory."""
    return ([record("gemma3-270m-q4", i, i < 20, cpu=2.0, rss=500.0) for i in range(32)]
            + [record("smollm2-135m", i, i < 17 or i == 25, cpu=1.36, rss=300.0) for i in range(32)])


def two_runs() -> tuple[list[CaseRecord], list[CaseRecord]]:
    """The same model in two runs: right on q-00..q-02 and wrong on q-03 in A; in B right on q-00
    and q-03, wrong on q-01 and q-02 (two right -> wrong, one wrong -> right), the reference's
    log-likelihood of q-01 falling by 1.5."""
    a = [record("m", i, i < 3, run="A") for i in range(4)]
    b = [record("m", i, i in (0, 3), run="B",
                ll={"A": -2.5, "B": -1.0, "C": -3.0, "D": -4.0} if i == 1 else None) for i in range(4)]
    return a, b
