"""models.toml -> ModelSpec, model selection by name or tier, and backend factories by name.

Backends are imported lazily: selecting the oracle must not import llama_cpp, and a registry
entry for a backend whose package is missing is "not available here", not an import error.
"""

from __future__ import annotations

import importlib
import inspect
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.backends.base import Backend
from harness.core.locations import PACKAGED_REGISTRY
from harness.models.endpoints import endpoint_spec, make_pool, pool_urls

# The registry shipped inside the package (harness/core/locations.py says which file a run reads).
DEFAULT_REGISTRY = PACKAGED_REGISTRY

# backend name -> "module:factory". The factory takes a ModelSpec and returns a Backend; the
# module may also define `available(spec) -> str | None` (None when it can run, else the reason).
# None: a backend the registry may name but this version does not implement yet.
BACKENDS: dict[str, str | None] = {
    "llamacpp": "harness.backends.llamacpp:LlamaCppBackend",
    "oracle": "harness.backends.oracle:OracleBackend",
    "scripted": "harness.backends.scripted:ScriptedBackend",
    "transformers": "harness.backends.transformers:TransformersBackend",
    "openai": "harness.backends.openai:OpenAIBackend",
    "ollama": "harness.backends.ollama:OllamaBackend",
}

_FIELDS = {"name", "backend", "model", "tiers", "prompt_style", "quantization", "price_in",
           "price_out", "default", "options", "host", "note"}
# Backends that stand in for a model to test the harness itself: never part of `--models all`
# or a tier (name them to run them).
TEST_DOUBLES = frozenset({"oracle", "scripted"})
# Backends whose library runs the model inside the calling process: they run in a model host of
# their own (backends/hosted.py) unless the entry says `host = false`.
HOSTED_BY_DEFAULT = frozenset({"llamacpp", "transformers"})
HOSTED = "harness.backends.hosted:HostedBackend"


