"""One run: settings, run id, selected models, loaded backends, and the collected records.

It lives on config.stash. In a pytest-xdist run every worker has one (to load backends and
run cases) but only the controller writes: the records, the store and the reports.
"""

from __future__ import annotations

import datetime as dt
import getpass
import importlib
import importlib.metadata
import os
import platform
import secrets
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from harness.backends.base import Backend
from harness.cache import ResponseCache
from harness.call import CallPolicy, ModelCall
from harness.monitor import Monitor
from harness.registry import (
    DEFAULT_REGISTRY,
    ModelSpec,
    RegistryError,
    availability,
    create_backend,
    load_registry,
    select,
)
from harness.report.aggregate import SCORED_STATUSES
from harness.report import comparison
from harness.report.write import RESULTS_FILE, ResultsLog, latest_per_case, read_results, write_summary
from harness.settings import Settings
from harness.store import Store, open_store

T = TypeVar("T")

# Library versions worth saving with a run: results move when these do.
_LIBRARIES = ("pytest", "pytest-xdist", "llama_cpp_python", "numpy", "transformers", "torch",
              "bitsandbytes", "openai", "ollama")


# suite -> "module:function" called at the end of a run holding records of that suite, as
# function(run_dir, records_of_the_suite, metadata); imported only then, so a run without the suite
# never imports what its reports need (matplotlib, metric libraries).
FINISHERS: dict[str, str] = {
    "extraction": "harness.report.extraction_metrics:finish",
    "mbpp": "harness.report.passk:finish",
    "humaneval": "harness.report.passk:finish",
}


def new_run_id() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


