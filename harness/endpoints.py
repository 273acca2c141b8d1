"""Many endpoints, one model: a server backend's registry entry may list several base URLs.

    options = { base_urls = ["http://10.0.0.1:8080/v1", "http://10.0.0.2:8080/v1"], loglikelihood = true }

pytest-xdist worker i (PYTEST_XDIST_WORKER=gw<i>) talks to endpoint i mod n, so `pytest -n 4` over
two servers puts two workers on each; a run without xdist uses the first. The chosen URL becomes
the entry's `base_url` (`host` for Ollama) before the backend is made, and `options.endpoint`
names it, so each record can say which server answered (extra["endpoint"]). A `tokenize_url` on
the first endpoint's host and port follows the chosen endpoint to its host and port.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse, urlunparse

if TYPE_CHECKING:  # registry.py imports this module; the spec type only for checkers
    from harness.registry import ModelSpec

_WORKER = re.compile(r"gw(\d+)$")


def worker_index(env: Mapping[str, str] | None = None) -> int:
    """This process's pytest-xdist worker number (gw3 -> 3), 0 without xdist."""
    found = _WORKER.match((env if env is not None else os.environ).get("PYTEST_XDIST_WORKER", ""))
    return int(found.group(1)) if found else 0


def _move(url: str, first: str, chosen: str) -> str:
    """`url` moved from the first endpoint's host:port to the chosen one's."""
    parsed, old, new = urlparse(url), urlparse(first), urlparse(chosen)
    if parsed.netloc != old.netloc:
        return url
    return urlunparse(parsed._replace(scheme=new.scheme, netloc=new.netloc))


def for_worker(spec: ModelSpec, env: Mapping[str, str] | None = None) -> ModelSpec:
    """The spec with this worker's endpoint as its base URL; unchanged without `base_urls`."""
    urls = spec.options.get("base_urls")
    if not urls:
        return spec
    if not isinstance(urls, list) or not all(isinstance(u, str) and u for u in urls):
        raise ValueError(f"model {spec.name!r}: options.base_urls must be a list of URLs, not {urls!r}")
    index = worker_index(env) % len(urls)
    chosen = urls[index]
    options: dict[str, Any] = {**spec.options, "endpoint": chosen, "endpoint_index": index}
    options["host" if spec.backend == "ollama" else "base_url"] = chosen
    if isinstance(options.get("tokenize_url"), str):
        options["tokenize_url"] = _move(options["tokenize_url"], urls[0], chosen)
    return replace(spec, options=options)


def endpoint_of(backend: Any) -> str | None:
    """The endpoint a backend made by for_worker talks to, for the record."""
    options = getattr(backend.spec, "options", None) or {}  # spec: None for a backend made from code
    return options.get("endpoint")
