"""The OpenAI backend against a real llama.cpp server (real inference over a real connection),
and the call wrapper's retries, timeout and cache against small fault-injecting servers."""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from fake_servers import send_json, serve

from harness.backends.base import BackendError, BackendTimeout, LoglikelihoodRequest, Request
from harness.backends.openai import OpenAIBackend, available
from harness.models.cache import ResponseCache
from harness.models.call import CallPolicy, ModelCall
from harness.models.registry import ModelSpec, create_backend
from harness.monitor.sampler import Monitor

MCQ = ("The following are multiple choice questions (with answers) about astronomy.\n\n"
       "Which planet is closest to the Sun?\nA. Venus\nB. Mercury\nC. Mars\nD. Earth\nAnswer:")


def server_spec(server: dict[str, Any], **options: Any) -> ModelSpec:
    return ModelSpec(name="gemma-server", backend="openai", model="gemma3-270m",
                     options={"base_url": server["base_url"], "tokenize_url": server["tokenize_url"],
                              "loglikelihood": True, **options})


def test_completion_streams_with_time_to_first_token(llama_server: dict[str, Any]) -> None:
    backend = OpenAIBackend(server_spec(llama_server))
    out = backend.generate(Request(prompt="The capital of France is", max_tokens=12))
    assert out.text.strip()
    # llama.cpp's server sends no usage on streams: counted with its tokenizer, and marked so.
    assert out.usage.source == "tokenizer"
    assert out.usage.prompt_tokens == 6 and 1 <= out.usage.completion_tokens <= 12
    assert 0 < out.timings.first_token_s < out.timings.total_s


def test_loglikelihood_from_server_logprobs(llama_server: dict[str, Any]) -> None:
    backend = OpenAIBackend(server_spec(llama_server))
    result = backend.loglikelihood([LoglikelihoodRequest(MCQ, c) for c in (" A", " B", " C", " D")])
    assert all(-20 < v < 0 for v in result.values) and len(set(result.values)) == 4
    assert result.usage.source == "server" and result.usage.prompt_tokens > 20


def test_chat_with_tools_reaches_the_server(llama_server: dict[str, Any]) -> None:
    backend = OpenAIBackend(server_spec(llama_server))
    tool = {"type": "function", "function": {"name": "ask_small_model", "description": "ask",
                                             "parameters": {"type": "object", "properties": {}}}}
    out = backend.generate(Request(messages=({"role": "user", "content": "What is 2+2?"},), tools=(tool,),
                                   max_tokens=16))
    # A 270M base model makes no tool calls: a measured outcome, not an error.
    assert out.tool_calls == [] and out.finish_reason in ("stop", "length")


def test_server_process_is_found_and_monitored(llama_server: dict[str, Any]) -> None:
    backend = OpenAIBackend(server_spec(llama_server))
    assert backend.process() == llama_server["pid"]
    with Monitor([llama_server["pid"]], interval=0.05) as monitor:
        backend.generate(Request(prompt="Once upon a time", max_tokens=24))
    summary = monitor.summary()
    assert summary.cpu_s > 0  # the server, not this process, did the work
    assert summary.rss_peak_mb is not None and summary.rss_peak_mb > 253  # the model file is 253 MB
    assert available(server_spec(llama_server)) is None


def flaky_completions(failures: int) -> tuple[dict[str, Any], list[int]]:
    """An OpenAI-format /v1/completions that answers 500 `failures` times, then 200."""
    count = [0]

    def handler(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        count[0] += 1
        if count[0] <= failures:
            send_json(h, {"error": {"message": "overloaded", "type": "server_error"}}, 500)
            return
        payload = (b'data: {"id":"c","object":"text_completion","created":1,"model":"m","choices":'
                   b'[{"text":"ok","index":0,"logprobs":null,"finish_reason":"stop"}]}\n\n'
                   b'data: {"id":"c","object":"text_completion","created":1,"model":"m","choices":[],'
                   b'"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}\n\ndata: [DONE]\n\n')
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)

    return {"/v1/completions": handler}, count


def fake_spec(url: str) -> ModelSpec:
    return ModelSpec(name="fake", backend="openai", model="m", price_in=2.0, price_out=10.0,
                     options={"base_url": url + "/v1"})


def test_retries_500_then_succeeds_with_server_usage_and_cost() -> None:
    routes, count = flaky_completions(failures=2)
    with serve(routes) as (url, _):
        call = ModelCall(fake_spec(url), OpenAIBackend(fake_spec(url)), CallPolicy(retries=3, backoff_s=0.01))
        out = call.generate(Request(prompt="hi"))
    assert out.text == "ok" and count[0] == 3
    assert (call.log.calls, call.log.retries) == (3, 2)
    assert (out.usage.prompt_tokens, out.usage.completion_tokens, out.usage.source) == (3, 1, "server")
    assert call.cost == pytest.approx((3 * 2.0 + 1 * 10.0) / 1e6)


