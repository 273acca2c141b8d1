"""Many servers, one model: the endpoint pool takes each request by load, with failover
(harness/models/endpoints.py), and each record names the endpoint that answered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from fake_servers import serve
from support import BenchRun

from harness.backends.base import (
    Backend,
    BackendBase,
    BackendError,
    Generation,
    Request,
    RetryableError,
    Unsupported,
    count_tokens,
)
from harness.models.endpoints import EndpointPool, LoadBoard, endpoint_spec, worker_index
from harness.models.registry import ModelSpec, availability, create_backend

URLS = ["http://127.0.0.1:8081/v1", "http://127.0.0.1:8082/v1", "http://127.0.0.1:8083/v1"]


def spec(backend: str = "openai", urls: list[str] = URLS, **options: Any) -> ModelSpec:
    return ModelSpec(name="m", backend=backend, model="m",
                     options={"base_urls": urls, "tokenize_url": "http://127.0.0.1:8081/extras/tokenize", **options})


def test_each_endpoint_gets_its_url_and_tokenize_url() -> None:
    assert worker_index({}) == 0 and worker_index({"PYTEST_XDIST_WORKER": "gw7"}) == 7
    second = endpoint_spec(spec(), 1).options
    assert (second["base_url"], second["endpoint"], second["endpoint_index"]) == (URLS[1], URLS[1], 1)
    assert second["tokenize_url"] == "http://127.0.0.1:8082/extras/tokenize" and "base_urls" not in second
    assert endpoint_spec(spec("ollama"), 2).options["host"] == URLS[2]


def test_bad_base_urls_name_the_model() -> None:
    bad = ModelSpec(name="m", backend="openai", model="m", options={"base_urls": "http://x"})
    assert "model 'm': options.base_urls must be a list of URLs" in str(availability(bad))


def test_a_pool_runs_while_one_endpoint_answers() -> None:
    def models(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "2")
        h.end_headers()
        h.wfile.write(b"{}")

    with serve({"/v1/models": models}) as (live, _):
        assert availability(spec(urls=["http://127.0.0.1:9/v1", f"{live}/v1"])) is None
        pool = create_backend(spec(urls=["http://127.0.0.1:9/v1", f"{live}/v1"]), timeout_s=8)
        assert isinstance(pool, EndpointPool) and pool.urls == ["http://127.0.0.1:9/v1", f"{live}/v1"]
        assert [b.client.timeout for b in pool.backends] == [4.0, 4.0]  # type: ignore[attr-defined]
        pool.close()
    reason = availability(spec(urls=["http://127.0.0.1:9/v1", "http://127.0.0.1:7/v1"]))
    assert reason is not None and reason.startswith("no endpoint of the pool can run")
    assert "127.0.0.1:9" in reason and "127.0.0.1:7" in reason
    # Making the pool pings nothing (a busy server may miss a ping): its requests find out.
    dead = create_backend(spec(urls=["http://127.0.0.1:9/v1", "http://127.0.0.1:7/v1"]), timeout_s=4)
    with pytest.raises(RetryableError, match="no endpoint of the pool answered generate"):
        dead.generate(Request(prompt="q"))
    dead.close()


class Fake(BackendBase):
    """An endpoint's backend: answers its label, or fails as told, and counts who asked when."""

    def __init__(self, label: str, fail: Exception | None = None, delay_s: float = 0.0) -> None:
        self.name, self.label, self.fail, self.delay_s = label, label, fail, delay_s
        self.calls = 0
        self.busy = self.most_busy = 0
        self._lock = threading.Lock()

    def generate(self, request: Request) -> Generation:
        with self._lock:
            self.calls += 1
            self.busy += 1
            self.most_busy = max(self.most_busy, self.busy)
        try:
            time.sleep(self.delay_s)
            if self.fail is not None:
                raise self.fail
            return Generation(text=self.label)
        finally:
            with self._lock:
                self.busy -= 1


class Counting(Fake):
    """A Fake that also counts tokens (one per character), as a server with a tokenizer does."""

    token_count_source = "server"

    def count_tokens(self, content: str | list[dict[str, Any]]) -> int:
        self.calls += 1
        return len(str(content))


