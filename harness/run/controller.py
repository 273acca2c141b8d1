"""The controller's side of a run: collect every case record, write them at once, report at the end.

Registered as a pytest plugin on the controller of a pytest-xdist run, or on a plain run's only
process (like pytest's junitxml): records arrive on the reports' user_properties, are appended to
results.jsonl and the store as they come (a crash loses nothing), and at the end the summaries,
metadata.json and every report are written once. The run id goes to the workers through
pytest-xdist's `workerinput`; what each worker loaded comes back through its `workeroutput`.
"""

from __future__ import annotations

import datetime as dt
import getpass
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.core import locations
from harness.core.record import RECORD_KEY, SCHEMA_VERSION, SCORED_STATUSES, CaseRecord
from harness.core.settings import Settings
from harness.models.registry import ModelSpec
from harness.report.aggregate import SummaryRow, latest
from harness.report.hooks import ReportFailure, RunData, run_reports
from harness.report.tables import scoreboard, terminal_extras
from harness.report.write import RESULTS_FILE, ResultsLog, load_records, write_summary
from harness.run.decide import DECISION_FILE, Decider
from harness.run.shard import Shard, code_fingerprint, shard_metadata
from harness.store import Store, open_store

# What a worker sends back (pytest-xdist workeroutput) and receives (workerinput).
WORKER_BACKENDS = "harness_backends"
WORKER_RUN_ID = "harness_run_id"
WORKER_ANSWERED = "harness_answered"
WORKER_ITEMS = "harness_items_fingerprint"

# Library versions worth saving with a run: results move when these do.
_LIBRARIES = ("pytest", "pytest-xdist", "llama_cpp_python", "numpy", "transformers", "torch",
              "bitsandbytes", "openai", "ollama")


