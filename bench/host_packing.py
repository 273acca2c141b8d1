"""Packed scoring in a shared model host against one call at a time (#23 item 1).

Four client threads (as four xdist workers) score MMLU questions against one shared llama.cpp host,
with packing on and off (options.pack_scoring), the two alternated `--rounds` times so that a
noisy machine's load falls on both. `--gap-ms` adds a pause between a client's calls (a case's own
overhead in a worker), which packing cannot hide: the callers of a pack come back together.

    python bench/host_packing.py --data ../shared/datasets/mmlu --questions 48 --rounds 2

Prints per setting the wall time, the host's CPU time (summed host_cpu_s), the packed calls and
the largest |Δ log-likelihood| against the first setting's answers.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from harness.backends.base import LoglikelihoodRequest, Loglikelihoods
from harness.backends.hosted import HostedBackend
from harness.models.registry import DEFAULT_REGISTRY, ModelSpec, load_registry
from harness.suites import mmlu


def run(spec: ModelSpec, questions: list[list[LoglikelihoodRequest]], clients: int,
        gap_s: float) -> tuple[float, list[Loglikelihoods], dict[str, float]]:
    shared = f"bench-{uuid.uuid4().hex}"
    backends = [HostedBackend(spec, shared_by=shared) for _ in range(clients)]
    try:
        def work(k: int) -> list[tuple[int, Loglikelihoods]]:
            done = []
            for i in range(k, len(questions), clients):
                done.append((i, backends[k].loglikelihood(questions[i])))
                time.sleep(gap_s)
            return done

        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            found = dict(pair for part in pool.map(work, range(clients)) for pair in part)
        wall = time.perf_counter() - start
        packs = backends[0].describe()["host"].get("scoring_packs", {})
    finally:
        for backend in backends:
            backend.close()
    return wall, [found[i] for i in range(len(questions))], packs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3-270m-q4")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / "fixtures" / "mmlu"))
    parser.add_argument("--split", default="val")
    parser.add_argument("--questions", type=int, default=48)
    parser.add_argument("--shots", type=int, default=0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--gap-ms", type=float, default=0.0)
    args = parser.parse_args()
    spec = load_registry([DEFAULT_REGISTRY])[args.model]
    items = mmlu.load(args.data, split=args.split, samples=args.questions, seed=0)
    questions = [[LoglikelihoodRequest(mmlu.prompt(item, mmlu.few_shot(args.data, item.input["subject"], args.shots)),
                                       letter) for letter in mmlu.CONTINUATIONS] for item in items]
    settings = {name: replace(spec, options={**spec.options, "pack_scoring": pack})
                for name, pack in (("one at a time", False), ("packed", True))}
    reference: list[Loglikelihoods] | None = None
    print(f"{args.model}, {len(questions)} questions ({args.shots}-shot), {args.clients} clients, "
          f"gap {args.gap_ms:g} ms, load {os.getloadavg()[0]:.2f}")
    for round_ in range(args.rounds):
        for name, setting in settings.items():
            wall, results, packs = run(setting, questions, args.clients, args.gap_ms / 1000)
            reference = reference or results
            delta = max(abs(a - b) for r, e in zip(results, reference) for a, b in zip(r.values, e.values))
            cpu = sum(r.timings.server.get("host_cpu_s", 0.0) for r in results)
            print(f"round {round_ + 1} {name:14s} wall {wall:6.1f} s  host cpu {cpu:6.1f} s  "
                  f"packed calls {packs.get('packed_calls', 0):3d} ({packs.get('requests_per_packed_call', 0):.1f} "
                  f"callers each)  max|Δ| {delta:.3f}  load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
