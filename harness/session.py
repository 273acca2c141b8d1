"""One run: settings, run id, selected models, loaded backends, and the collected records.

It lives on config.stash. In a pytest-xdist run every worker has one (to load backends and
run cases) but only the controller writes: the records, the store and the reports.
"""

from __future__ import annotations

import datetime as dt
import getpass
import importlib.metadata
import os
import platform
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from harness.backends.base import Backend
from harness.registry import (
    DEFAULT_REGISTRY,
    ModelSpec,
    RegistryError,
    availability,
    create_backend,
    load_registry,
    select,
)
from harness.report.write import ResultsLog, write_summary
from harness.settings import Settings
from harness.store import Store, open_store

T = TypeVar("T")

# Library versions worth saving with a run: results move when these do.
_LIBRARIES = ("pytest", "pytest-xdist", "llama_cpp_python", "numpy", "transformers", "torch",
              "bitsandbytes", "openai", "ollama")


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
        self.pair: tuple[ModelSpec, ModelSpec] | None = self._pair()
        self.run_id = settings.run_id or new_run_id()
        self.report_dir = settings.report_dir or rootdir / "reports"
        self.records: list[dict[str, Any]] = []
        self.started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self._backends: dict[str, Backend] = {}
        self._memo: dict[Any, Any] = {}
        self._log: ResultsLog | None = None
        self._store: Store | None = None

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

    def memo(self, key: Any, factory: Callable[[], T]) -> T:
        """Per-process cache for suite data such as few-shot examples."""
        if key not in self._memo:
            self._memo[key] = factory()
        return self._memo[key]

    def close(self) -> None:
        for backend in self._backends.values():
            backend.close()
        self._backends.clear()
        if self._log is not None:
            self._log.close()
        if self._store is not None:
            self._store.close()

    # -- the controller's side ------------------------------------------------------------------
    def add(self, record: dict[str, Any]) -> None:
        """Write one record at once (results.jsonl and the store): a crash loses nothing."""
        record["run_id"] = self.run_id
        if self._log is None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._log = ResultsLog(self.run_dir)
            self._store = open_store(self.settings.store or str(self.report_dir / "harness.sqlite"))
            self._store.start_run(self.run_id, self.metadata())
        self._log.append(record)
        assert self._store is not None
        self._store.add(record)
        self.records.append(record)

    def finish(self, workers: int) -> list[Any]:
        """Write the summaries once, at the end; returns the summary rows."""
        if not self.records:
            return []
        metadata = self.metadata(finished=True, workers=workers)
        rows = write_summary(self.run_dir, self.records, metadata)
        assert self._store is not None
        self._store.finish_run(self.run_id, [row.to_dict() for row in rows])
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
        }
        if finished:
            data["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            data["workers"] = workers
            data["cases"] = len(self.records)
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