class Controller:
    """Collects the run's records, writes results.jsonl, the store, the summaries and reports."""

    def __init__(self, config: pytest.Config, settings: Settings, run_id: str, models: list[ModelSpec],
                 pair: tuple[ModelSpec, ModelSpec] | None, shard: Shard | None = None,
                 suites: dict[str, dict[str, Any]] | None = None, suite_settings: dict[str, Any] | None = None) -> None:
        self.config = config
        self.shard = shard
        # A fingerprint of every case of the whole run (harness/run/shard.py), from the collection:
        # this process's, or the workers' under xdist.
        self.items_fingerprint: str | None = None
        self.settings = settings
        # The registered suites (their tags and reports) and their options, kept in metadata.json so
        # reports and `harness report` know them without importing the suites.
        self.suites = dict(suites or {})
        self.suite_settings = dict(suite_settings or {})
        self.run_id = run_id
        self.models = models
        self.pair = pair
        self.report_dir = locations.report_dir(settings.report_dir, config.rootpath)
        self.started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        # --resume: the earlier attempt's records count again, and the cases it answered are
        # skipped; its errors and timeouts run again, their new record replacing the old one.
        earlier = (self._earlier_shard_records() if shard is not None else self._earlier_records()) \
            if settings.resume else []
        self.records: dict[str, CaseRecord] = {r.case_id: r for r in earlier}
        self.answered = frozenset(r.case_id for r in earlier if r.status in SCORED_STATUSES)
        self.backends: dict[str, dict[str, Any]] = {}
        self.rows: list[SummaryRow] = []
        self.failures: list[ReportFailure] = []
        self._log: ResultsLog | None = None
        self._store: Store | None = None
        # --decide: the sequential test, fed in the seeded order (harness/run/decide.py); a resumed
        # run's records count again once collection has written the plan.
        self.decider = Decider(self.run_dir, settings) if settings.decide else None
        if self.decider is not None:
            for earlier_record in earlier:  # errors and timeouts run again: their new record counts
                if earlier_record.status in SCORED_STATUSES:
                    self.decider.add(earlier_record)
        # A store named by --store is opened now: a wrong URI or an unreachable server stops the
        # run before any case runs (pytest exits 4, naming it).
        if settings.store:
            self._store = open_store(settings.store)

    @property
    def run_dir(self) -> Path:
        return self.report_dir / self.run_id

    def _earlier_records(self) -> list[CaseRecord]:
        path = self.run_dir / RESULTS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"--resume {self.run_id}: {path} not found, nothing to resume")
        return latest(load_records(path))

    def _earlier_shard_records(self) -> list[CaseRecord]:
        """A shard resumes from the shared store: its machine may be a new one with no folder. A
        shard that wrote nothing yet starts afresh, so a scheduler may pass --resume to every try
        of a shard (a restarted pod, a requeued array task)."""
        from harness.core.record import as_records

        assert self.shard is not None
        store = open_store(self.settings.store or str(self.report_dir / "harness.sqlite"))
        try:
            data = [r for r in store.records(self.run_id) if self.shard.holds(str(r.get("case_id")))]
        finally:
            store.close()
        return latest(as_records(data))

    # -- pytest-xdist: what travels to and from the workers ---------------------------------------
    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[WORKER_RUN_ID] = self.run_id
        node.workerinput[WORKER_ANSWERED] = sorted(self.answered)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: Any) -> None:
        self.decider_ready()

    def decider_ready(self) -> None:
        """Collection wrote the --decide plan: count what has arrived (a resumed run's records)."""
        if self.decider is not None:
            self.decider.advance_all()

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", None) or {}
        self.add_backends(json.loads(output.get(WORKER_BACKENDS) or "{}"))
        if output.get(WORKER_ITEMS):
            self.items_fingerprint = str(output[WORKER_ITEMS])  # every worker collects the same cases

    # -- records ----------------------------------------------------------------------------------
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # A record rides on the call report, or on the setup report when setup failed.
        if report.when == "teardown" or (report.when == "setup" and not report.failed):
            return
        payload = next((v for k, v in report.user_properties if k == RECORD_KEY), None)
        if payload is not None:
            # Read back from its JSON even in the process that built it: the controller's record is
            # then the one results.jsonl holds (-inf as None, tuples as lists), whoever reports it.
            data = json.loads(str(payload))
            record = CaseRecord.from_dict(data)
            # The payload is the record's own to_json() where its schema is ours: written as it
            # came, it spares converting the record twice more per case.
            line = str(payload) if data.get("schema") == SCHEMA_VERSION else None
            self.add(record, data if line is not None else None, line)
            if record.extra.get("shown"):  # a suite's per-case line (--show-answers), from any worker
                terminal = self.config.pluginmanager.get_plugin("terminalreporter")
                if terminal is not None:
                    terminal.ensure_newline()
                    terminal.write_line(f"[{record.model}] {record.extra['shown']}")

    def add(self, record: CaseRecord, data: dict[str, Any] | None = None, line: str | None = None) -> None:
        """Write one record at once (results.jsonl and the store): a crash loses nothing. `data`
        and `line`: the record as plain data and as its JSON line, where the caller has them."""
        self._open()
        assert self._log is not None and self._store is not None
        data = record.to_dict() if data is None else data
        self._log.append(data, line)
        self._store.add(data, line)
        self.records.pop(record.case_id, None)  # a re-run after --resume replaces the old record
        self.records[record.case_id] = record
        if self.decider is not None:
            self.decider.add(record)

    def _open(self) -> None:
        if self._log is None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._log = ResultsLog(self.run_dir)
            if self._store is None:
                self._store = open_store(self.settings.store or str(self.report_dir / "harness.sqlite"))
            self._store.start_run(self.run_id, self.metadata())
            self._put_shard(finished=False)

    def _put_shard(self, finished: bool) -> None:
        """This shard's entry in the store: written when it starts, again when it finishes."""
        if self.shard is None or self._store is None:
            return
        entry = shard_metadata(self.shard, machine=_machine(), git_commit=_git_commit(self.config.rootpath),
                               code=code_fingerprint(self.config.rootpath), items=self.items_fingerprint,
                               cases=len(self.records), started=self.started,
                               finished=dt.datetime.now(dt.UTC).isoformat(timespec="seconds") if finished else None)
        # The suites' options count as settings (shards must agree on them); the models each shard
        # loaded (their hosts) add up into the merged run's metadata (report/merge.py).
        self._store.put_shard(self.run_id, {**entry, "settings": {**self.settings.to_dict(), **self.suite_settings},
                                            "backends": self.backends})

    # -- the end ----------------------------------------------------------------------------------
    def add_backends(self, described: dict[str, dict[str, Any]]) -> None:
        """What one process loaded. Processes that loaded a model the same way count as one entry
        (`processes`); a process that loaded it differently (another endpoint, say) is kept beside
        it under `differing`. Each process's model host (its PID, load time, RSS after load,
        crashes) is its own: they are listed under `hosts`."""
        for name, described_data in described.items():
            data = dict(described_data)
            host = data.pop("host", None)
            known = self.backends.get(name)
            if known is None:
                known = self.backends[name] = {**data, "processes": 1}
            elif {k: v for k, v in known.items() if k not in ("processes", "differing", "hosts")} == data:
                known["processes"] += 1
            else:
                known.setdefault("differing", []).append(data)
            if host is not None:
                known.setdefault("hosts", []).append(host)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        workers = getattr(self.config.option, "numprocesses", None)
        self.finish(workers=workers if isinstance(workers, int) else 0)
        if self.failures and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED  # a report that fails fails the run

    def finish(self, workers: int) -> None:
        """Write the summaries, metadata and every report once, at the end."""
        if not self.records:
            if self.shard is not None:  # a shard none of whose cases were selected has still finished
                self._open()
                self._put_shard(finished=True)
            return
        records = list(self.records.values())
        metadata = self.metadata(finished=True, workers=workers)
        if self.decider is not None:  # the decision, with the items it took, into the run's reports
            self.decider.write()
            metadata["decision"] = self.decider.summary()
        self.rows = write_summary(self.run_dir, records, metadata)
        self._open()  # a resumed run may have had nothing left to run
        assert self._store is not None
        if self.shard is None:
            self._store.finish_run(self.run_id, [row.to_dict() for row in self.rows])
        else:  # one shard's rows are not the run's: `harness report --store` writes the merged ones
            self._put_shard(finished=True)
        self.failures = run_reports(self.config.pluginmanager, RunData.of(self.run_dir, records, metadata))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.rows:
            terminalreporter.write_sep("=", f"harness scoreboard: run {self.run_id}")
            terminalreporter.write_line(scoreboard(self.rows))
            terminalreporter.write_line(terminal_extras(self.rows, list(self.records.values())))
            if any((r.isolation or "").startswith("UNISOLATED") for r in self.records.values()):
                terminalreporter.write_line("generated code ran UNISOLATED (--sandbox rlimits): limits only, "
                                            "no namespaces", yellow=True, bold=True)
            crashed = [r for r in self.records.values() if r.status == "crash"]
            if crashed:
                terminalreporter.write_line(f"{len(crashed)} case(s) crashed their model's host (status crash): "
                                            + ", ".join(r.case_id for r in crashed[:5])
                                            + (" ..." if len(crashed) > 5 else ""), yellow=True, bold=True)
            if self.decider is not None:
                for line in self.decider.lines():
                    terminalreporter.write_line(f"decision: {line}", bold=True)
                terminalreporter.write_line(f"decision: {self.run_dir / DECISION_FILE}")
            terminalreporter.write_line(f"reports: {self.run_dir}")
        for failure in self.failures:
            terminalreporter.write_line(f"harness: {failure} (the run fails; its records are in "
                                        f"{self.run_dir / RESULTS_FILE})", red=True, bold=True)

    def pytest_unconfigure(self) -> None:
        if self._log is not None:
            self._log.close()
        if self._store is not None:
            self._store.close()

    def metadata(self, finished: bool = False, workers: int = 0) -> dict[str, Any]:
        data: dict[str, Any] = {
            "run_id": self.run_id,
            "started": self.started,
            "models": [{**m.__dict__, "tiers": list(m.tiers)} for m in self.models],
            "pair": [m.name for m in self.pair] if self.pair else None,
            "settings": {**self.settings.to_dict(), **self.suite_settings},
            "suites": self.suites,
            "git_commit": _git_commit(self.config.rootpath),
            "machine": _machine(),
            "libraries": _versions(),
            "command": sys.argv,
            # What each process reports it loaded and how it runs: the quantization really in
            # effect, the inference settings (threads, batch sizes, flash attention, sampling).
            "backends": dict(sorted(self.backends.items())),
        }
        if self.shard is not None:
            data["shard"] = self.shard.label
            data["items_fingerprint"] = self.items_fingerprint
        if finished:
            records = list(self.records.values())
            data["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            data["workers"] = workers
            data["cases"] = len(records)
            # What measuring cost: the sampler's own CPU time over the run, beside its interval.
            data["monitor"] = {"interval_s": self.settings.monitor_interval,
                               "cpu_s": sum(float(r.resources.get("monitor_cpu_s") or 0.0) for r in records)}
            # The sandbox isolation generated code actually ran under (code suites record it).
            isolation = sorted({r.isolation for r in records if r.isolation})
            if isolation:
                data["sandbox"] = isolation
                # --sandbox rlimits: generated code ran with limits only; every report says so.
                data["sandbox_unisolated"] = any(level.startswith("UNISOLATED") for level in isolation)
        return data


def _git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _machine() -> dict[str, Any]:
    memory = None
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {"platform": platform.platform(), "machine": platform.machine(),
            "processor": platform.processor(), "cpus": os.cpu_count(), "memory_bytes": memory,
            "python": platform.python_version(), "hostname": platform.node(),
            "user": getpass.getuser()}


def _versions() -> dict[str, str]:
    found = {}
    for name in _LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found
