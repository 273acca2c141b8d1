"""pass@k and pass^k over n samples per problem, and the code suites' end-of-run report.

pass@k (Chen et al., 2021): the chance that at least one of k samples passes, estimated without
bias from n >= k samples of which c pass: 1 - C(n-c, k) / C(n, k).
pass^k (Yao et al., 2024, tau-bench): the chance that all k samples pass, a reliability figure:
C(c, k) / C(n, k).

`finish` runs at the end of a run holding mbpp or humaneval records (harness/session.py
FINISHERS) and writes code.json and code.md: per model and strategy, pass@k and pass^k averaged
over problems, cost, tokens and time side by side, the share a cascade's small model settled,
and the sandbox isolation the programs ran under.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from math import comb
from pathlib import Path
from typing import Any

from harness.report.write import RESULTS_FILE, latest_per_case, read_results

CODE_SUITES = ("mbpp", "humaneval")
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


def summarize(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (suite, model, strategy): means of the per-problem pass@k / pass^k scores."""
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for record in records:
        key = (str(record.get("suite")), str(record.get("model")), str(record.get("strategy") or "single"))
        groups.setdefault(key, []).append(record)
    rows = []
    for (suite, model, strategy), group in sorted(groups.items()):
        scored = [r for r in group if r.get("status") in ("ok", "wrong", "invalid_output")]
        names = sorted({name for r in scored for name in (r.get("scores") or {})},
                       key=lambda s: (s[4], int(s[5:])) if s[5:].isdigit() else (s, 0))
        means = {name: sum((r.get("scores") or {}).get(name, 0.0) for r in scored) / len(scored)
                 for name in names if all(name in (r.get("scores") or {}) for r in scored)} if scored else {}
        settled = [bool((r.get("extra") or {}).get("settled_by_small")) for r in scored
                   if "settled_by_small" in (r.get("extra") or {})]
        usage = [r.get("usage") or {} for r in group]
        rows.append({
            "suite": suite, "model": model, "strategy": strategy, "items": len(group), "scored": len(scored),
            "errors": len(group) - len(scored), **means,
            "settled_by_small": sum(settled) / len(settled) if settled else None,
            "prompt_tokens": sum(int(u.get("prompt_tokens") or 0) for u in usage),
            "completion_tokens": sum(int(u.get("completion_tokens") or 0) for u in usage),
            "model_s": sum(float((r.get("timings") or {}).get("model_s") or 0.0) for r in group),
            "sandbox_s": sum(float((r.get("extra") or {}).get("sandbox_s") or 0.0) for r in group),
            "cost": sum(float(r.get("cost") or 0.0) for r in group),
            "isolation": sorted({str((r.get("extra") or {}).get("isolation")) for r in group
                                 if (r.get("extra") or {}).get("isolation")}),
        })
    return rows


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


def finish(run_dir: str | Path, records: list[dict[str, Any]], metadata: Mapping[str, Any]) -> None:
    """Write code.json and code.md for the run's code-suite records (called once per suite)."""
    run_dir = Path(run_dir)
    # Both code suites register this finisher; each call rewrites the report over both suites.
    results = run_dir / RESULTS_FILE
    every = latest_per_case(read_results(results)) if results.exists() else records
    rows = summarize(r for r in every if r.get("suite") in CODE_SUITES)
    (run_dir / REPORT_JSON).write_text(json.dumps({"run_id": metadata.get("run_id"), "rows": rows},
                                                  indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (run_dir / REPORT_MD).write_text(markdown(rows), encoding="utf-8")
