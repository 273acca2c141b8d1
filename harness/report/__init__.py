"""Reports of a run: aggregate case records into rows, render them, write the run's files.

Everything here works on plain record dicts (CaseRecord.to_dict()) and the standard library only,
so `harness report` can re-render a finished run without any optional dependency installed.
"""

from __future__ import annotations

from harness.report.aggregate import SummaryRow, summarize
from harness.report.stats import mean, wilson_interval
from harness.report.tables import markdown, scoreboard, write_csv
from harness.report.write import ResultsLog, read_results, render_run, write_summary

__all__ = [
    "ResultsLog",
    "SummaryRow",
    "markdown",
    "mean",
    "read_results",
    "render_run",
    "scoreboard",
    "summarize",
    "wilson_interval",
    "write_csv",
    "write_summary",
]
