"""What the llama.cpp probe found (extra buffer types on or off), kept per process and per machine.

A verdict holds for one model file, one llama.cpp build and one CPU: one crash per machine, not
per run (see hosted.py for the probe itself).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from pathlib import Path

from harness.models.registry import ModelSpec

# Probe outcomes per model file within this process: a restarted host needs no second probe.
_PROBED: dict[str, dict[str, str]] = {}


def _verdicts_file() -> Path:
    """Where llama.cpp probe verdicts persist between runs (one crash per machine, not per run)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "llm-bench-harness" / "extra-bufts.json"


def _verdict_key(spec: ModelSpec) -> str:
    """The model file, the llama.cpp build and the CPU: a verdict holds while all three do."""
    try:
        version = importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return f"{spec.model}|llama-cpp-python {version}|cpu {hashlib.sha256(flags.encode()).hexdigest()[:16]}"


def known_verdict(spec: ModelSpec) -> dict[str, str] | None:
    if spec.model in _PROBED:
        return _PROBED[spec.model]
    if spec.backend != "llamacpp":  # test doubles are probed afresh in each process
        return None
    try:
        saved = json.loads(_verdicts_file().read_text(encoding="utf-8")).get(_verdict_key(spec))
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(saved, dict) and saved.get("extra_bufts") in ("on", "off"):
        _PROBED[spec.model] = {"extra_bufts": str(saved["extra_bufts"]), "why": f"{saved.get('why')} (probed earlier)"}
        return _PROBED[spec.model]
    return None


def remember_verdict(spec: ModelSpec, verdict: dict[str, str]) -> None:
    _PROBED[spec.model] = verdict
    if spec.backend != "llamacpp":
        return
    path = _verdicts_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            saved = {}
        saved[_verdict_key(spec)] = verdict
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(saved, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(temporary, path)
    except OSError:  # a read-only home: the verdict holds for this process only
        pass


