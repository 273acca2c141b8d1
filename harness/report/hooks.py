"""How reports plug in: one hook, called once at the end of a run (and by `harness report`).

A report is a module or plugin with a `pytest_harness_report(run)` function marked `@hookimpl`;
it takes the run's typed records through `RunData` (the latest per case, already grouped by the
one aggregation) and writes its files into `run.run_dir`. The built-in reports are listed in
BUILTIN_REPORTS; a user's conftest.py or plugin may add its own. Each report runs on its own: one
that fails is reported by name and fails the run, and the others still write.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from harness.core.record import CaseRecord

if TYPE_CHECKING:  # the aggregation loads when a report runs, not when pytest adds this hook
    from harness.report.aggregate import Group

hookspec = pluggy.HookspecMarker("pytest")
hookimpl = pluggy.HookimplMarker("pytest")

# The reports every run writes beside its summaries, whatever its suites. A suite's own reports are
# named by its Suite (harness/suites/unit.py) and registered with it; the run's metadata.json keeps
# them under "suites", so `harness report` finds them again.
BUILTIN_REPORTS = (
    "harness.report.comparison",
    "harness.report.routes",  # any suite whose records carry a confidence, run with a model pair
    "harness.report.html",  # called last (trylast): it inlines the plots the others wrote
)


@dataclass
class RunData:
    """A finished run as the reports see it."""

    run_dir: Path
    records: list[CaseRecord]  # the latest record per case
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, run_dir: Path, records: Iterable[CaseRecord | Mapping[str, Any]],
           metadata: Mapping[str, Any] | None = None) -> RunData:
        from harness.report.aggregate import latest

        return cls(Path(run_dir), latest(records), dict(metadata or {}))

    @cached_property
    def groups(self) -> list[Group]:
        from harness.report.aggregate import aggregate

        return aggregate(self.records)

    def suite(self, *names: str) -> list[CaseRecord]:
        return [r for r in self.records if r.suite in names]

    def suite_groups(self, *names: str) -> list[Group]:
        return [g for g in self.groups if g.suite in names]

    def suites_reported_by(self, report: str) -> tuple[str, ...] | None:
        """The suites of this run whose Suite declares the report module `report`; None for a run
        whose metadata predates suite declarations."""
        suites = self.metadata.get("suites")
        if not isinstance(suites, Mapping):
            return None
        return tuple(sorted(name for name, s in suites.items()
                            if isinstance(s, Mapping) and report in (s.get("reports") or ())))

    @property
    def settings(self) -> Mapping[str, Any]:
        settings = self.metadata.get("settings")
        return settings if isinstance(settings, Mapping) else {}


@hookspec
def pytest_harness_report(run: RunData) -> None:
    """Write this report's files for a finished run into run.run_dir (nothing to do: return)."""


@dataclass
class ReportFailure:
    report: str
    error: BaseException

    def __str__(self) -> str:
        return f"report {self.report} failed: {type(self.error).__name__}: {self.error}"


def report_manager(extra: Iterable[object] = (), reports: Iterable[str] = ()) -> pluggy.PluginManager:
    """A plugin manager holding the hook, the built-in reports and the suites' `reports` (module
    names), for use outside pytest."""
    manager = pluggy.PluginManager("pytest")
    manager.add_hookspecs(sys.modules[__name__])
    register_builtin(manager.register)
    for name in sorted(set(reports)):
        register_report(manager.register, name)
    for plugin in extra:
        manager.register(plugin)
    return manager


def register_builtin(register: Callable[..., Any]) -> None:
    for name in BUILTIN_REPORTS:
        register_report(register, name)


def register_report(register: Callable[..., Any], name: str) -> None:
    """Register one report module by name (a suite's, or a built-in one)."""
    register(importlib.import_module(name), name)


def reports_of(metadata: Mapping[str, Any]) -> list[str]:
    """The report modules the suites of a finished run declared (its metadata.json "suites")."""
    suites = metadata.get("suites")
    if not isinstance(suites, Mapping):
        return []
    return sorted({str(r) for s in suites.values() if isinstance(s, Mapping) for r in s.get("reports") or ()})


def run_reports(manager: pluggy.PluginManager, run: RunData) -> list[ReportFailure]:
    """Call every report; returns the failures (each report is called even when another fails)."""
    failures = []
    # pluggy's own call order: tryfirst reports first, trylast ones (the HTML page) last.
    for impl in reversed(manager.hook.pytest_harness_report.get_hookimpls()):
        try:
            impl.function(run=run)
        except Exception as exc:  # noqa: BLE001 - reported by name, and the run fails
            failures.append(ReportFailure(impl.plugin_name, exc))
    return failures