def pool_of(tmp_path: Path, *backends: Fake, cooldown_s: float = 30.0, worker: str = "gw0") -> EndpointPool:
    board = LoadBoard("t", len(backends), root=tmp_path)
    return EndpointPool(spec(urls=URLS[:len(backends)]), list(backends), cooldown_s=cooldown_s, board=board,
                        env={"PYTEST_XDIST_WORKER": worker})


def answers(pool: EndpointPool, n: int) -> list[str]:
    return [pool.generate(Request(prompt="q")).text for _ in range(n)]


def test_requests_go_to_the_least_loaded_endpoint(tmp_path: Path) -> None:
    pool = pool_of(tmp_path, Fake("a"), Fake("b"), Fake("c"))
    # Another process of this machine has two requests in flight on a: it is the most loaded.
    other = [pool.board.root / "0" / f"{os.getppid()}-{n}" for n in range(2)]
    for marker in other:
        marker.touch()
    assert answers(pool, 4) == ["b", "c", "b", "c"]
    for marker in other:
        marker.unlink()
    # Idle again and asked least by this process; then ties go by the order from this worker's start.
    assert answers(pool, 4) == ["a", "a", "a", "b"]
    assert pool.take_answered() == {URLS[0]: 3, URLS[1]: 3, URLS[2]: 2} and pool.take_answered() == {}
    # Another worker starts from another endpoint.
    assert answers(pool_of(tmp_path / "w1", Fake("a"), Fake("b"), Fake("c"), worker="gw1"), 3) == ["b", "c", "a"]


