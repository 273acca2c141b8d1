"""Many servers, one model: a pool of endpoints that takes each request by load, with failover.

A server backend's registry entry may list several base URLs:

    options = { base_urls = ["http://10.0.0.1:8080/v1", "http://10.0.0.2:8080/v1"], loglikelihood = true }

The model is then one `EndpointPool` over one backend per URL (registry.create_backend):

- each request goes to the healthy endpoint with the fewest requests in flight from every process
  of this machine (pytest-xdist workers, other runs): the pool keeps a marker file per request in
  flight under the temp folder, so workers see each other's load without talking; ties go to the
  endpoint this process asked least, starting at a different one in each worker;
- an endpoint whose request fails in a way worth another try (refused connection, 5xx, 429) or
  times out (`endpoint_timeout_s`, by default the call timeout over the number of endpoints, so
  trying each once fits in one call) leaves the pool for `endpoint_cooldown_s` (30 s) on the whole
  machine, and the request is retried at once on another; a request no endpoint answers is a
  retryable error (the call wrapper's retries and backoff apply);
- a wrong request (HTTP 400, unsupported) is not retried elsewhere: another server would say the same.

Each record names the endpoint that answered (`extra.endpoint`) and how many requests each endpoint
answered for the case (`extra.endpoint_requests`); the summary adds them up per model.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse, urlunparse

from harness.backends.base import (
    Backend,
    BackendBase,
    BackendTimeout,
    Generation,
    LoglikelihoodRequest,
    Loglikelihoods,
    Request,
    RetryableError,
    TextSink,
    Unsupported,
)
from harness.core.processes import alive

if TYPE_CHECKING:  # registry.py imports this module; the spec type only for checkers
    from harness.models.registry import ModelSpec

T = TypeVar("T")
_WORKER = re.compile(r"gw(\d+)$")
COOLDOWN_S = 30.0


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


def pool_urls(spec: ModelSpec) -> list[str] | None:
    """The entry's `base_urls`, checked; None for a single-server entry."""
    urls = spec.options.get("base_urls")
    if urls is None:
        return None
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) and u for u in urls):
        raise ValueError(f"model {spec.name!r}: options.base_urls must be a list of URLs, not {urls!r}")
    return urls


def endpoint_spec(spec: ModelSpec, index: int) -> ModelSpec:
    """The entry as one endpoint's backend sees it: that URL as its `base_url` (`host` for Ollama),
    and a `tokenize_url` on the first endpoint's host moved to this one's."""
    urls = pool_urls(spec) or []
    chosen = urls[index]
    options: dict[str, Any] = {k: v for k, v in spec.options.items() if k != "base_urls"}
    options.update(endpoint=chosen, endpoint_index=index)
    options["host" if spec.backend == "ollama" else "base_url"] = chosen
    if isinstance(options.get("tokenize_url"), str):
        options["tokenize_url"] = _move(options["tokenize_url"], urls[0], chosen)
    return replace(spec, options=options)


class LoadBoard:
    """Requests in flight and endpoints out of the pool, shared by this machine's processes.

    A folder per pool (named by a digest of the model and its URLs) holds, per endpoint, one empty
    file per request in flight (`<pid>-<n>`) and a `down` file with the time it may come back.
    Files of a process that died are not counted and are cleared.
    """

    def __init__(self, key: str, count: int, root: Path | None = None) -> None:
        self.root = (root or Path(tempfile.gettempdir())) / f"llm-bench-pool-{key}"
        self.count = count
        for index in range(count):
            (self.root / str(index)).mkdir(parents=True, exist_ok=True)
        self._serial = itertools.count()

    def enter(self, index: int) -> Path:
        marker = self.root / str(index) / f"{os.getpid()}-{next(self._serial)}"
        marker.touch()
        return marker

    @staticmethod
    def leave(marker: Path) -> None:
        marker.unlink(missing_ok=True)

    def in_flight(self, index: int) -> int:
        count = 0
        for entry in os.scandir(self.root / str(index)):
            pid = entry.name.split("-", 1)[0]
            if not pid.isdigit():
                continue
            if alive(int(pid)):
                count += 1
            else:
                Path(entry.path).unlink(missing_ok=True)
        return count

    def down_until(self, index: int) -> float:
        try:
            return float((self.root / f"{index}.down").read_text() or 0)
        except (OSError, ValueError):
            return 0.0

    def set_down(self, index: int, until: float) -> None:
        path = self.root / f"{index}.down"
        temporary = path.with_name(f"{path.name}.{os.getpid()}")
        temporary.write_text(repr(until))
        os.replace(temporary, path)  # readers see the old time or the new one, never half


@dataclass
class _Failure:
    endpoint: str
    error: Exception


