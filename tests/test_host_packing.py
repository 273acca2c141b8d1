"""Packing concurrent scoring calls in a model host (backends/host_packing.py), on a test double.

The host object is driven in this process, each client a thread, as the host's connection threads
are. The double's values are a function of each request, so a caller given another's answers, or
its own out of order, fails; its groups call can be held open, so calls queue behind it.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import PROJECT, requires_llamacpp

from harness.backends.base import BackendBase, LoglikelihoodRequest, Loglikelihoods, Timings, Usage
from harness.backends.host import Host
from harness.backends.host_packing import ScoringPacker, packs_by_default
from harness.backends.hosted import HostedBackend
from harness.models.registry import DEFAULT_REGISTRY, ModelSpec, load_registry
from harness.suites import mmlu


def value_of(request: LoglikelihoodRequest) -> float:
    return -float(len(request.context) * 7 + len(request.continuation))


class Double(BackendBase):
    """Scores every request alike alone and in groups; `hold` keeps the next call open."""

    supports_loglikelihood = True

    def __init__(self) -> None:
        self.name = "double"
        self.calls: list[tuple[str, int]] = []  # (operation, groups)
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()

    def _score(self, requests: list[LoglikelihoodRequest]) -> Loglikelihoods:
        if any(r.continuation.strip() == "boom" for r in requests):
            raise ValueError("a continuation the double cannot score")
        tokens = sum(len(c) for c in {r.context for r in requests})
        return Loglikelihoods([value_of(r) for r in requests], Usage(tokens, 0, "tokenizer"), Timings(total_s=0.001))

    def _wait(self) -> None:
        self.entered.set()
        self.hold.wait(10)
        end = time.process_time() + 0.002  # some CPU time to apportion
        while time.process_time() < end:
            pass

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> Loglikelihoods:
        self.calls.append(("loglikelihood", 1))
        self._wait()
        return self._score(requests)

    def loglikelihood_groups(self, groups: list[list[LoglikelihoodRequest]]) -> list[Loglikelihoods]:
        self.calls.append(("loglikelihood_groups", len(groups)))
        self._wait()
        return [self._score(g) for g in groups]


def question(n: int, *, bad: bool = False) -> list[LoglikelihoodRequest]:
    context = f"Question {n}: " + "x" * n + "\nAnswer:"
    return [LoglikelihoodRequest(context, " boom" if bad and letter == "B" else f" {letter}") for letter in "ABCD"]


def host_with(backend: Double) -> Host:
    host = Host(ModelSpec("double", "oracle", "double"), None)
    host.backend = backend
    host.packer = ScoringPacker(backend, host.lock, host.mark_running)
    host.loaded.set()
    return host


def queued(host: Host, n: int) -> None:
    assert host.packer is not None
    deadline = time.monotonic() + 10
    while len(host.packer._pending) < n:
        assert time.monotonic() < deadline, "the calls never queued"
        time.sleep(0.001)


def test_calls_waiting_behind_a_running_one_are_packed_into_one_call() -> None:
    backend = Double()
    host = host_with(backend)
    backend.hold.clear()
    with ThreadPoolExecutor(5) as pool:
        first = pool.submit(host.answer, "loglikelihood", (question(0),), 1)
        assert backend.entered.wait(10)
        # While it runs: three single calls and a groups call of two cases queue.
        waiting = [pool.submit(host.answer, "loglikelihood", (question(n),), n + 1) for n in (1, 2, 3)]
        groups = pool.submit(host.answer, "loglikelihood_groups", ([question(4), question(5)],), 5)
        queued(host, 4)
        backend.hold.set()
        alone, packed, grouped = first.result(10), [f.result(10) for f in waiting], groups.result(10)
    # The lone call ran as asked; the four waiting callers as one groups call over their 5 groups.
    assert backend.calls == [("loglikelihood", 1), ("loglikelihood_groups", 5)]
    assert alone.values == [value_of(r) for r in question(0)] and alone.timings.server["pack_size"] == 1
    for n, result in zip((1, 2, 3), packed):
        assert result.values == [value_of(r) for r in question(n)]
        assert result.usage.prompt_tokens == len(question(n)[0].context)
        assert result.timings.server["pack_size"] == 4
    assert [g.values for g in grouped] == [[value_of(r) for r in question(n)] for n in (4, 5)]
    stats = host.packer.stats.to_dict() if host.packer else {}
    assert stats["calls"] == 2 and stats["packed_calls"] == 1 and stats["packed_requests"] == 4
    assert stats["requests_per_packed_call"] == 4.0 and stats["sizes"] == {"1": 1, "4": 1}
    # The packed call's CPU time, apportioned by prompt tokens: the shares sum to it.
    shares = [r.timings.server["host_cpu_s"] for r in (*packed, *grouped)]
    assert stats["packed_cpu_s"] > 0 and sum(shares) == pytest.approx(stats["packed_cpu_s"])
    tokens = [r.usage.prompt_tokens for r in (*packed, *grouped)]
    assert shares[0] / shares[-1] == pytest.approx(tokens[0] / tokens[-1])
    for result in (*packed, *grouped):  # split into user and system time the same way
        server = result.timings.server
        assert server["host_cpu_user_s"] + server["host_cpu_system_s"] == pytest.approx(server["host_cpu_s"])
    assert alone.timings.server["host_cpu_s"] > 0


def test_a_lone_client_runs_at_once_through_the_operation_it_asked() -> None:
    backend = Double()
    host = host_with(backend)
    start = time.perf_counter()
    for n in range(20):
        result = host.answer("loglikelihood", (question(n),), 1)
        assert result.values == [value_of(r) for r in question(n)]
    each = (time.perf_counter() - start) / 20
    assert each < 0.02  # the double's 2 ms of CPU and nothing waited for
    assert backend.calls == [("loglikelihood", 1)] * 20
    assert host.packer is not None and host.packer.stats.packed_calls == 0


def test_a_bad_request_fails_its_caller_only() -> None:
    backend = Double()
    host = host_with(backend)
    backend.hold.clear()
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(host.answer, "loglikelihood", (question(0),), 1)
        assert backend.entered.wait(10)
        asks = [pool.submit(host.answer, "loglikelihood", (question(n, bad=n == 2),), n + 1) for n in (1, 2, 3)]
        queued(host, 3)
        backend.hold.set()
        first.result(10)
        with pytest.raises(ValueError, match="cannot score"):
            asks[1].result(10)
        assert asks[0].result(10).values == [value_of(r) for r in question(1)]
        assert asks[2].result(10).values == [value_of(r) for r in question(3)]
    assert host.packer is not None and host.packer.stats.retried_alone == 1
    # The packed call failed, then each caller was asked alone.
    assert backend.calls[1:] == [("loglikelihood_groups", 3)] + [("loglikelihood", 1)] * 3


def test_a_packed_call_names_all_its_clients_as_running(tmp_path: Path) -> None:
    """A crash during a packed call is charged to every caller in it (hosted._was_running)."""
    host = Host(ModelSpec("double", "oracle", "double"), None, socket_path=str(tmp_path / "host.sock"))
    host.mark_running([12345, 7, 9])
    host.mark_running([3, 4])
    assert (tmp_path / "running").read_text().split() == ["3", "4"]
    host.mark_running([123456789012345])
    assert (tmp_path / "running").read_text().split() == ["123456789012345"]


def test_describe_says_what_was_packed() -> None:
    backend = Double()
    host = host_with(backend)
    host.answer("loglikelihood", (question(1),), 1)
    described: Any = host.answer("describe", (), 1)
    assert described["scoring_packs"]["calls"] == 1 and described["scoring_packs"]["packed_calls"] == 0


def test_a_host_packs_on_an_accelerator_or_when_asked() -> None:
    on_cpu = Host(ModelSpec("oracle", "oracle", "oracle"), None)
    on_cpu.load()
    assert on_cpu.load_error is None and on_cpu.packer is None  # the oracle describes no device
    asked = Host(ModelSpec("oracle", "oracle", "oracle", options={"pack_scoring": True}), None)
    asked.load()
    assert asked.load_error is None and asked.packer is not None  # the oracle offers loglikelihood_groups
    assert packs_by_default({"n_gpu_layers": -1}, {}) and packs_by_default({}, {"device": "cuda:1"})
    assert not packs_by_default({}, {"device": "cpu"}) and not packs_by_default({"n_gpu_layers": 0}, {})
    assert not packs_by_default({"n_gpu_layers": -1, "pack_scoring": False}, {"device": "cuda"})


# -- a real model: four clients of one shared llama.cpp host ---------------------------------------
# What batched scoring already differs by on the q4 model (llamacpp_batch.py: the quantized kernels
# give other logits for other batch shapes), per choice, in nats.
Q4_BATCH_TOLERANCE = 0.5


@requires_llamacpp
@pytest.mark.slow
def test_clients_of_one_host_score_packed_and_as_the_serial_host() -> None:
    spec = load_registry([DEFAULT_REGISTRY])["gemma3-270m-q4"]
    source = PROJECT / "fixtures" / "mmlu"
    # 5-shot, two subjects of six questions: the questions of a subject share its examples' prefix.
    items = mmlu.load(source, subjects=["nutrition", "world_religions"], per_subject=6)
    questions = [[LoglikelihoodRequest(mmlu.prompt(item, mmlu.few_shot(source, item.input["subject"], 5)), letter)
                  for letter in mmlu.CONTINUATIONS] for item in items]
    serial = HostedBackend(spec)  # on a CPU: one call at a time
    shared = f"test-{uuid.uuid4().hex}"
    packing = replace(spec, options={**spec.options, "pack_scoring": True})
    clients = [HostedBackend(packing, shared_by=shared) for _ in range(4)]
    try:
        assert len({c.process() for c in clients}) == 1 and serial.process() != clients[0].process()
        expected = [serial.loglikelihood(q) for q in questions]
        assert "scoring_packs" not in serial.describe()["host"]
        assert all(e.timings.server["host_cpu_s"] > 0 and "pack_size" not in e.timings.server for e in expected)
        assert sum(e.timings.server["prompt_reused"] for e in expected) > 0  # the KV cache's prefix, one at a time
        before = clients[0].describe()["host"]["scoring_packs"]  # the probe's call, alone

        def work(k: int) -> list[tuple[int, Loglikelihoods]]:  # client k scores every 4th question
            return [(i, clients[k].loglikelihood(questions[i])) for i in range(k, len(questions), 4)]
        # (questions k, k+1, ... of one subject arrive together: a pack shares their prefix)

        with ThreadPoolExecutor(4) as pool:
            results = dict(pair for part in pool.map(work, range(4)) for pair in part)
        stats = clients[0].describe()["host"]["scoring_packs"]
    finally:
        for backend in (serial, *clients):
            backend.close()
    assert stats["calls"] - before["calls"] < len(questions)  # fewer calls than questions: some were packed
    assert stats["packed_calls"] >= 1 and stats["requests_per_packed_call"] >= 2
    packed = [r for r in results.values() if r.timings.server["pack_size"] > 1]
    assert len(packed) == stats["packed_requests"]
    for i, result in results.items():  # each caller got its own question's values, within batching's tolerance
        assert result.values == pytest.approx(expected[i].values, abs=Q4_BATCH_TOLERANCE)
        assert result.usage == expected[i].usage
    agree = sum(int(np.argmax(r.values) == np.argmax(expected[i].values)) for i, r in results.items())
    assert agree >= len(questions) - 2
    # Prefix reuse survives packing: a subject's examples are computed once per pack.
    for result in results.values():
        server = result.timings.server
        assert server["prompt_reused"] + server["prompt_computed"] == result.usage.prompt_tokens
    assert sum(r.timings.server["prompt_reused"] for r in packed) > 0
    # The packed calls' CPU time, apportioned: the callers' shares sum to it.
    assert sum(r.timings.server["host_cpu_s"] for r in packed) == pytest.approx(stats["packed_cpu_s"], rel=1e-6)