def test_requests_at_once_spread_over_the_endpoints(tmp_path: Path) -> None:
    fakes = [Fake(x, delay_s=0.3) for x in "abc"]
    pool = pool_of(tmp_path, *fakes)
    threads = [threading.Thread(target=pool.generate, args=(Request(prompt="q"),)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [f.calls for f in fakes] == [1, 1, 1] and all(f.most_busy == 1 for f in fakes)


def test_markers_of_dead_processes_do_not_count(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    board = LoadBoard("t", 1, root=tmp_path)
    marker = board.root / "0" / f"{dead.stdout.strip()}-0"
    marker.touch()
    assert board.in_flight(0) == 0 and not marker.exists()


def test_a_failing_endpoint_leaves_the_pool_and_its_request_goes_to_another(tmp_path: Path) -> None:
    broken = Fake("a", fail=RetryableError("a: cannot connect"))
    pool = pool_of(tmp_path, broken, Fake("b"), cooldown_s=0.5)
    assert answers(pool, 3) == ["b", "b", "b"] and broken.calls == 1  # tried once, then resting
    assert pool.board.down_until(0) > time.time()
    # Every process of the machine sees it resting.
    twin = EndpointPool(spec(urls=URLS[:2]), [Fake("a2"), Fake("b2")], board=pool.board)
    assert answers(twin, 2) == ["b2", "b2"]
    time.sleep(0.6)  # back in the pool after the cooldown: tried again first (asked least)
    assert answers(pool, 1) == ["b"] and broken.calls == 2


def test_a_wrong_request_is_not_sent_elsewhere(tmp_path: Path) -> None:
    wrong = Fake("a", fail=BackendError("a: HTTP 400 bad request"))
    other = Fake("b")
    pool = pool_of(tmp_path, wrong, other)
    with pytest.raises(BackendError, match="HTTP 400"):
        pool.generate(Request(prompt="q"))
    assert (wrong.calls, other.calls) == (1, 0) and pool.board.down_until(0) == 0.0


def test_no_endpoint_answering_is_a_retryable_error_naming_each(tmp_path: Path) -> None:
    pool = pool_of(tmp_path, Fake("a", fail=RetryableError("refused")), Fake("b", fail=RetryableError("503")))
    with pytest.raises(RetryableError) as raised:
        pool.generate(Request(prompt="q"))
    assert f"{URLS[0]}: refused" in str(raised.value) and f"{URLS[1]}: 503" in str(raised.value)


def test_a_pool_is_a_backend_whose_abilities_every_endpoint_offers(tmp_path: Path) -> None:
    counting = pool_of(tmp_path / "c", Counting("a"), Counting("b"))
    assert isinstance(counting, Backend) and counting.retired is None and counting.process() is None
    assert counting.abilities == frozenset({"count_tokens"}) and counting.token_count_source == "server"
    assert count_tokens(counting, "four") == 4 and count_tokens(counting, "sixsix") == 6
    assert counting.backends[0].calls == 1 and counting.backends[1].calls == 1  # type: ignore[attr-defined]
    assert counting.describe()["endpoints"] == URLS[:2]
    mixed = pool_of(tmp_path / "m", Counting("a"), Fake("b"))  # one endpoint cannot count: the pool cannot
    assert mixed.abilities == frozenset() and not mixed.supports_loglikelihood
    with pytest.raises(Unsupported, match="cannot count tokens"):
        count_tokens(mixed, "q")
    with pytest.raises(Unsupported, match="cannot chat text"):
        mixed.chat_text(({"role": "user", "content": "q"},))


def test_a_pool_is_for_server_backends_not_hosted_ones() -> None:
    hosted = ModelSpec(name="m", backend="llamacpp", model="m.gguf", options={"base_urls": URLS})
    with pytest.raises(ValueError, match="options.base_urls is for server backends"):
        create_backend(hosted)


def _answer(letter: str, stall_s: float = 0.0, die_after: int | None = None) -> Any:
    served = [0]

    def handler(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        served[0] += 1
        if die_after is not None and served[0] > die_after:
            h.close_connection = True  # a server that died mid-request: the connection drops
            h.connection.shutdown(2)
            return
        time.sleep(stall_s)
        chunk = ('{"id":"c","object":"text_completion","created":1,"model":"m","choices":'
                 f'[{{"text":"{letter}","index":0,"logprobs":null,"finish_reason":"stop"}}]}}')
        payload = f"data: {chunk}\n\ndata: [DONE]\n\n".encode()
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)

    return handler


def _models(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
    h.send_response(200)
    h.send_header("Content-Length", "2")
    h.end_headers()
    h.wfile.write(b"{}")


def test_a_stalled_and_a_dying_server_lose_no_case(bench: BenchRun, tmp_path: Path) -> None:
    # Three real HTTP servers on loopback: A answers, B stalls past the endpoint timeout, C answers
    # twice and then drops every connection. Two xdist workers share the pool.
    with serve({"/v1/completions": _answer("A"), "/v1/models": _models}) as (a, got_a), \
            serve({"/v1/completions": _answer("B", stall_s=5), "/v1/models": _models}) as (b, got_b), \
            serve({"/v1/completions": _answer("C", die_after=2), "/v1/models": _models}) as (c, got_c):
        registry = Path(bench.pytester.path / "pool.toml")
        registry.write_text('[[models]]\nname = "pool"\nbackend = "openai"\nmodel = "m"\n'
                            f'options = {{ base_urls = ["{a}/v1", "{b}/v1", "{c}/v1"], endpoint_timeout_s = 1.0 }}\n')
        result = bench("--models-file", str(registry), "--models", "pool", "--samples", "12", "--mmlu-mode",
                       "generate", "-n", "2", "--retries", "0", "--run-id", "pooled")
    assert result.ret == 0, result.stdout.str()
    records = bench.records()
    assert len(records) == 12 and {r["status"] for r in records} <= {"ok", "wrong"}  # no case lost
    by_endpoint = {f"{a}/v1": "A", f"{c}/v1": "C"}
    assert all(by_endpoint[r["extra"]["endpoint"]] == r["prediction"] for r in records)
    assert all(sum(r["extra"]["endpoint_requests"].values()) == 1 for r in records)
    asked_b = [r for r in got_b if r["path"] == "/v1/completions"]
    assert len(asked_b) == 1  # tried once, timed out, out of the pool for the rest of the run
    answered_c = sum(r["prediction"] == "C" for r in records)
    asked_c = len([r for r in got_c if r["path"] == "/v1/completions"])
    assert 1 <= answered_c <= 2 < asked_c <= 4  # in use, then dropped mid-run, then out of the pool
    summary = json.loads((bench.run_dirs()[-1] / "summary.json").read_text())
    assert summary["endpoints"]["pool"] == {k: v for k, v in {f"{a}/v1": 12 - answered_c,
                                                              f"{c}/v1": answered_c}.items() if v}
    assert len([r for r in got_a if r["path"] == "/v1/completions"]) == 12 - answered_c
