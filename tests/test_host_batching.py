"""Continuous batching in a shared llama.cpp host (backends/llamacpp_decode.py).

Several clients of one host (as the xdist workers of a run are) ask at once; their greedy
sequences decode together. A sequence alone in the batch decodes exactly as the serial path does;
identical prompts in one batch decode alike; and a whole run under -n 4 keeps the score of -n 1
(the parity check's paired interval contains 0).
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from support import BenchRun, requires_llamacpp

from harness.backends.base import Generation, Request
from harness.backends.hosted import HostedBackend
from harness.models.registry import DEFAULT_REGISTRY, load_registry
from harness.report.parity import parity
from harness.report.write import read_run

pytestmark = [requires_llamacpp, pytest.mark.slow]

QUESTION = Request(prompt="Question: What is 12 plus 30?\nAnswer:", max_tokens=24)
# A GSM8K chat prompt: 200 tokens of greedy text part at the first near tie where the arithmetic
# differs (flash attention off in the decoder, on in the serial path, did so for every answer).
CHAT = Request(messages=({"role": "system", "content": "Solve the math problem step by step."},
                         {"role": "user", "content": "Natalia sold clips to 48 of her friends in April, and then she "
                                                     "sold half as many clips in May. How many clips did Natalia "
                                                     "sell altogether in April and May?"}), max_tokens=200)
OTHERS = [Request(prompt=p, max_tokens=24) for p in ("The capital of France is", "Once upon a time",
                                                    "def add(a, b):\n")]


@pytest.mark.parametrize("model", ["gemma3-270m-q4", "smollm2-135m"])
def test_clients_of_one_host_decode_together_and_alone_as_the_serial_path(model: str) -> None:
    """gemma has a sliding window and decodes with flash attention, SmolLM2 without; the second
    alone reuses the first's idle slot, and of the four together all but one copy a running
    sequence's stream: each the same text."""
    spec = load_registry([DEFAULT_REGISTRY])[model]
    shared = f"test-{uuid.uuid4().hex}"
    clients = [HostedBackend(spec, shared_by=shared) for _ in range(4)]
    serial = HostedBackend(replace(spec, options={**spec.options, "batch_slots": 0}))
    try:
        assert len({c.process() for c in clients}) == 1 and serial.process() != clients[0].process()
        alone = clients[0].generate(QUESTION)
        assert alone.timings.server["batch_mean"] == 1.0 and alone.timings.server["host_cpu_s"] > 0
        again = clients[1].generate(QUESTION)
        assert again.timings.server["prompt_reused"] > 0 and again.text == alone.text
        one_at_a_time = serial.generate(QUESTION)
        assert "batch_mean" not in one_at_a_time.timings.server
        assert alone.text == one_at_a_time.text and alone.usage == one_at_a_time.usage
        long = CHAT if spec.prompt_style == "chat" else Request(
            prompt=f"Question: {CHAT.messages[1]['content']}\nAnswer:", max_tokens=200)  # type: ignore[index]
        assert clients[2].generate(long).text == serial.generate(long).text

        def together(requests: list[Request]) -> list[Generation]:
            with ThreadPoolExecutor(len(requests)) as pool:
                return list(pool.map(lambda pair: pair[0].generate(pair[1]), zip(clients, requests)))

        same = together([QUESTION] * 4)
        assert [g.text for g in same] == [alone.text] * 4
        assert max(g.timings.server["batch_mean"] for g in same) > 1  # they shared decodes
        mixed = together([QUESTION, *OTHERS])
        # Other prompts beside it: each runs to its own end (a near tie may flip in a batch, so
        # the texts are the parity check's business, not equality's).
        assert all(g.usage.completion_tokens > 0 and g.finish_reason in ("stop", "length") for g in mixed)
    finally:
        for backend in (*clients, serial):
            backend.close()


def test_batched_generation_under_n4_keeps_the_score_of_n1(bench: BenchRun) -> None:
    """The GSM8K samples with the chat model: one host for four workers, batched decodes, and a
    score difference against -n 1 whose paired interval contains 0."""
    runs = {}
    for workers in ("1", "4"):
        result = bench("--models", "smollm2-135m", "-n", workers, "--run-id", f"n{workers}", "--gsm8k-max-tokens", "64",
                       target="test_gsm8k.py")
        assert result.ret in (0, 1), result.stdout.str()[-3000:]  # wrong answers fail their tests
        runs[workers] = read_run(bench.reports / f"n{workers}")[0]
    described = bench.summary(bench.reports / "n4")["metadata"]["backends"]["smollm2-135m"]
    assert described["processes"] == 4 and len({h["pid"] for h in described["hosts"]}) == 1
    assert all(r.status in ("ok", "wrong") for r in runs["4"])
    assert max(r.timings.server.get("batch_mean", 0.0) for r in runs["4"]) > 1
    [gsm8k] = parity(runs["1"], runs["4"])
    assert gsm8k.items == 8
    assert gsm8k.score.ci_low is not None and gsm8k.score.ci_high is not None
    assert gsm8k.score.ci_low <= 0 <= gsm8k.score.ci_high
