"""The public surface for benchmarks kept in your own repository (README: "Your own benchmarks").

Everything here is kept stable; the rest of the package may move. Fixtures (no import needed, the
plugin provides them): `llm` (the case's model behind the call wrapper), `record` (the case's outcome),
`harness` (the run: settings, models), `options` (the case's suite options), `large_llm` (pair
strategies) and `upcoming` (batched scoring).
"""

from __future__ import annotations

from harness.core.record import CaseRecord
from harness.core.settings import option
from harness.report.hooks import RunData, hookimpl
from harness.run.plugin import Case, parametrize_cases
from harness.strategies.single import choose, complete
from harness.suites.base import DataError, Item, Score, sample
from harness.suites.unit import LoadContext, Suite

__all__ = ["Case", "CaseRecord", "DataError", "Item", "LoadContext", "RunData", "Score", "Suite", "choose",
           "complete", "hookimpl", "option", "parametrize_cases", "sample"]