class RunSession:
    def __init__(self, settings: Settings, rootdir: Path, *, writer: bool) -> None:
        self.settings = settings
        self.rootdir = rootdir
        self.writer = writer  # False on xdist workers
        registry_files = [self._registry_path()]
        if settings.models_file is not None:
            registry_files.append(settings.models_file)
        self.registry = load_registry(registry_files)
        self.models: list[ModelSpec] = select(self.registry, settings.models)
        self.unrunnable: dict[str, str] = {}  # selected models that cannot run here -> why (skipped)
        self.pair: tuple[ModelSpec, ModelSpec] | None = self._pair()
        self.run_id = settings.resume or settings.run_id or new_run_id()
        self.report_dir = settings.report_dir or rootdir / "reports"
        # --resume: the earlier attempt's records count again, and the cases it answered are
        # skipped; its errors and timeouts run again, their new record replacing the old one.
        self._earlier = self._earlier_records() if settings.resume else {}
        self.answered = frozenset(case for case, rec in self._earlier.items()
                                  if rec.get("status") in SCORED_STATUSES)
        self.records: list[dict[str, Any]] = list(self._earlier.values())
        self.started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self._backends: dict[str, Backend] = {}
        self._memo: dict[Any, Any] = {}
        self._log: ResultsLog | None = None
        self._store: Store | None = None
        self._policy: CallPolicy | None = None
        self._monitors: dict[frozenset[int], Monitor] = {}
        # A store named by --store is opened now, by the controller only: a wrong URI or an
        # unreachable server stops the run before any case runs (pytest exits 4, naming it).
        if writer and settings.store:
            self._store = open_store(settings.store)

    def _pair(self) -> tuple[ModelSpec, ModelSpec] | None:
        small, large = self.settings.small_model, self.settings.large_model
        if small is None and large is None:
            return None
        if small is None or large is None:
            raise RegistryError("pair strategies need both --small-model and --large-model")
        for name in (small, large):
            if name not in self.registry:
                raise RegistryError(f"unknown model {name!r} for a pair strategy; models: "
                                    f"{', '.join(self.registry)}")
        return self.registry[small], self.registry[large]

    def _earlier_records(self) -> dict[str, dict[str, Any]]:
        path = self.run_dir / RESULTS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"--resume {self.run_id}: {path} not found, nothing to resume")
        return {rec["case_id"]: rec for rec in latest_per_case(read_results(path))}

    def _registry_path(self) -> Path:
        local = self.rootdir / "models.toml"
        return local if local.is_file() else DEFAULT_REGISTRY

    @property
    def run_dir(self) -> Path:
        return self.report_dir / self.run_id

    def unavailable_reasons(self) -> dict[str, str]:
        """Why each default model cannot run here (for the 'nothing selected' error)."""
        return {m.name: availability(m) or "" for m in self.registry.values() if m.default}

    # -- per-process resources ------------------------------------------------------------------
    def backend(self, spec: ModelSpec) -> Backend:
        """Load a model once per process; every case of that model shares it."""
        if spec.name not in self._backends:
            self._backends[spec.name] = create_backend(spec)
        return self._backends[spec.name]

    def model_call(self, spec: ModelSpec) -> ModelCall:
        """A fresh per-case wrapper around the shared backend, with this run's call policy."""
        return ModelCall(spec, self.backend(spec), self.policy)

    @property
    def policy(self) -> CallPolicy:
        if self._policy is None:
            cache = ResponseCache(self.settings.cache_dir) if self.settings.cache else None
            self._policy = CallPolicy(timeout_s=self.settings.call_timeout or None,
                                      retries=self.settings.retries, cache=cache)
        return self._policy

    def monitor(self, pids: set[int]) -> Monitor:
        """One sampler per process tree for the whole run; cases take windows of it."""
        key = frozenset(pids)
        if key not in self._monitors:
            # Children matter for servers (Ollama's runner); this process's own are not inference.
            servers = any(pid != os.getpid() for pid in pids)
            self._monitors[key] = Monitor(sorted(pids), self.settings.monitor_interval,
                                          children=servers).start()
        return self._monitors[key]

    def memo(self, key: Any, factory: Callable[[], T]) -> T:
        """Per-process cache for suite data such as few-shot examples."""
        if key not in self._memo:
            self._memo[key] = factory()
        return self._memo[key]

    def close(self) -> None:
        for monitor in self._monitors.values():
            monitor.close()
        for backend in self._backends.values():
            backend.close()
        self._backends.clear()
        if self._log is not None:
            self._log.close()
        if self._store is not None:
            self._store.close()
        if self._policy is not None and self._policy.cache is not None:
            self._policy.cache.close()

    # -- the controller's side ------------------------------------------------------------------
    def add(self, record: dict[str, Any]) -> None:
        """Write one record at once (results.jsonl and the store): a crash loses nothing."""
        record["run_id"] = self.run_id
        self._open()
        assert self._log is not None and self._store is not None
        self._log.append(record)
        self._store.add(record)
        if self._earlier.pop(record.get("case_id"), None) is not None:  # re-run after --resume
            self.records = [r for r in self.records if r.get("case_id") != record["case_id"]]
        self.records.append(record)

    def _open(self) -> None:
        if self._log is None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._log = ResultsLog(self.run_dir)
            if self._store is None:
                self._store = open_store(self.settings.store or str(self.report_dir / "harness.sqlite"))
            self._store.start_run(self.run_id, self.metadata())

    def finish(self, workers: int) -> list[Any]:
        """Write the summaries once, at the end; returns the summary rows."""
        if not self.records:
            return []
        metadata = self.metadata(finished=True, workers=workers)
        rows = write_summary(self.run_dir, self.records, metadata)
        self._open()  # a resumed run may have had nothing left to run
        assert self._store is not None
        self._store.finish_run(self.run_id, [row.to_dict() for row in rows])
        try:
            comparison.write(self.run_dir, self.records)
        except Exception as exc:  # the summaries are written; the comparison must not undo that
            warnings.warn(f"comparison of run {self.run_id} failed: {type(exc).__name__}: {exc}")
        for suite, target in FINISHERS.items():
            records = [r for r in self.records if r.get("suite") == suite]
            if records:
                module, _, function = target.partition(":")
                try:
                    getattr(importlib.import_module(module), function)(self.run_dir, records, metadata)
                except Exception as exc:  # the summaries are written; a suite's extras must not undo that
                    warnings.warn(f"{target} failed on run {self.run_id}: {type(exc).__name__}: {exc}")
        return rows

    def metadata(self, finished: bool = False, workers: int = 0) -> dict[str, Any]:
        data: dict[str, Any] = {
            "run_id": self.run_id,
            "started": self.started,
            "models": [{**m.__dict__, "tiers": list(m.tiers)} for m in self.models],
            "pair": [m.name for m in self.pair] if self.pair else None,
            "settings": self.settings.to_dict(),
            "git_commit": _git_commit(self.rootdir),
            "machine": _machine(),
            "libraries": _versions(),
            "command": sys.argv,
            # What each loaded backend reports it loaded, such as the quantization really in
            # effect (a backend may offer describe() -> dict).
            "backends": {name: backend.describe() for name, backend in self._backends.items()
                         if callable(getattr(backend, "describe", None))},
        }
        if finished:
            data["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            data["workers"] = workers
            data["cases"] = len(self.records)
            # What measuring cost: the sampler's own CPU time over the run, beside its interval.
            data["monitor"] = {"interval_s": self.settings.monitor_interval,
                               "cpu_s": sum(r.get("resources", {}).get("monitor_cpu_s", 0.0)
                                            for r in self.records)}
            # The sandbox isolation generated code actually ran under (code suites record it).
            isolation = sorted({str(r["extra"]["isolation"]) for r in self.records
                                if isinstance(r.get("extra"), dict) and r["extra"].get("isolation")})
            if isolation:
                data["sandbox"] = isolation
        return data


def _git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5)
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
