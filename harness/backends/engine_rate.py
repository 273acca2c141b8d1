"""The engine's own speed on this machine: an in-process model's prompt and decode tokens per second.

A run's throughput means little without the engine's limit beside it: MMLU at 515 prompt tokens/s
is the engine's limit on a 2-core CPU, and 60 completion tokens/s may be far below it. So each
model host measures its engine once: one prompt of PROMPT_TOKENS evaluated, then DECODE_TOKENS
decoded greedily after it (about a second on a small model), timed by the backend itself
(`measure_engine_rate`). The rates hold for one model file, one library build, one CPU and one
set of threads and batch settings, so they are kept in the cache folder (locations.py) under that
key, the way host_verdicts.py keeps the AMX verdict: a second run, or a restarted host, reads them
instead of measuring again. The figure is only as good as the machine was quiet then: the load
average at the time is kept with it, and deleting the file (or its entry) measures afresh.

The host measures when its client asks, after the probe and before any case: the time is the
load's, never a case's (the monitor samples cases only), and the measurement's own seconds and
CPU seconds are kept beside the rates. A backend whose engine runs elsewhere (a server) has no
identity here and is said to be unmeasured, with the reason, never given a rate.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.backends.base import Backend, BackendError
from harness.core.locations import cache_dir

PROMPT_TOKENS = 256
DECODE_TOKENS = 32
RATES_FILE = "engine-rates.json"

# Measurements made by this process (the test of the cache counts them in the host).
measurements = 0


def rates_file() -> Path:
    return cache_dir() / RATES_FILE


def cpu_digest() -> str:
    """The CPU as its flags say (model names vary between identical cores' microcode reports)."""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return hashlib.sha256(flags.encode()).hexdigest()[:16]


def rate_key(model: str, identity: Mapping[str, Any]) -> str:
    """The model file, the engine's identity (library and version, threads, batch settings) and
    the CPU: the rates hold while all of them do."""
    parts = [model] + [f"{name} {identity[name]}" for name in sorted(identity)] + [f"cpu {cpu_digest()}"]
    return "|".join(parts)


def not_measured(why: str) -> dict[str, Any]:
    return {"measured": False, "why": why}


def _read(key: str) -> dict[str, Any] | None:
    try:
        saved = json.loads(rates_file().read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(saved, dict) and all(isinstance(saved.get(k), (int, float)) and saved[k] > 0
                                       for k in ("prompt_tokens_per_s", "decode_tokens_per_s")):
        return saved
    return None


def _write(key: str, rate: Mapping[str, Any]) -> None:
    path = rates_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            saved = saved if isinstance(saved, dict) else {}
        except (OSError, ValueError):
            saved = {}
        saved[key] = dict(rate)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")  # hosts of two runs may write at once
        temporary.write_text(json.dumps(saved, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(temporary, path)
    except OSError:  # a read-only cache folder: the rates hold for this host only
        pass


def engine_rate(backend: Backend, model: str, model_lock: Any = None) -> dict[str, Any]:
    """The engine's rates for `backend` (loaded from `model`): read from the cache folder where
    this engine was measured before on this machine, else measured now and kept. `cached` says
    which; a backend with no engine here is `measured: False` with the reason. A model host
    passes its lock (held): its generation may take a batched path, measured as such."""
    global measurements
    identity = backend.engine_identity(batched=model_lock is not None)
    if identity is None:
        return not_measured(f"{backend.name}: no engine of its own in the harness's processes (a server's, "
                            "or a test double): its own rate is not measured")
    key = rate_key(model, identity)
    saved = _read(key)
    if saved is not None:
        return {**saved, "cached": True}
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        prompt_s, decode_s = backend.measure_engine_rate(PROMPT_TOKENS, DECODE_TOKENS, model_lock)
    except BackendError as exc:
        return not_measured(f"{backend.name}: measuring the engine failed: {exc}")
    measurements += 1
    if prompt_s <= 0 or decode_s <= 0:
        return not_measured(f"{backend.name}: the engine's timings were not positive ({prompt_s}, {decode_s})")
    rate = {"measured": True, "prompt_tokens_per_s": PROMPT_TOKENS / prompt_s,
            "decode_tokens_per_s": DECODE_TOKENS / decode_s, "prompt_tokens": PROMPT_TOKENS,
            "decode_tokens": DECODE_TOKENS, **{f"engine_{k}": v for k, v in identity.items()},
            "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            # What measuring cost, apart from any case: its wall and CPU seconds in the host.
            "measure_s": time.perf_counter() - wall, "measure_cpu_s": time.process_time() - cpu,
            # Other work on the machine slows the engine (threads of a busy core wait their turn):
            # the load when it was measured says how far to trust the figure.
            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    _write(key, rate)
    return {**rate, "cached": False}
