"""Reports of a run: aggregate case records into rows, render them, write the run's files.

Everything here takes typed case records (harness/record.py) through one aggregation
(aggregate.py); suite reports plug in through the `pytest_harness_report` hook (hooks.py). The
summaries need the standard library only, so `harness report` re-renders a finished run without
any optional dependency installed.
"""

from __future__ import annotations

from harness.report.aggregate import SummaryRow, summarize
from harness.report.stats import mean, wilson_interval
from harness.report.tables import markdown, scoreboard, write_csv
from harness.report.write import ResultsLog, load_records, read_results, read_run, render_run, write_summary

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
