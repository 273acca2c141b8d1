"""The resource monitor's own CPU cost, at 100 ms and 10 ms sampling, during real inference.

    python bench/monitor_cost.py [--prompts 20] [--tokens 32]

The same greedy generations of the embedded gemma model (llama.cpp in-process) run with no
monitor, with a 100 ms and with a 10 ms sampler. For each: the sampler's own CPU seconds (its
thread's CPU time), that as a share of the inference's CPU time, and the wall time of the work.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from harness.backends.base import Request
from harness.models.registry import DEFAULT_REGISTRY, create_backend, load_registry
from harness.monitor.sampler import Monitor
from harness.suites import mmlu

PROJECT = Path(__file__).resolve().parents[1]


def prompts(n: int) -> list[str]:
    items = mmlu.load(PROJECT / "fixtures" / "mmlu")
    return [mmlu.prompt(item) for item in items[:n]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    backend = create_backend(load_registry([DEFAULT_REGISTRY])["gemma3-270m-q4"])
    texts = prompts(args.prompts)
    backend.generate(Request(prompt=texts[0], max_tokens=4))  # warm-up
    print(f"{args.prompts} prompts x {args.tokens} tokens, gemma3-270m-q4 in-process")
    print(f"{'interval':>9} {'wall s':>8} {'work CPU s':>10} {'samples':>8} {'monitor CPU s':>13} {'share':>7}")
    for interval in (None, 0.1, 0.01):
        monitor = Monitor([os.getpid()], interval, children=False).start() if interval else None
        cpu0, start = time.process_time(), time.perf_counter()
        for text in texts:
            backend.generate(Request(prompt=text, max_tokens=args.tokens))
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
        if monitor is None:
            print(f"{'none':>9} {wall:>8.2f} {cpu:>10.2f} {'-':>8} {'-':>13} {'-':>7}")
            continue
        summary = monitor.stop()
        print(f"{interval * 1000:>7.0f}ms {wall:>8.2f} {cpu:>10.2f} {summary.samples:>8} "
              f"{summary.monitor_cpu_s:>13.4f} {summary.monitor_cpu_s / cpu:>6.2%}")
    backend.close()


if __name__ == "__main__":
    main()