class EndpointPool(BackendBase):
    """One model served by several endpoints; the Backend protocol, each call on the best endpoint.

    Its optional abilities are those every endpoint's backend offers."""

    retired: str | None = None  # a pool is never retired: a failing endpoint only rests

    def __init__(self, spec: ModelSpec, backends: list[Backend], *, cooldown_s: float = COOLDOWN_S,
                 board: LoadBoard | None = None, env: Mapping[str, str] | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.urls = [str(endpoint_spec(spec, i).options["endpoint"]) for i in range(len(backends))]
        self.backends = backends
        self.supports_loglikelihood = all(b.supports_loglikelihood for b in backends)
        self.token_count_source = backends[0].token_count_source
        self.cooldown_s = cooldown_s
        key = hashlib.sha256("\n".join([spec.name, *self.urls]).encode()).hexdigest()[:12]
        self.board = board or LoadBoard(key, len(backends))
        self._offset = worker_index(env)
        self._lock = threading.Lock()
        self._asked = [0] * len(backends)  # requests this process sent to each endpoint
        self.answered: dict[str, int] = {}  # per endpoint, since the last take_answered()
        self.last_endpoint: str | None = None

    # -- choosing ---------------------------------------------------------------------------------
    def _order(self, tried: set[int]) -> list[int]:
        """Untried endpoints, best first: healthy before resting, then fewest in flight on this
        machine, then fewest asked by this process (from this worker's own starting point)."""
        now = time.time()
        n = len(self.backends)
        ranked = []
        for index in range(n):
            if index in tried:
                continue
            resting = self.board.down_until(index) > now
            ranked.append(((resting, self.board.in_flight(index), self._asked[index], (index - self._offset) % n),
                           index))
        return [index for _, index in sorted(ranked)]

    def _run(self, method: str, fn: Callable[[Backend], T]) -> T:
        tried: set[int] = set()
        failures: list[_Failure] = []
        while True:
            with self._lock:  # pick and mark in one step, so two threads do not pick the same idle one
                order = self._order(tried)
                if not order:
                    break
                index = order[0]
                self._asked[index] += 1
                marker = self.board.enter(index)
            tried.add(index)
            try:
                result = fn(self.backends[index])
            except (RetryableError, BackendTimeout) as exc:
                self.board.set_down(index, time.time() + self.cooldown_s)
                failures.append(_Failure(self.urls[index], exc))
                continue
            finally:
                self.board.leave(marker)
            with self._lock:
                self.answered[self.urls[index]] = self.answered.get(self.urls[index], 0) + 1
                self.last_endpoint = self.urls[index]
            return result
        detail = "; ".join(f"{f.endpoint}: {f.error}" for f in failures)
        raise RetryableError(f"{self.name}: no endpoint of the pool answered {method} ({detail})")

    # -- the backend protocol -----------------------------------------------------------------------
    def generate(self, request: Request) -> Generation:
        return self._run("generate", lambda backend: backend.generate(request))

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> Loglikelihoods:
        return self._run("loglikelihood", lambda backend: backend.loglikelihood(requests))

    @property
    def abilities(self) -> frozenset[str]:
        return frozenset.intersection(*(frozenset(b.abilities) for b in self.backends))

    def _optional(self, ability: str) -> None:
        if ability not in self.abilities:
            raise Unsupported(f"{self.name}: the pool's backends cannot {ability.replace('_', ' ')}")

    def loglikelihood_groups(self, groups: list[list[LoglikelihoodRequest]]) -> list[Loglikelihoods]:
        self._optional("loglikelihood_groups")
        return self._run("loglikelihood_groups", lambda backend: backend.loglikelihood_groups(groups))

    def chat_text(self, messages: tuple[dict[str, Any], ...]) -> str:
        self._optional("chat_text")
        return self._run("chat_text", lambda backend: backend.chat_text(messages))

    def count_tokens(self, content: str | list[dict[str, Any]]) -> int:
        self._optional("count_tokens")
        return self._run("count_tokens", lambda backend: int(backend.count_tokens(content)))

    def generate_stream(self, request: Request, on_text: TextSink) -> Generation:
        self._optional("generate_stream")
        return self._run("generate_stream", lambda backend: backend.generate_stream(request, on_text))

    def chat_sampling(self) -> dict[str, float]:
        self._optional("chat_sampling")
        return self._run("chat_sampling", lambda backend: backend.chat_sampling())

    def process(self) -> int | None:
        return None  # several servers: no one process to sample

    def describe(self) -> dict[str, Any]:
        return {**self.backends[0].describe(), "endpoints": list(self.urls),
                "balance": "least in flight on this machine, failover", "cooldown_s": self.cooldown_s}

    def take_answered(self) -> dict[str, int]:
        """The requests each endpoint answered since the last take (a process runs one case at a
        time, so taken at the end of a case: that case's)."""
        with self._lock:
            answered, self.answered = self.answered, {}
        return answered

    def close(self) -> None:
        for backend in self.backends:
            backend.close()


def make_pool(spec: ModelSpec, factory: Callable[[ModelSpec, float | None], Backend],
              timeout_s: float | None) -> EndpointPool:
    """The pool of an entry with base_urls: one backend per URL, each with the endpoint timeout."""
    urls = pool_urls(spec) or []
    per_endpoint = spec.options.get("endpoint_timeout_s")
    if per_endpoint is None and timeout_s is not None:
        per_endpoint = timeout_s / len(urls)
    cooldown = float(spec.options.get("endpoint_cooldown_s", COOLDOWN_S))
    backends = [factory(endpoint_spec(spec, index), None if per_endpoint is None else float(per_endpoint))
                for index in range(len(urls))]
    return EndpointPool(spec, backends, cooldown_s=cooldown)


def endpoint_of(backend: Any) -> str | None:
    """The endpoint that answered a backend's latest request (a pool), or the one it talks to."""
    if isinstance(backend, EndpointPool):
        return backend.last_endpoint
    options = getattr(backend.spec, "options", None) or {}  # spec: None for a backend made from code
    return options.get("endpoint")


def requests_by_endpoint(backends: list[Any]) -> dict[str, int]:
    """For the record: the requests each endpoint of the case's pools answered during the case."""
    counts: dict[str, int] = {}
    for backend in {id(b): b for b in backends if isinstance(b, EndpointPool)}.values():
        for url, n in backend.take_answered().items():
            counts[url] = counts.get(url, 0) + n
    return counts
