"""Many endpoints, one model: xdist worker i talks to base_urls[i mod n] (harness/endpoints.py),
and each record names the endpoint that answered."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from fake_servers import serve
from support import BenchRun

from harness.endpoints import for_worker, worker_index
from harness.registry import ModelSpec, availability

URLS = ["http://127.0.0.1:8081/v1", "http://127.0.0.1:8082/v1"]


def spec(backend: str = "openai", **options: Any) -> ModelSpec:
    return ModelSpec(name="m", backend=backend, model="m",
                     options={"base_urls": URLS, "tokenize_url": "http://127.0.0.1:8081/extras/tokenize", **options})


def test_worker_i_uses_endpoint_i_mod_n() -> None:
    assert worker_index({}) == 0 and worker_index({"PYTEST_XDIST_WORKER": "gw7"}) == 7
    chosen = [for_worker(spec(), {"PYTEST_XDIST_WORKER": f"gw{i}"}).options for i in range(4)]
    assert [o["base_url"] for o in chosen] == [URLS[0], URLS[1], URLS[0], URLS[1]]
    assert [o["endpoint"] for o in chosen] == [o["base_url"] for o in chosen]
    assert chosen[1]["tokenize_url"] == "http://127.0.0.1:8082/extras/tokenize"
    assert for_worker(spec(), {}).options["base_url"] == URLS[0]  # no xdist: the first
    assert for_worker(spec("ollama"), {"PYTEST_XDIST_WORKER": "gw1"}).options["host"] == URLS[1]
    plain = ModelSpec(name="p", backend="openai", model="m", options={"base_url": URLS[0]})
    assert for_worker(plain, {"PYTEST_XDIST_WORKER": "gw1"}) is plain


def test_bad_base_urls_name_the_model() -> None:
    bad = ModelSpec(name="m", backend="openai", model="m", options={"base_urls": "http://x"})
    with pytest.raises(ValueError, match="model 'm': options.base_urls must be a list of URLs"):
        for_worker(bad)
    assert "options.base_urls must be a list of URLs" in str(availability(bad))


def test_availability_checks_this_workers_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    reason = availability(ModelSpec(name="m", backend="openai", model="m",
                                    options={"base_urls": ["http://127.0.0.1:9/v1", "http://127.0.0.1:7/v1"]}))
    assert reason is not None and "127.0.0.1:7" in reason


def _answer(letter: str) -> Any:
    def handler(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        chunk = ('{"id":"c","object":"text_completion","created":1,"model":"m","choices":'
                 f'[{{"text":"{letter}","index":0,"logprobs":null,"finish_reason":"stop"}}]}}')
        payload = f"data: {chunk}\n\ndata: [DONE]\n\n".encode()
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)

    return handler


def test_two_workers_spread_over_two_endpoints(bench: BenchRun) -> None:
    # Two OpenAI-format servers on loopback that answer differently: each record's prediction
    # shows which one answered it, and its extra["endpoint"] must name that one.
    with serve({"/v1/completions": _answer("A"), "/v1/models": _answer("A")}) as (a, got_a), \
            serve({"/v1/completions": _answer("B"), "/v1/models": _answer("B")}) as (b, got_b):
        registry = Path(bench.pytester.path / "mine.toml")
        registry.write_text('[[models]]\nname = "spread"\nbackend = "openai"\nmodel = "m"\n'
                            f'options = {{ base_urls = ["{a}/v1", "{b}/v1"] }}\n')
        result = bench("--models-file", str(registry), "--models", "spread", "--samples", "8",
                       "--mmlu-mode", "generate", "-n", "2")
    assert result.ret == 0, result.stdout.str()
    records = bench.records()
    assert len(records) == 8
    by_endpoint = {f"{a}/v1": "A", f"{b}/v1": "B"}
    assert all(by_endpoint[r["extra"]["endpoint"]] == r["prediction"] for r in records)
    asked = [r for r in got_a + got_b if r["path"] == "/v1/completions"]
    assert len(asked) == 8 and got_a and got_b  # both servers worked
    assert sum(r["extra"]["endpoint"] == f"{a}/v1" for r in records) == \
        sum(r["path"] == "/v1/completions" for r in got_a)