def test_a_bad_request_is_not_retried() -> None:
    count = [0]

    def bad(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        count[0] += 1
        send_json(h, {"error": {"message": "unknown model", "type": "invalid_request_error"}}, 400)

    with serve({"/v1/completions": bad}) as (url, _):
        call = ModelCall(fake_spec(url), OpenAIBackend(fake_spec(url)), CallPolicy(retries=3, backoff_s=0.01))
        with pytest.raises(BackendError, match="HTTP 400"):
            call.generate(Request(prompt="hi"))
    assert count[0] == 1


def test_a_server_that_never_answers_times_out() -> None:
    def hang(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        time.sleep(5)

    with serve({"/v1/completions": hang}) as (url, _):
        call = ModelCall(fake_spec(url), OpenAIBackend(fake_spec(url)), CallPolicy(timeout_s=0.5, retries=0))
        start = time.perf_counter()
        with pytest.raises(BackendTimeout):
            call.generate(Request(prompt="hi"))
        assert time.perf_counter() - start < 3


def test_the_run_timeout_reaches_the_http_client(monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: the client kept its own 600 s, so a call abandoned by the wrapper went on in the
    # background holding the connection. Now the request itself stops at the run's timeout.
    served: list[float] = []

    def hang(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        time.sleep(3)
        served.append(time.perf_counter())

    monkeypatch.setenv("OPENAI_API_KEY", "local")
    with serve({"/v1/completions": hang}) as (url, _):
        backend = create_backend(fake_spec(url), timeout_s=0.5)
        assert backend.client.timeout == 0.5
        start = time.perf_counter()
        with pytest.raises(BackendTimeout):
            backend.generate(Request(prompt="hi"))  # the client's own timeout, no wrapper around it
        assert time.perf_counter() - start < 2.5


def test_cache_answers_a_repeated_request_without_calling_the_model(tmp_path: Path) -> None:
    routes, count = flaky_completions(failures=0)
    with serve(routes) as (url, _):
        backend = OpenAIBackend(fake_spec(url))
        for _run in range(2):  # two runs, each with its own cache handle on the same folder
            cache = ResponseCache(tmp_path)
            call = ModelCall(fake_spec(url), backend, CallPolicy(cache=cache))
            first = call.generate(Request(prompt="same question", reference="ignored by the key"))
            other = call.generate(Request(prompt="same question", reference="different reference"))
            assert first.text == other.text == "ok"
            cache.close()
    assert count[0] == 1  # one real call in all: everything else came from the cache
    assert (call.log.calls, call.log.cache_hits) == (0, 2)
    assert call.log.usage.prompt_tokens == 6  # cached answers keep their usage


def write_registry(path: Path, name: str, options: dict[str, Any]) -> Path:
    inline = ", ".join(f"{k} = {v!r}".replace("'", '"').replace("True", "true") for k, v in options.items())
    path.write_text(f'[[models]]\nname = "{name}"\nbackend = "openai"\nmodel = "gemma3-270m"\n'
                    f'tiers = ["270m"]\noptions = {{ {inline} }}\n')
    return path


def test_benchmark_run_through_the_server_records_server_resources(bench: Any, llama_server: dict[str, Any]) -> None:
    registry = write_registry(bench.pytester.path / "mine.toml", "gemma-server",
                              {"base_url": llama_server["base_url"], "tokenize_url": llama_server["tokenize_url"],
                               "loglikelihood": True})
    result = bench("--models-file", str(registry), "--models", "gemma-server", "--mmlu-per-subject", "1")
    assert result.ret == 0, result.stdout.str()
    records = bench.records()
    assert len(records) == 4
    for r in records:
        assert r["status"] in ("ok", "wrong") and r["mode"] == "loglikelihood"
        assert r["usage"]["source"] == "server" and r["usage"]["prompt_tokens"] > 20
        # The work happened in the server process, which the monitor found from its port.
        assert r["resources"]["cpu_s"] > 0 and r["resources"]["rss_peak_mb"] > 253
    metadata = bench.summary()["metadata"]
    assert metadata["monitor"]["interval_s"] == 0.1 and metadata["monitor"]["cpu_s"] >= 0


def test_second_identical_run_with_cache_calls_the_model_zero_times(bench: Any, tmp_path: Path) -> None:
    routes, count = flaky_completions(failures=0)
    with serve(routes) as (url, _):
        registry = write_registry(bench.pytester.path / "mine.toml", "fake", {"base_url": url + "/v1"})
        args = ["--models-file", str(registry), "--models", "fake", "--samples", "4", "--mmlu-mode", "generate",
                "--cache", "--cache-dir", str(tmp_path / "cache")]
        assert bench(*args, "--run-id", "first").ret == 0
        assert count[0] == 4
        assert bench(*args, "--run-id", "second").ret == 0
        assert count[0] == 4  # no new request reached the server
        again = bench(*args[:-3], "--no-cache", "--run-id", "third")
        assert again.ret == 0 and count[0] == 8
    first, second = bench.records(bench.reports / "first"), bench.records(bench.reports / "second")
    assert [r["attempts"] for r in first] == [1] * 4
    assert [r["attempts"] for r in second] == [0] * 4
    assert all(r["cache_hits"] == 1 for r in second)
    assert [r["prediction"] for r in first] == [r["prediction"] for r in second]


def test_a_self_hosted_server_may_take_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.backends.openai import available

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    remote = {"base_url": "http://llm-0.example.internal:8080/v1"}
    assert available(ModelSpec("m", "openai", "x", options=remote)) == "no API key: set OPENAI_API_KEY"
    assert available(ModelSpec("m", "openai", "x", options={**remote, "api_key_env": ""})) is None
