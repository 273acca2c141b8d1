"""What a process running cases needs: settings, the selected models, loaded backends, monitors.

Every process that runs cases has one RunSession on config.stash: a plain run's only process, and
each pytest-xdist worker. It loads each model once, owns the call executors and the resource
monitors, and says at the end what it loaded (`loaded()`), which a worker sends back to the
controller. Collecting records and writing the run's files is the controller's (controller.py).
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from harness.backends.base import Backend
from harness.backends.engine_rate import engine_rate
from harness.core import locations
from harness.core.settings import Settings
from harness.models.cache import ResponseCache
from harness.models.call import CallPolicy, Executors, ModelCall
from harness.models.registry import (
    ModelSpec,
    RegistryError,
    availability,
    choose,
    create_backend,
    load_registry,
)
from harness.monitor.sampler import Monitor

T = TypeVar("T")


def new_run_id() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def registry_files(settings: Settings, rootdir: Path) -> list[Path]:
    return locations.registry_files(settings.models_file, rootdir)  # the one rule (harness/core/locations.py)


class RunSession:
    """One process's share of a run (the `harness` fixture)."""

    def __init__(self, settings: Settings, rootdir: Path, run_id: str,
                 answered: frozenset[str] = frozenset()) -> None:
        self.settings = settings
        self.rootdir = rootdir
        self.run_id = run_id
        # --resume: the cases the earlier attempt answered (not asked again).
        self.answered = answered
        self.registry = load_registry(registry_files(settings, rootdir))
        chosen = choose(self.registry, settings.models)  # a named model that cannot run: RegistryError
        self.models: list[ModelSpec] = chosen.models
        self.unrunnable: dict[str, str] = chosen.unrunnable  # chosen by tier/all, cannot run: skipped
        self.pair: tuple[ModelSpec, ModelSpec] | None = self._pair()
        self._backends: dict[str, Backend] = {}
        self._memo: dict[Any, Any] = {}
        self._policy: CallPolicy | None = None
        self._executors = Executors()
        self._monitors: dict[frozenset[int], Monitor] = {}

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

    def unavailable_reasons(self) -> dict[str, str]:
        """Why each default model cannot run here (for the 'nothing selected' error)."""
        return {m.name: availability(m) or "" for m in self.registry.values() if m.default}

    # -- models ---------------------------------------------------------------------------------
    def backend(self, spec: ModelSpec) -> Backend:
        """Load a model once per process; every case of that model shares it, and a hosted model's
        host is shared by every process of this run on this machine (backends/hosted.py)."""
        if spec.name not in self._backends:
            self._backends[spec.name] = create_backend(spec, timeout_s=self.settings.call_timeout,
                                                       shared_by=self.run_id)
        return self._backends[spec.name]

    def model_call(self, spec: ModelSpec) -> ModelCall:
        """A fresh per-case wrapper around the shared backend, with this run's call policy."""
        return ModelCall(spec, self.backend(spec), self.policy, self._executors)

    @property
    def policy(self) -> CallPolicy:
        if self._policy is None:
            cache = ResponseCache(self.settings.cache_dir) if self.settings.cache else None
            self._policy = CallPolicy(timeout_s=self.settings.call_timeout or None,
                                      retries=self.settings.retries, cache=cache)
        return self._policy

    def loaded(self) -> dict[str, dict[str, Any]]:
        """What each loaded backend reports it loaded and how it runs (its effective settings,
        the quantization really in effect); the registry entry where it says nothing more."""
        described = {}
        for name, backend in self._backends.items():
            data = backend.describe()
            if "engine_rate" not in data:  # a hosted model says its own (backends/hosted.py)
                # In this process, after its cases: measured here, or why not (a server).
                data["engine_rate"] = engine_rate(backend, self.registry[name].model if name in self.registry
                                                  else name)
            described[name] = {"backend": self.registry[name].backend if name in self.registry else "", **data}
        return described

    # -- measuring ------------------------------------------------------------------------------
    def monitor(self, pids: set[int], children: bool = True) -> Monitor:
        """One sampler per process tree for the whole run; cases take windows of it. `children`:
        False for a process that starts none (a model host), whose /proc scan would be wasted."""
        key = frozenset(pids)
        if key not in self._monitors:
            # Children matter for servers (Ollama's runner); this process's own are not inference.
            servers = children and any(pid != os.getpid() for pid in pids)
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
        self._monitors.clear()
        # Executors first: a call still running past its timeout is abandoned, not waited for.
        self._executors.shutdown()
        for backend in self._backends.values():
            backend.close()
        self._backends.clear()
        if self._policy is not None and self._policy.cache is not None:
            self._policy.cache.close()
