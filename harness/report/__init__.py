"""Reports of a run: aggregate case records into rows, render them, write the run's files.

Everything here takes typed case records (harness/core/record.py) through one aggregation
(aggregate.py); suite reports plug in through the `pytest_harness_report` hook (hooks.py). The
summaries need the standard library only, so `harness report` re-renders a finished run without
any optional dependency installed.
"""

from __future__ import annotations

import importlib
from typing import Any

# Loaded when first asked for (PEP 562), so the report hook's module (hooks.py), which pytest
# loads in every session, does not bring the whole package with it.
_EXPORTS = {
    "SummaryRow": "aggregate", "summarize": "aggregate", "mean": "stats", "wilson_interval": "stats",
    "markdown": "tables", "scoreboard": "tables", "write_csv": "tables", "ResultsLog": "write",
    "load_records": "write", "read_results": "write", "read_run": "write", "render_run": "write",
    "write_summary": "write",
}

__all__ = [
    "ResultsLog",
    "SummaryRow",
    "markdown",
    "mean",
    "load_records",
    "read_results",
    "read_run",
    "render_run",
    "scoreboard",
    "summarize",
    "wilson_interval",
    "write_csv",
    "write_summary",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