class RegistryError(ValueError):
    """A bad registry file or an unknown model/tier; the message names the culprit."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    backend: str
    model: str
    tiers: tuple[str, ...] = ()
    prompt_style: str = "base"
    quantization: str = ""
    price_in: float = 0.0  # USD per million input tokens
    price_out: float = 0.0  # USD per million output tokens
    default: bool = False
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    # True: the model runs in a host process of its own; None: the backend's default (hosted for
    # in-process libraries, see HOSTED_BY_DEFAULT); False: in the calling process.
    host: bool | None = None
    # Why the entry is loaded as it is where that differs from the project it replaces (a GGUF
    # served by Ollama where the original loaded NF4 in transformers, an API for a local model).
    note: str = ""

    @property
    def test_double(self) -> bool:
        return self.backend in TEST_DOUBLES

    @property
    def hosted(self) -> bool:
        return self.backend in HOSTED_BY_DEFAULT if self.host is None else self.host

    @property
    def markers(self) -> list[str]:
        return [f"tier_{marker_safe(t)}" for t in self.tiers] + [f"backend_{self.backend}"]

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.price_in + completion_tokens * self.price_out) / 1e6


def marker_safe(text: str) -> str:
    """Tier names such as "0.5b" become valid marker names ("0_5b")."""
    return "".join(c if c.isalnum() or c == "_" else "_" for c in text)


def _parse(path: Path) -> list[ModelSpec]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(f"{path}: model registry file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{path}: not valid TOML: {exc}") from None
    entries = data.get("models", [])
    if not isinstance(entries, list):
        raise RegistryError(f"{path}: 'models' must be an array of tables ([[models]])")
    specs = []
    for index, entry in enumerate(entries, start=1):
        where = f"{path}, model #{index}"
        unknown = set(entry) - _FIELDS
        if unknown:
            raise RegistryError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(_FIELDS)}")
        for required in ("name", "backend", "model"):
            if not isinstance(entry.get(required), str) or not entry[required]:
                raise RegistryError(f"{where}: field {required!r} is required (a non-empty string)")
        if entry["backend"] not in BACKENDS:
            raise RegistryError(f"{where} ({entry['name']}): field 'backend': unknown backend "
                                f"{entry['backend']!r}; known: {sorted(BACKENDS)}")
        if "host" in entry and not isinstance(entry["host"], bool):
            raise RegistryError(f"{where} ({entry['name']}): field 'host' must be true or false")
        if entry.get("prompt_style", "base") not in ("base", "chat"):
            raise RegistryError(f"{where} ({entry['name']}): field 'prompt_style' must be base or chat")
        specs.append(ModelSpec(**{**entry, "tiers": tuple(entry.get("tiers", ()))}))
    return specs


def load_registry(paths: Sequence[Path]) -> dict[str, ModelSpec]:
    """Later files override earlier ones by name; order within a file is kept."""
    models: dict[str, ModelSpec] = {}
    for path in paths:
        for spec in _parse(Path(path)):
            models[spec.name] = spec
    return models


def availability(spec: ModelSpec) -> str | None:
    """None when the model can run on this machine, else the reason it cannot."""
    target = BACKENDS[spec.backend]
    try:
        urls = pool_urls(spec)  # several base_urls: a pool (endpoints.py) runs while one endpoint does
    except ValueError as exc:
        return str(exc)
    if urls is not None:
        reasons = [availability(endpoint_spec(spec, index)) for index in range(len(urls))]
        return None if any(r is None for r in reasons) else "no endpoint of the pool can run: " + "; ".join(
            f"{url}: {reason}" for url, reason in zip(urls, reasons, strict=True))
    if target is None:
        return f"backend {spec.backend!r} is not implemented in this version of the harness"
    module_name, _, _ = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        return f"backend {spec.backend!r} needs {exc.name!r} (not installed)"
    check = getattr(module, "available", None)
    return check(spec) if check else None


def select(models: dict[str, ModelSpec], wanted: Iterable[str] | None) -> list[ModelSpec]:
    """Pick by model name or tier. None: the default models that can run here. `all` and a tier
    never include a test double (the oracle, scripted); a name does."""
    if wanted is None:
        return [m for m in models.values() if m.default and availability(m) is None]
    chosen: dict[str, ModelSpec] = {}
    for token in wanted:
        if token == "all":
            chosen.update({n: m for n, m in models.items() if not m.test_double})
        elif token in models:
            chosen[token] = models[token]
        else:
            tiered = {n: m for n, m in models.items() if token in m.tiers}
            if not tiered:
                tiers = sorted({t for m in models.values() for t in m.tiers})
                raise RegistryError(f"unknown model or tier {token!r}; models: {', '.join(models)}; "
                                    f"tiers: {', '.join(tiers)}")
            chosen.update({n: m for n, m in tiered.items() if not m.test_double})
    return list(chosen.values())


@dataclass
class Selection:
    models: list[ModelSpec]
    unrunnable: dict[str, str] = field(default_factory=dict)  # model name -> why it cannot run here


def choose(models: dict[str, ModelSpec], wanted: Sequence[str] | None) -> Selection:
    """--models as a run takes it: what `select` picks, where a model chosen by a tier or `all`
    that cannot run here is kept as unrunnable (its cases are skipped with the reason, as with
    -k/-m) and a model named explicitly that cannot run stops the run (RegistryError: exit 4)."""
    chosen = select(models, wanted)
    if wanted is None:
        return Selection(chosen)
    named = set(wanted)
    unrunnable: dict[str, str] = {}
    for spec in chosen:
        reason = availability(spec)
        if reason is None:
            continue
        if spec.name in named:
            raise RegistryError(f"model {spec.name!r} cannot run here: {reason}")
        unrunnable[spec.name] = reason
    return Selection(chosen, unrunnable)


def create_backend(spec: ModelSpec, *, timeout_s: float | None = None, shared_by: str | None = None) -> Backend:
    """Load the model a registry entry names: in a model host of its own where `spec.hosted`
    (backends/hosted.py), else here; an entry with several `base_urls` is a pool of one backend per
    server (endpoints.py). `timeout_s` (the run's --call-timeout) reaches the backends that talk to a
    server, so a call that times out stops its request too. `shared_by` (a run id) makes every process
    of that run on this machine share one host per model."""
    # A pool is not pinged here: a busy server may miss the ping's second while it answers another
    # worker, and one that is down rests out of the pool at its first request (endpoints.py).
    pooled = pool_urls(spec) is not None
    if pooled and spec.hosted:  # a host runs one in-process model; a pool spreads requests over servers
        raise RegistryError(f"model {spec.name!r}: options.base_urls is for server backends; backend "
                            f"{spec.backend!r} runs its model in a host process (host = true)")
    reason = availability(spec) if not pooled else None
    if reason is not None:
        raise RegistryError(f"model {spec.name!r} cannot run here: {reason}")
    target = HOSTED if spec.hosted else str(BACKENDS[spec.backend])
    module_name, _, factory_name = target.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), factory_name)
    except ModuleNotFoundError as exc:
        raise RegistryError(f"model {spec.name!r} cannot run here: backend {spec.backend!r} needs "
                            f"{exc.name!r} (not installed)") from None
    takes_timeout = "timeout_s" in inspect.signature(factory).parameters

    def make(entry: ModelSpec, timeout: float | None) -> Backend:
        if spec.hosted and shared_by is not None:
            return factory(entry, timeout_s=timeout, shared_by=shared_by)
        return factory(entry, timeout_s=timeout) if timeout is not None and takes_timeout else factory(entry)

    if pooled:  # several servers of one model: a pool by load, with failover
        return make_pool(spec, make, timeout_s)
    return make(spec, timeout_s)
