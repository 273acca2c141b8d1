"""Where the harness finds its registry and keeps its cache and reports: one rule each, for every entry point.

pytest, `harness models`, `harness doctor`, `harness chat` and `harness report` all ask here, so the
same project sees the same models whichever way it is driven:

- registry: `models.toml` at the root folder (pytest's rootdir; the current folder for the `harness`
  command) when there is one, else the default registry shipped inside the package; then
  `--models-file`, whose entries add to those or override them by name.
- cache: `--cache-dir`, else `$XDG_CACHE_HOME/llm-bench-harness`, else `~/.cache/llm-bench-harness`.
- reports: `--report-dir`, else `reports/` under the root folder.

Nothing here reads a file or makes a folder: callers do, when they are used.
"""

from __future__ import annotations

import os
from pathlib import Path

# Package data (pyproject.toml [tool.setuptools.package-data]): present in an installed wheel too.
PACKAGED_REGISTRY = Path(__file__).resolve().parents[1] / "models.toml"  # harness/models.toml
REGISTRY_NAME = "models.toml"
CACHE_NAME = "llm-bench-harness"


def registry_files(models_file: Path | str | None, rootdir: Path) -> list[Path]:
    """The registry files to read, later ones overriding earlier ones by model name."""
    local = Path(rootdir) / REGISTRY_NAME
    files = [local if local.is_file() else PACKAGED_REGISTRY]
    if models_file is not None:
        files.append(Path(models_file))
    return files


def cache_dir(given: Path | str | None = None) -> Path:
    if given is not None:
        return Path(given).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path("~/.cache").expanduser()
    return base / CACHE_NAME


def report_dir(given: Path | str | None, rootdir: Path) -> Path:
    return Path(given) if given is not None else Path(rootdir) / "reports"
