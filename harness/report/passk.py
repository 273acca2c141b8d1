"""pass@k and pass^k over n samples per problem, and the code suites' end-of-run report.

pass@k (Chen et al., 2021): the chance that at least one of k samples passes, estimated without
bias from n >= k samples of which c pass: 1 - C(n-c, k) / C(n, k).
pass^k (Yao et al., 2024, tau-bench): the chance that all k samples pass, a reliability figure:
C(c, k) / C(n, k).

The report hook runs at the end of a run holding records of the suites that declare it (their Suite's
`reports`: mbpp and humaneval, or a suite of your own) and writes code.json
and code.md: per model and strategy, pass@k and pass^k averaged
over problems, cost, tokens and time side by side, the share a cascade's small model settled,
and the sandbox isolation the programs ran under.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from math import comb
from typing import Any

from harness.core.record import CaseRecord
from harness.report.aggregate import aggregate
from harness.report.hooks import RunData, hookimpl

REPORT_JSON = "code.json"
REPORT_MD = "code.md"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c passing."""
    _check(n, c, k)
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """Unbiased pass^k (all of k samples pass) from n samples with c passing."""
    _check(n, c, k)
    return comb(c, k) / comb(n, k)


def _check(n: int, c: int, k: int) -> None:
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")


def ks_for(n: int) -> list[int]:
    """The k worth reporting for n samples: 1, the usual 5, 10, 100 that fit, and n itself."""
    return sorted({k for k in (1, 5, 10, 100) if k <= n} | {n})


def scores(passed: Sequence[bool]) -> dict[str, float]:
    """A problem's scores from its samples' verdicts: pass@k and pass^k for each k of ks_for(n)."""
    n, c = len(passed), sum(passed)
    if n == 0:
        raise ValueError("no samples")
    out: dict[str, float] = {}
    for k in ks_for(n):
        out[f"pass@{k}"] = pass_at_k(n, c, k)
        out[f"pass^{k}"] = pass_hat_k(n, c, k)
    return out


# -- the end-of-run report ----------------------------------------------------------------------


def _pass_order(name: str) -> tuple[str, int]:
    return (name[4], int(name[5:])) if name[5:].isdigit() else (name, 0)


def summarize(records: Iterable[CaseRecord | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (suite, model, strategy): the aggregation's row, then the means of the
    per-problem pass@k / pass^k scores over the scored problems, tokens, time and the sandbox."""
    rows = []
    for group in aggregate(records):
        base = group.row
        scored = [r for r in group.records if r.scored]
        names = sorted({name for r in scored for name in r.scores}, key=_pass_order)
        means = {name: sum(r.scores[name] for r in scored) / len(scored)
                 for name in names if all(name in r.scores for r in scored)} if scored else {}
        rows.append({
            "suite": group.suite, "model": group.model, "strategy": group.strategy, "items": base.items,
            "scored": base.scored, "errors": base.errors, **means,
            "settled_by_small": base.settled_by_small,
            "prompt_tokens": base.prompt_tokens, "completion_tokens": base.completion_tokens,
            "model_s": sum(r.timings.model_s or 0.0 for r in group.records),
            "sandbox_s": sum(_sandbox_s(r, "sandbox_s") for r in group.records),
            "cost": base.cost,
            "isolation": sorted({r.isolation for r in group.records if r.isolation}),
        })
    rows.sort(key=lambda row: (row["suite"], row["model"], row["strategy"]))
    return rows


def _sandbox_s(record: CaseRecord, key: str) -> float:
    if record.tries:
        return sum(getattr(t, key) for t in record.tries)
    value = record.extra.get(key)
    return float(value) if isinstance(value, (int, float)) else 0.0


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list):
        return "; ".join(map(str, value))
    return str(value).replace("|", "\\|")


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """A table per suite: the models and strategies side by side on the same problems."""
    lines = ["# Code generation", ""]
    for suite in sorted({r["suite"] for r in rows}):
        mine = [r for r in rows if r["suite"] == suite]
        passes = sorted({k for r in mine for k in r if k.startswith("pass")},
                        key=lambda s: (s[4], int(s[5:])))
        columns = ["model", "strategy", "items", "errors", *passes, "settled_by_small", "prompt_tokens",
                   "completion_tokens", "model_s", "sandbox_s", "cost"]
        lines += [f"## {suite}", "", "| " + " | ".join(columns) + " |",
                  "|" + "|".join("---" if c in ("model", "strategy") else "---:" for c in columns) + "|"]
        lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in mine]
        isolation = sorted({i for r in mine for i in r["isolation"]})
        lines += ["", f"Sandbox: {'; '.join(isolation) or 'not recorded'}", ""]
    return "\n".join(lines)


@hookimpl
def pytest_harness_report(run: RunData) -> None:
    """code.json and code.md over the records of the suites that declare this report (nothing without them)."""
    suites = run.suites_reported_by(__name__)
    if suites is None:  # a run from before suites declared their reports: its records with pass@k scores
        suites = tuple(sorted({r.suite for r in run.records if "pass@1" in r.scores}))
    records = run.suite(*suites)
    if not records:
        return
    rows = summarize(records)
    (run.run_dir / REPORT_JSON).write_text(json.dumps({"run_id": run.metadata.get("run_id"), "rows": rows},
                                                      indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (run.run_dir / REPORT_MD).write_text(markdown(rows), encoding="utf-8")
